package api_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/metalpower/metalpower/internal/node"
	"github.com/metalpower/metalpower/internal/testbed"
	"github.com/metalpower/metalpower/internal/testbed/baremetal"
	"github.com/metalpower/metalpower/internal/testbed/itest"
)

// The OpenStack `baremetal` CLI (python-ironicclient's OSC plugin, Debian's
// python3-ironicclient and python3-openstackclient) against the API in
// noauth mode: Ironic's own client must work unchanged.
//
// Not covered because the API does not serve them yet: `node list` with
// any filter, --fields, --limit or --sort (the CLI asks GET
// /v1/nodes/?... with a trailing slash, answered 404), `node set
// --property` (PATCH /properties/..., 400), `node validate`, `node inject
// nmi`, `node boot device`, `node console` and `driver list` (404).

func TestBaremetalCLIEnrollAndDelete(t *testing.T) {
	t.Parallel()
	s := itest.NewStack(t, srv, itest.StackOptions{RedfishSystems: 2, IPMIBMCs: 1})
	cli := baremetal.New(t, s.StartAPI(t, nil), "1.95")
	s.AddRedfishNode(t, "cli-1", "1", "")

	var created map[string]any
	cli.JSON(&created, "node", "create", "--driver", "redfish", "--name", "cli-2",
		"--driver-info", "redfish_address="+s.RedfishURL, "--driver-info", "redfish_system_id="+s.Redfish.SystemPath("2"),
		"--driver-info", "redfish_username=admin", "--driver-info", "redfish_password="+testbed.RedfishPassword)
	info, _ := created["driver_info"].(map[string]any)
	if created["name"] != "cli-2" || created["driver"] != "redfish" || created["provision_state"] != node.Enroll ||
		created["power_state"] != nil || info["redfish_password"] != node.Masked || info["redfish_username"] != "admin" {
		t.Fatalf("node create printed %v", created)
	}
	uuid, _ := created["uuid"].(string)
	if rec := s.Node(t, uuid); rec.Name != "cli-2" || rec.DriverInfo["redfish_password"] != testbed.RedfishPassword {
		t.Fatalf("stored node: name %q, password stored: %v", rec.Name, rec.DriverInfo["redfish_password"] == testbed.RedfishPassword)
	}

	// manage verifies the BMC and reads the power state; --wait polls the
	// provision state through the API.
	cli.OK("node", "manage", "cli-2", "--wait", "30")
	cli.OK("node", "provide", "cli-2", "--wait", "30")
	if got := cli.Show("cli-2", "provision_state", "power_state", "uuid"); !equalJSON(got, map[string]any{
		"provision_state": node.Available, "power_state": node.PowerOn, "uuid": uuid,
	}) {
		t.Errorf("node show --fields = %v", got)
	}

	var list []map[string]any
	cli.JSON(&list, "node", "list")
	want := []map[string]any{
		{"Name": "cli-1", "Power State": node.PowerOn, "Provisioning State": node.Manageable, "Maintenance": false, "Instance UUID": nil},
		{"Name": "cli-2", "Power State": node.PowerOn, "Provisioning State": node.Available, "Maintenance": false, "Instance UUID": nil},
	}
	for _, row := range list {
		delete(row, "UUID") // random
	}
	slices.SortFunc(list, func(a, b map[string]any) int { return strings.Compare(a["Name"].(string), b["Name"].(string)) })
	if !slices.EqualFunc(list, want, equalJSON) {
		t.Errorf("node list = %v, want %v", list, want)
	}

	if out := cli.OK("node", "delete", "cli-2"); strings.TrimSpace(out) != "Deleted node cli-2" {
		t.Errorf("node delete printed %q", out)
	}
	cli.Fails("Node cli-2 could not be found. (HTTP 404)", "node", "show", "cli-2")
	if status, body := seedCall(t, http.MethodGet, cli.Endpoint+"/v1/nodes/"+uuid, ""); status != http.StatusNotFound {
		t.Errorf("GET the deleted node: %d %s", status, body)
	}
}

// Every power verb of the CLI, on a node with an instance: the hardware,
// the node record and Nova's events follow each one.
func TestBaremetalCLIPowerActions(t *testing.T) {
	t.Parallel()
	s := itest.NewStack(t, srv, itest.StackOptions{RedfishSystems: 1, IPMIBMCs: 1})
	cli := baremetal.New(t, s.StartAPI(t, nil), "1.95")
	const instance = "c11c11c1-1111-4222-8333-444455556666"
	n := s.AddRedfishNode(t, "cli-1", "1", instance)

	steps := []struct {
		args      []string
		wantPower string
		wantReset []string // the Redfish resets it sends
		wantTag   string   // the power-update event Nova gets
	}{
		{[]string{"node", "power", "off", "cli-1"}, node.PowerOff, []string{"ForceOff"}, "POWER_OFF"},
		{[]string{"node", "power", "on", "cli-1", "--power-timeout", "30"}, node.PowerOn, []string{"On"}, "POWER_ON"},
		// Ironic's redfish reboot: ForceOff, wait until off, On.
		{[]string{"node", "reboot", "cli-1"}, node.PowerOn, []string{"ForceOff", "On"}, "POWER_ON"},
		{[]string{"node", "reboot", "--soft", "cli-1"}, node.PowerOn, []string{"GracefulRestart"}, "POWER_ON"},
		{[]string{"node", "power", "off", "--soft", "cli-1"}, node.PowerOff, []string{"GracefulShutdown"}, "POWER_OFF"},
		{[]string{"node", "power", "on", n.UUID}, node.PowerOn, []string{"On"}, "POWER_ON"},
	}
	var wantResets, wantTags []string
	for _, step := range steps {
		if out := cli.OK(step.args...); out != "" {
			t.Errorf("baremetal %s printed %q", strings.Join(step.args, " "), out)
		}
		// The CLI does not wait for power changes; its users poll.
		st := seedWaitStates(t, cli.Endpoint, n.UUID)
		if seedStr(st.PowerState) != step.wantPower || st.LastError != nil {
			t.Fatalf("after %v: power_state %s, last_error %s\nAPI requests:\n%s", step.args, seedStr(st.PowerState), seedStr(st.LastError), cli.Log)
		}
		wantHW := map[string]string{node.PowerOn: "On", node.PowerOff: "Off"}[step.wantPower]
		if got := s.Redfish.PowerState("1"); got != wantHW {
			t.Errorf("after %v: hardware %s, want %s", step.args, got, wantHW)
		}
		wantResets = append(wantResets, step.wantReset...)
		wantTags = append(wantTags, step.wantTag)
		// The event follows the change's end.
		itest.WaitFor(t, 30*time.Second, "the power-update event", func() bool { return len(s.NovaTags(instance)) == len(wantTags) })
	}
	if got := s.Redfish.Resets("1"); !slices.Equal(got, wantResets) {
		t.Errorf("Redfish resets = %q, want %q", got, wantResets)
	}
	if got := s.NovaTags(instance); !slices.Equal(got, wantTags) {
		t.Errorf("Nova events = %q, want %q", got, wantTags)
	}
	if got := cli.Show("cli-1", "power_state", "target_power_state", "last_error", "instance_uuid"); !equalJSON(got, map[string]any{
		"power_state": node.PowerOn, "target_power_state": nil, "last_error": nil, "instance_uuid": instance,
	}) {
		t.Errorf("node show = %v", got)
	}
	cli.Fails("Node nosuch could not be found. (HTTP 404)", "node", "power", "on", "nosuch")
}

func TestBaremetalCLIMaintenanceAndSet(t *testing.T) {
	t.Parallel()
	s := itest.NewStack(t, srv, itest.StackOptions{RedfishSystems: 1, IPMIBMCs: 1})
	cli := baremetal.New(t, s.StartAPI(t, nil), "1.95")
	n := s.AddRedfishNode(t, "cli-1", "1", "")
	const instance = "c22c22c2-1111-4222-8333-444455556666"

	steps := []struct {
		args []string
		want map[string]any // node show of these fields afterwards
	}{
		{[]string{"node", "maintenance", "set", "cli-1", "--reason", "BMC swap"},
			map[string]any{"maintenance": true, "maintenance_reason": "BMC swap"}},
		{[]string{"node", "maintenance", "unset", "cli-1"},
			map[string]any{"maintenance": false, "maintenance_reason": nil}},
		{[]string{"node", "maintenance", "set", "cli-1"}, // no reason: {"reason": null}
			map[string]any{"maintenance": true, "maintenance_reason": nil}},
		{[]string{"node", "maintenance", "unset", "cli-1"},
			map[string]any{"maintenance": false}},
		// The CLI sends a value that parses as JSON as such: slot=7 is 7.
		{[]string{"node", "set", "cli-1", "--extra", "rack=r12", "--extra", "slot=7"},
			map[string]any{"extra": map[string]any{"rack": "r12", "slot": 7}}},
		{[]string{"node", "unset", "cli-1", "--extra", "slot"},
			map[string]any{"extra": map[string]any{"rack": "r12"}}},
		{[]string{"node", "set", "cli-1", "--instance-uuid", instance},
			map[string]any{"instance_uuid": instance}},
		{[]string{"node", "set", "cli-1", "--name", "cli-1b"},
			map[string]any{"name": "cli-1b"}},
		// What Nova's resource tracker reads.
		{[]string{"node", "set", "cli-1b", "--resource-class", "baremetal.gold", "--property", "cpu_arch=x86_64", "--property", "memory_mb=65536"},
			map[string]any{"resource_class": "baremetal.gold", "properties": map[string]any{"cpu_arch": "x86_64", "memory_mb": 65536}}},
		{[]string{"node", "unset", "cli-1b", "--property", "memory_mb"},
			map[string]any{"properties": map[string]any{"cpu_arch": "x86_64"}}},
		{[]string{"node", "add", "trait", "cli-1b", "CUSTOM_GPU", "HW_CPU_X86_AVX2"},
			map[string]any{"traits": []any{"CUSTOM_GPU", "HW_CPU_X86_AVX2"}}},
		{[]string{"node", "remove", "trait", "cli-1b", "CUSTOM_GPU"},
			map[string]any{"traits": []any{"HW_CPU_X86_AVX2"}}},
	}
	for _, step := range steps {
		cli.OK(step.args...)
		// Read back through the API: a CLI run costs a second or two.
		var fields []string
		for k := range step.want {
			fields = append(fields, k)
		}
		status, body := seedCall(t, http.MethodGet, cli.Endpoint+"/v1/nodes/"+n.UUID+"?fields="+strings.Join(fields, ","), "")
		var got map[string]any
		if err := json.Unmarshal(body, &got); status != http.StatusOK || err != nil {
			t.Fatalf("GET node: %d %s", status, body)
		}
		delete(got, "links")
		if !equalJSON(got, step.want) {
			t.Errorf("after %v: node = %v, want %v", step.args, got, step.want)
		}
	}
	rec := s.Node(t, n.UUID)
	if rec.Maintenance || rec.MaintenanceReason != "" || rec.Name != "cli-1b" || rec.InstanceUUID != instance || rec.Extra["rack"] != "r12" {
		t.Errorf("node record: %+v", rec)
	}

	// The instance lookup Nova's tools use, then detaching the instance.
	if out := cli.OK("node", "show", "--instance", instance, "-f", "value", "-c", "name"); strings.TrimSpace(out) != "cli-1b" {
		t.Errorf("node show --instance printed %q", out)
	}
	cli.OK("node", "unset", "cli-1b", "--instance-uuid")
	if got := s.Node(t, n.UUID).InstanceUUID; got != "" {
		t.Errorf("instance_uuid %q after unset", got)
	}
	var list []map[string]any
	cli.JSON(&list, "node", "list")
	if len(list) != 1 || list[0]["Name"] != "cli-1b" || list[0]["Maintenance"] != false || list[0]["Instance UUID"] != nil {
		t.Errorf("node list = %v", list)
	}
}

// The CLI negotiates its microversion from GET /v1 when asked for "latest"
// or left to its default; names need 1.5, as in Ironic.
func TestBaremetalCLIMicroversions(t *testing.T) {
	t.Parallel()
	s := itest.NewStack(t, srv, itest.StackOptions{RedfishSystems: 1, IPMIBMCs: 1})
	apiURL := s.StartAPI(t, nil)
	s.AddRedfishNode(t, "cli-1", "1", "")
	tests := []struct {
		version    string
		negotiates bool // asks GET /v1 first
		byName     bool // node show <name> works
	}{
		{version: "", byName: true}, // the CLI's newest known version
		{version: "latest", negotiates: true, byName: true},
		{version: "1.95", byName: true},
		{version: "1.5", byName: true},
		{version: "1.1", byName: false},
	}
	for _, tt := range tests {
		t.Run("version "+tt.version, func(t *testing.T) {
			t.Parallel()
			cli := baremetal.New(t, apiURL, tt.version)
			if tt.byName {
				if got := cli.Show("cli-1", "name", "power_state"); !equalJSON(got, map[string]any{"name": "cli-1", "power_state": node.PowerOn}) {
					t.Errorf("node show = %v", got)
				}
			} else {
				cli.Fails("Node cli-1 could not be found. (HTTP 404)", "node", "show", "cli-1")
			}

			// Version discovery goes without a version; then the CLI uses
			// the version asked for, or the highest both sides know.
			versions := cli.Log.Versions()
			want := 1
			if tt.negotiates {
				want = 2
			}
			if len(versions) != want || (tt.negotiates && versions[0] != "") {
				t.Fatalf("versions = %q, want %d requests\n%s", versions, want, cli.Log)
			}
			if used := versions[len(versions)-1]; !(used == tt.version || (!strings.HasPrefix(tt.version, "1.") && inRange(used, 5, 95))) {
				t.Errorf("the CLI used version %s, asked for %q\n%s", used, tt.version, cli.Log)
			}
		})
	}
}

// inRange reports whether v is "1.N" with lo <= N <= hi.
func inRange(v string, lo, hi int) bool {
	minor, ok := strings.CutPrefix(v, "1.")
	n, err := strconv.Atoi(minor)
	return ok && err == nil && n >= lo && n <= hi
}

// equalJSON compares decoded JSON values.
func equalJSON(a, b map[string]any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return bytes.Equal(x, y)
}
