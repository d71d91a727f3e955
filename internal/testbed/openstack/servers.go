package openstack

import (
	"context"
	_ "embed"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack"
)

//go:embed instance.py
var instanceScript []byte

// Flavor is the flavor CreateInstance gives servers: resource class
// CUSTOM_BAREMETAL, as a cloud's baremetal flavors ask for nodes of
// resource class "baremetal".
const Flavor = "metalpower-bm"

// python is Debian's python3, which imports Nova (python3-nova); a
// python3 earlier on PATH (pyenv) does not.
const python = "/usr/bin/python3"

// makeFlavor creates Flavor and notes the admin's project and user, which
// own the servers CreateInstance makes.
func (c *Cloud) makeFlavor(ctx context.Context) error {
	if _, err := c.K.OpenStack(ctx, "flavor", "create", "--ram", "1024", "--disk", "10", "--vcpus", "1",
		"--property", "resources:CUSTOM_BAREMETAL=1", "--property", "resources:VCPU=0",
		"--property", "resources:MEMORY_MB=0", "--property", "resources:DISK_GB=0", Flavor); err != nil {
		return err
	}
	out, err := c.K.OpenStack(ctx, "token", "issue", "-f", "json")
	if err != nil {
		return err
	}
	var tok struct {
		ProjectID string `json:"project_id"`
		UserID    string `json:"user_id"`
	}
	if err := json.Unmarshal([]byte(out), &tok); err != nil || tok.ProjectID == "" {
		return fmt.Errorf("openstack: token issue: %v\n%s", err, out)
	}
	c.adminProject, c.adminUser = tok.ProjectID, tok.UserID
	return nil
}

// Instance is a server to make on a node.
type Instance struct {
	// Node is the node's UUID: a hypervisor of nova-compute, or one it
	// will list.
	Node string
	Name string
}

// CreateInstances makes each server, ACTIVE and running, on its node,
// owned by the admin's project, in one run of Nova's objects, and
// returns their UUIDs in order. The caller sets each node's
// instance_uuid in metalpower, as Nova's deployment would.
func (c *Cloud) CreateInstances(ctx context.Context, servers ...Instance) ([]string, error) {
	script := c.path("instance.py")
	if err := os.WriteFile(script, instanceScript, 0o600); err != nil {
		return nil, fmt.Errorf("openstack: %w", err)
	}
	args := []string{script, c.NovaConf, c.Host, Flavor, c.adminProject, c.adminUser}
	for _, s := range servers {
		args = append(args, s.Node+"="+s.Name)
	}
	out, err := exec.CommandContext(ctx, python, args...).Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		return nil, fmt.Errorf("openstack: instance.py: %v\n%s", err, tail(stderr, 4000))
	}
	ids := strings.Fields(string(out))
	if len(ids) != len(servers) {
		return nil, fmt.Errorf("openstack: instance.py made %d servers, want %d: %s", len(ids), len(servers), out)
	}
	return ids, nil
}

// Server is what Nova's API shows of a server.
type Server struct {
	ID         string `json:"id"`
	Status     string `json:"status"`
	PowerState int    `json:"OS-EXT-STS:power_state"`
	VMState    string `json:"OS-EXT-STS:vm_state"`
	TaskState  string `json:"OS-EXT-STS:task_state"`
	Node       string `json:"OS-EXT-SRV-ATTR:hypervisor_hostname"`
}

// Nova's power states (nova/compute/power_state.py).
const (
	Running  = 1
	Shutdown = 4
)

// Server reads a server from nova-api, as the admin (with the instance
// attributes of microversion 2.3 on).
func (c *Cloud) Server(ctx context.Context, id string) (Server, error) {
	client, _, err := c.clients(ctx)
	if err != nil {
		return Server{}, err
	}
	var body struct{ Server Server }
	resp, err := client.Get(ctx, client.ServiceURL("servers", id), &body, &gophercloud.RequestOpts{
		MoreHeaders: map[string]string{"OpenStack-API-Version": "compute 2.3"}})
	if err != nil {
		return Server{}, fmt.Errorf("openstack: GET server %s: %w", id, err)
	}
	resp.Body.Close()
	return body.Server, nil
}

// Inventory is Placement's inventory of the resource provider of the node
// with UUID node (Nova's ironic driver names the provider after the
// node): the total of each resource class.
func (c *Cloud) Inventory(ctx context.Context, node string) (map[string]int, error) {
	_, placement, err := c.clients(ctx)
	if err != nil {
		return nil, err
	}
	var body struct {
		Inventories map[string]struct{ Total int }
	}
	resp, err := placement.Get(ctx, placement.ServiceURL("resource_providers", node, "inventories"), &body, nil)
	if err != nil {
		return nil, fmt.Errorf("openstack: placement inventory of %s: %w", node, err)
	}
	resp.Body.Close()
	out := map[string]int{}
	for class, inv := range body.Inventories {
		out[class] = inv.Total
	}
	return out, nil
}

// clients are the admin's clients of nova-api and Placement, from the
// catalog.
func (c *Cloud) clients(ctx context.Context) (compute, placement *gophercloud.ServiceClient, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.compute != nil {
		return c.compute, c.placement, nil
	}
	provider, err := openstack.AuthenticatedClient(ctx, gophercloud.AuthOptions{IdentityEndpoint: c.K.URL,
		Username: "admin", Password: c.K.AdminPassword, DomainName: "Default", AllowReauth: true,
		Scope: &gophercloud.AuthScope{ProjectName: "admin", DomainName: "Default"}})
	if err != nil {
		return nil, nil, fmt.Errorf("openstack: admin login: %w", err)
	}
	eo := gophercloud.EndpointOpts{Region: "RegionOne"}
	if compute, err = openstack.NewComputeV2(provider, eo); err != nil {
		return nil, nil, fmt.Errorf("openstack: compute endpoint: %w", err)
	}
	if placement, err = openstack.NewPlacementV1(provider, eo); err != nil {
		return nil, nil, fmt.Errorf("openstack: placement endpoint: %w", err)
	}
	c.compute, c.placement = compute, placement
	return compute, placement, nil
}
