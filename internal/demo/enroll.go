//go:build unix

package demo

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/metalpower/metalpower/internal/bmc/ipmi"
	"github.com/metalpower/metalpower/internal/bmc/redfish"
	"github.com/metalpower/metalpower/internal/node"
	"github.com/metalpower/metalpower/internal/testbed"
	"github.com/metalpower/metalpower/internal/testbed/sim/ipmisim"
	"github.com/metalpower/metalpower/internal/testbed/sim/redfishsim"
)

// apiVersion is sent with every request: names need 1.5, enroll 1.11.
const apiVersion = "1.95"

// api calls the (first) REST API and returns the status and body.
func (d *demo) api(ctx context.Context, method, path string, body any) (int, []byte, error) {
	return d.apiAt(ctx, d.opts.APIPort, method, path, body)
}

// apiAt calls the REST API on port.
func (d *demo) apiAt(ctx context.Context, port int, method, path string, body any) (int, []byte, error) {
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, nil, err
		}
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://"+hostPort(port)+path, r)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("X-OpenStack-Ironic-API-Version", apiVersion)
	if d.keystone != nil {
		tok, err := d.keystone.adminToken(ctx)
		if err != nil {
			return 0, nil, err
		}
		req.Header.Set("X-Auth-Token", tok)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// apiNode is what enrollment reads back from GET /v1/nodes/{name}.
type apiNode struct {
	UUID           string  `json:"uuid"`
	ProvisionState string  `json:"provision_state"`
	PowerState     *string `json:"power_state"`
	InstanceUUID   *string `json:"instance_uuid"`
	LastError      *string `json:"last_error"`
}

func (d *demo) getNode(ctx context.Context, name string) (*apiNode, int, error) {
	status, body, err := d.api(ctx, http.MethodGet, "/v1/nodes/"+name, nil)
	if err != nil || status != http.StatusOK {
		return nil, status, err
	}
	var n apiNode
	if err := json.Unmarshal(body, &n); err != nil {
		return nil, status, fmt.Errorf("GET /v1/nodes/%s: %w", name, err)
	}
	return &n, status, nil
}

// enroll creates the nodes the store does not have yet through the REST
// API, as an operator would, and takes every node to its working state:
// enroll -> manage (reads the BMC) -> provide (available), or adopt
// (active) for the nodes hosting a Nova instance. It is idempotent: a node
// already there is taken on from whatever state it is in.
func (d *demo) enroll(ctx context.Context, known map[string]bool) error {
	created := 0
	var servers map[string]string
	if d.openstack != nil {
		var err error
		if servers, err = d.makeServers(ctx); err != nil {
			return err
		}
	}
	for _, p := range d.fleet {
		n, status, err := d.getNode(ctx, p.name)
		if err != nil {
			return fmt.Errorf("enroll %s: %w", p.name, err)
		}
		if status == http.StatusNotFound {
			req := map[string]any{"name": p.name, "driver": p.driver, "driver_info": d.driverInfo(p)}
			if p.group != "" {
				req["conductor_group"] = p.group
			}
			switch {
			case d.openstack != nil:
				// What Nova's resource tracker reads: every node is a
				// hypervisor of resource class CUSTOM_BAREMETAL.
				req["uuid"], req["resource_class"] = nodeUUID(p.name), "baremetal"
				req["properties"] = map[string]any{"cpus": 1, "memory_mb": 1024, "local_gb": 10, "cpu_arch": "x86_64"}
				if id := servers[p.name]; id != "" {
					req["instance_uuid"] = id
				}
			case p.instance:
				id := instanceUUID(p.name)
				req["instance_uuid"] = id
				d.addInstance(id, p.name, d.hardwareOn(p))
			}
			status, body, err := d.api(ctx, http.MethodPost, "/v1/nodes", req)
			if err != nil {
				return fmt.Errorf("create node %s: %w", p.name, err)
			}
			if status != http.StatusCreated {
				return fmt.Errorf("create node %s: %d %s", p.name, status, body)
			}
			created++
			if n, _, err = d.getNode(ctx, p.name); err != nil || n == nil {
				return fmt.Errorf("read node %s back: %v", p.name, err)
			}
		} else if status != http.StatusOK {
			return fmt.Errorf("GET /v1/nodes/%s: %d", p.name, status)
		}
		for step := 0; step < 4; step++ {
			var action string
			switch n.ProvisionState {
			case node.Enroll:
				action = "manage"
			case node.Manageable, node.AdoptFailed:
				action = "provide"
				if n.InstanceUUID != nil && *n.InstanceUUID != "" {
					action = "adopt"
				}
			}
			if action == "" {
				break
			}
			status, body, err := d.api(ctx, http.MethodPut, "/v1/nodes/"+p.name+"/states/provision", map[string]string{"target": action})
			if err != nil {
				return fmt.Errorf("%s %s: %w", action, p.name, err)
			}
			if status != http.StatusAccepted {
				return fmt.Errorf("%s %s: %d %s", action, p.name, status, body)
			}
			before := n.ProvisionState
			if n, _, err = d.getNode(ctx, p.name); err != nil || n == nil {
				return fmt.Errorf("read node %s back: %v", p.name, err)
			}
			if n.ProvisionState == before || n.ProvisionState == node.AdoptFailed {
				lastErr := ""
				if n.LastError != nil {
					lastErr = *n.LastError
				}
				return fmt.Errorf("%s %s: still %q: %s", action, p.name, n.ProvisionState, lastErr)
			}
		}
	}
	d.printf("enrolled %d new nodes through the API; %d reused from %s\n", created, len(known), d.opts.DataDir)
	return nil
}

// fault is one misbehaviour injected after enrollment.
type fault struct {
	nodes []string
	what  string
}

// injectFaults gives the periodic sync something to do: hardware powered
// the other way than recorded (the sync puts it back, as
// force_power_state_during_sync says), and BMCs that fail every request
// (after power_state_sync_max_retries failed passes the node goes into
// maintenance with fault "power failure"; recovery retries it).
func (d *demo) injectFaults() []fault {
	var drift, broken, brokenIPMI []string
	for _, p := range d.fleet {
		switch {
		case p.group == segmentGroup && p.index == 3:
			d.setHardware(p, !d.hardwareOn(p))
			drift = append(drift, p.name)
		case p.group != "":
		case p.driver == redfish.Name && (p.index == 8 || p.index == 21):
			d.setHardware(p, !d.hardwareOn(p))
			drift = append(drift, p.name)
		case p.driver == redfish.Name && (p.index == 13 || p.index == 27):
			d.sims.Redfish.SetFault(strconv.Itoa(p.index), redfishsim.FaultServerError)
			broken = append(broken, p.name)
		case p.driver == ipmi.Name && p.index == 7:
			d.sims.IPMI.BMCs()[p.index-1].SetFault(ipmisim.FaultError)
			brokenIPMI = append(brokenIPMI, p.name)
		}
	}
	var out []fault
	if len(drift) > 0 {
		out = append(out, fault{drift, "hardware switched the other way than recorded: the next sync pass puts it back"})
	}
	if len(broken) > 0 {
		out = append(out, fault{broken, "the Redfish BMC answers 500: after a few failed sync passes the node goes into maintenance"})
	}
	if len(brokenIPMI) > 0 {
		out = append(out, fault{brokenIPMI, "the IPMI BMC fails every chassis command: likewise"})
	}
	d.faults = out
	return out
}

// rel shows path relative to the working directory when it is below it.
func rel(path string) string {
	wd, err := os.Getwd()
	if err != nil {
		return path
	}
	r, err := filepath.Rel(wd, path)
	if err != nil || strings.HasPrefix(r, "..") {
		return path
	}
	return "./" + r
}

func (d *demo) printBanner(known map[string]bool) {
	o := d.opts
	instances := 0
	for _, p := range d.fleet {
		if p.instance {
			instances++
		}
	}
	ui := "http://" + hostPort(o.UIPort)
	apiURL := "http://" + hostPort(o.APIPort)
	temporal := rel(o.TemporalCLI)
	addr := "" // the temporal CLI's --address follows the command
	if o.TemporalPort != 7233 {
		addr = " --address " + hostPort(o.TemporalPort)
	}
	// starter reads the embedded defaults: say so when the demo differs.
	var env []string
	if wd, _ := os.Getwd(); o.Cluster || d.dbURL() != "sqlite://"+filepath.Join(wd, ".data", "metalpower.db") {
		env = append(env, "METALPOWER_DATABASE_URL="+d.dbURL())
	}
	if o.TemporalPort != 7233 {
		env = append(env, "METALPOWER_TEMPORAL_ADDRESS="+hostPort(o.TemporalPort))
	}
	starter := strings.Join(append(env, rel(o.Starter)), " ")
	var ipmiPorts []string
	for _, b := range d.sims.IPMI.BMCs()[:o.IPMI] {
		ipmiPorts = append(ipmiPorts, strconv.Itoa(b.Port))
	}
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	w("")
	segment := ""
	if o.Segment > 0 {
		segment = fmt.Sprintf(", %d Redfish seg-01.. in conductor group %s", o.Segment, segmentGroup)
	}
	w("metalpower %s: %d nodes (%d Redfish rf-01.., %d IPMI ipmi-1..%s; %d active with a Nova instance, the others available)",
		map[bool]string{false: "demo", true: "cluster"}[o.Cluster], len(d.fleet), o.Redfish, o.IPMI, segment, instances)
	w("")
	w("  Temporal Web UI    %s/namespaces/default/workflows", ui)
	if o.Cluster {
		w("  Temporal frontend  %s (temporal-server on PostgreSQL, databases %s and %s_visibility)", hostPort(o.TemporalPort), d.temporalDB(), d.temporalDB())
		w("  REST API           %s/v1 and http://%s/v1  (two processes, no auth)", apiURL, hostPort(d.secondAPIPort()))
		w("  Workers            3 processes: one of the default conductor group, two of %s", segmentGroup)
		w("  Segment BMCs       %s/redfish/v1: seg-01..seg-%02d, reached only by %s's workers", d.segmentURL, o.Segment, segmentGroup)
	} else {
		w("  Temporal frontend  %s (state in %s)", hostPort(o.TemporalPort), rel(filepath.Join(o.DataDir, "temporal.db")))
		if d.keystone != nil {
			w("  REST API           %s/v1  (auth_strategy keystone; the catalog's baremetal endpoint)", apiURL)
			w("  Keystone           %s  (admin's openrc, system scope: %s)", d.keystone.k.URL, rel(d.keystone.openrc))
			if d.openstack != nil {
				w("  Nova               %s  (nova-compute %s, ironic driver; admin's openrc, project admin: %s)", d.openstack.ComputeURL, d.openstack.Host, rel(d.openstackRC()))
				w("                     its power sync every %d s; logs in %s", novaSyncInterval, rel(d.openstack.Dir))
			}
		} else {
			w("  REST API           %s/v1  (no auth)", apiURL)
		}
	}
	w("  Redfish fleet      %s/redfish/v1  (%s/%s)", d.sims.RedfishURL, testbed.BMCUser, testbed.RedfishPassword)
	if o.IPMI > 0 {
		w("  IPMI BMCs          127.0.0.1 UDP ports %s  (%s/%s)", strings.Join(ipmiPorts, ","), testbed.BMCUser, testbed.IPMIPassword)
	}
	w("  Nova/Keystone sim  %s  (events received: %s)", d.sims.AuthURL, rel(filepath.Join(o.DataDir, "nova-events.log")))
	if o.Cluster {
		w("  Node store         %s", d.dbURL())
	} else {
		w("  Node store         %s", rel(d.dbPath()))
	}
	if o.Cluster {
		w("  Logs               %s/{temporal-ui,worker-1,worker-2,worker-3,api,api-2}.log", rel(o.DataDir))
	} else {
		w("  Logs               %s/{temporal,worker,api}.log", rel(o.DataDir))
	}
	w("  Schedules          power-sync every %d s, power-failure-recovery every %d s", o.SyncInterval, o.RecoveryInterval)
	if len(d.faults) > 0 {
		w("")
		w("Injected faults, for the sync to find:")
		for _, f := range d.faults {
			w("  %-14s %s", strings.Join(f.nodes, ", "), f.what)
		}
	}
	w("")
	w("Try, in another terminal from the repository root:")
	w("  # a power change started as a Temporal workflow")
	w(`  %s workflow start%s --task-queue %s --type PowerChange --input '{"node":"rf-01","target":"power off"}'`, temporal, addr, taskQueue)
	w("  # the operator CLI")
	w("  %s power off rf-02 --wait", starter)
	if d.keystone == nil {
		w("  # the Ironic REST API")
		w(`  curl -i -X PUT %s/v1/nodes/rf-03/states/power -H 'X-OpenStack-Ironic-API-Version: %s' -H 'Content-Type: application/json' -d '{"target":"power off"}'`, apiURL, apiVersion)
		w(`  curl -s %s/v1/nodes/rf-03 -H 'X-OpenStack-Ironic-API-Version: %s'`, apiURL, apiVersion)
	}
	if d.openstack != nil {
		server := ""
		for _, p := range d.fleet {
			if p.instance {
				server = p.name
				break
			}
		}
		w("  # Nova drives the nodes through metalpower, and hears of every change metalpower makes")
		w("  source %s   # the admin in project admin, who owns the servers", rel(d.openstackRC()))
		w("  openstack hypervisor list")
		w("  openstack server list")
		w("  openstack server stop srv-%s      # Nova powers %s off through metalpower", server, server)
		w("  source %s   # the admin, system-scoped, for the baremetal CLI", rel(d.keystone.openrc))
		w("  # %d s after Nova's stop (its node cache; docs/openstack.md), power it on through metalpower:", novaSyncInterval)
		w("  baremetal node power on %s        # Nova shows srv-%s ACTIVE again within a second", server, server)
	}
	w("  # the OpenStack baremetal CLI (python3-ironicclient)")
	if d.keystone != nil {
		w("  source %s   # the admin, system-scoped; the API is found in Keystone's catalog", rel(d.keystone.openrc))
		w("  baremetal node list")
		w("  baremetal node power on rf-03")
		w("  %s remote node list", rel(o.Starter))
		w(`  curl -s %s/v1/nodes -H "X-Auth-Token: $(openstack token issue -f value -c id)" -H 'X-OpenStack-Ironic-API-Version: %s'`, apiURL, apiVersion)
	} else {
		w("  baremetal --os-endpoint %s --os-auth-type none node list", apiURL)
		w("  baremetal --os-endpoint %s --os-auth-type none node power on rf-03", apiURL)
	}
	w("  # workflows of one node: type this query in the Web UI's search box, or")
	w(`  #   NodeName="rf-01"`)
	w(`  %s workflow list%s --query 'NodeName="rf-01"'`, temporal, addr)
	w("  %s schedule list%s", temporal, addr)
	w("")
	if o.Cluster {
		w("  # the same with tctl v1.18.0")
		w(`  tools/bin/tctl --address %s workflow list --open`, hostPort(o.TemporalPort))
		w("Ctrl-C stops every process it started; running it again reuses its databases and %s.", rel(o.DataDir))
	} else {
		w("Ctrl-C stops every process the demo started; running it again reuses %s.", rel(o.DataDir))
	}
	d.printf("%s", b.String())
}
