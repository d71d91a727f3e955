package demo

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/google/uuid"

	"github.com/metalpower/metalpower/internal/testbed/openstack"
)

// Nova's periods in the demo's cloud (-openstack): short, so a person
// sees its power sync at work; Nova's defaults are 600 and 60 s.
const novaSyncInterval = 30

// startOpenStack runs Placement, Neutron, Glance and Nova with the ironic
// driver behind the demo's Keystone (-openstack), with the API as the
// catalog's baremetal endpoint, and writes an openrc of the admin in
// project admin, which owns the servers.
func (d *demo) startOpenStack(ctx context.Context) error {
	dir, err := os.MkdirTemp(d.opts.DataDir, "openstack-")
	if err != nil {
		return err
	}
	d.printf("starting Placement, Neutron, Glance and Nova (about a minute)...\n")
	c, err := openstack.Launch(ctx, d.keystone.k, dir, openstack.Options{BaremetalURL: "http://" + hostPort(d.opts.APIPort),
		SyncPowerStateInterval: novaSyncInterval, UpdateResourcesInterval: novaSyncInterval, ShutdownTimeout: 10})
	if err != nil {
		os.RemoveAll(dir)
		return err
	}
	d.openstack = c
	k := d.keystone.k
	openrc := fmt.Sprintf("export OS_AUTH_URL=%s OS_USERNAME=admin OS_PASSWORD=%s OS_USER_DOMAIN_NAME=Default OS_PROJECT_NAME=admin OS_PROJECT_DOMAIN_NAME=Default OS_IDENTITY_API_VERSION=3 OS_REGION_NAME=RegionOne OS_INTERFACE=public\nunset OS_SYSTEM_SCOPE OS_CLOUD OS_ENDPOINT\n",
		k.URL, k.AdminPassword)
	return os.WriteFile(d.openstackRC(), []byte(openrc), 0o600)
}

func (d *demo) openstackRC() string { return filepath.Join(d.opts.DataDir, "openstack-openrc") }

// stopOpenStack stops the cloud and removes its databases, vhost and files.
func (d *demo) stopOpenStack() error {
	if d.openstack == nil {
		return nil
	}
	err := d.openstack.Close()
	os.RemoveAll(d.openstack.Dir)
	os.Remove(d.openstackRC())
	return err
}

// novaEnv points the worker's [nova] section at the real nova-api,
// through Keystone's catalog, as Keystone's nova user (role admin, as
// Nova's os-server-external-events policy wants).
func (d *demo) novaEnv() []string {
	if !d.opts.OpenStack || d.keystone == nil {
		return nil
	}
	k := d.keystone.k
	return []string{"METALPOWER_NOVA_AUTH_URL=" + k.URL, "METALPOWER_NOVA_USERNAME=" + k.Nova.Name,
		"METALPOWER_NOVA_PASSWORD=" + k.Nova.Password, "METALPOWER_NOVA_PROJECT_NAME=" + k.ServiceProject,
		"METALPOWER_NOVA_USER_DOMAIN_NAME=Default", "METALPOWER_NOVA_PROJECT_DOMAIN_NAME=Default",
		"METALPOWER_NOVA_REGION_NAME=RegionOne", "METALPOWER_NOVA_INTERFACE=internal",
		// Nova's [ironic] user has role service in project service: it
		// acts on every node with elevated access, as in Ironic.
		"METALPOWER_API_RBAC_SERVICE_ROLE_ELEVATED_ACCESS=true"}
}

// nodeUUID is the UUID the demo gives a node in a cloud: known before the
// node is enrolled, so its server can be made first.
func nodeUUID(name string) string {
	return uuid.NewSHA1(uuid.NameSpaceURL, []byte("metalpower-demo/node/"+name)).String()
}

// makeServers makes a Nova server (srv-NAME) for each planned node with
// an instance that the API does not have yet, and returns their UUIDs by
// node name.
func (d *demo) makeServers(ctx context.Context) (map[string]string, error) {
	var want []openstack.Instance
	var names []string
	for _, p := range d.fleet {
		if !p.instance {
			continue
		}
		if _, status, err := d.getNode(ctx, p.name); err != nil {
			return nil, err
		} else if status == 200 {
			continue
		}
		want = append(want, openstack.Instance{Node: nodeUUID(p.name), Name: "srv-" + p.name})
		names = append(names, p.name)
	}
	if len(want) == 0 {
		return nil, nil
	}
	ids, err := d.openstack.CreateInstances(ctx, want...)
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for i, name := range names {
		out[name] = ids[i]
	}
	return out, nil
}
