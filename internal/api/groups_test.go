package api_test

import (
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/metalpower/metalpower/internal/bmc/redfish"
	"github.com/metalpower/metalpower/internal/node"
	"github.com/metalpower/metalpower/internal/testbed/itest"
)

// TestConductorGroupsRouteEveryBMCCall runs a worker of the default group
// and one of group rack-b over one Redfish service whose systems record
// the User-Agent of every call: a sync pass, power changes and manage
// through the API each reach a BMC only from a worker of its node's
// group; a node of a group no worker serves is refused with Ironic's
// NoValidHost and left as it was, and the sync counts it as unserved;
// moved to a served group, its next change runs there.
func TestConductorGroupsRouteEveryBMCCall(t *testing.T) {
	t.Parallel()
	s := itest.NewStack(t, srv, itest.StackOptions{RedfishSystems: 6})
	s.StartGroupWorker(t, "rack-b")
	base := s.StartAPI(t, nil) + "/v1/nodes/"

	groups := map[string]string{"1": "", "2": "", "3": "rack-b", "4": "rack-b", "5": "rack-c"}
	for id, g := range groups {
		s.AddRedfishNode(t, "rf-"+id, id, "")
		s.Modify(t, "rf-"+id, func(n *node.Node) { n.ConductorGroup = g })
	}
	// Node 6 (rack-b) is enrolled: manage reads its BMC.
	s.AddRedfishNode(t, "rf-6", "6", "")
	s.Modify(t, "rf-6", func(n *node.Node) { n.ConductorGroup, n.ProvisionState, n.PowerState = "rack-b", node.Enroll, "" })
	groups["6"] = "rack-b"

	// Drift in both served groups: the sync forces the record back.
	s.Redfish.SetPowerState("1", "Off")
	s.Redfish.SetPowerState("3", "Off")
	res := s.SyncPass(t)
	if res.Checked != 4 || res.Corrected != 2 || res.NoWorker != 1 {
		t.Fatalf("sync pass: %+v, want 4 checked, 2 corrected, 1 node whose group no worker serves", res)
	}
	for _, id := range []string{"1", "3"} {
		if got := s.Redfish.PowerState(id); got != "On" {
			t.Errorf("system %s is %s after the sync, want On", id, got)
		}
	}

	// Power changes through the API, in both served groups.
	for _, name := range []string{"rf-2", "rf-4"} {
		if code, _, body := do(t, http.MethodPut, base+name+"/states/power", "1.46", `{"target":"power off"}`); code != http.StatusAccepted {
			t.Fatalf("power off %s: %d %s", name, code, body)
		}
	}
	itest.WaitFor(t, time.Minute, "both power changes to finish", func() bool {
		return s.Node(t, "rf-2").PowerState == node.PowerOff && s.Node(t, "rf-4").PowerState == node.PowerOff &&
			s.Node(t, "rf-2").TargetPowerState == "" && s.Node(t, "rf-4").TargetPowerState == ""
	})

	// Manage runs on rack-b's worker, as a workflow.
	if code, _, body := do(t, http.MethodPut, base+"rf-6/states/provision", "1.46", `{"target":"manage"}`); code != http.StatusAccepted {
		t.Fatalf("manage rf-6: %d %s", code, body)
	}
	if n := s.Node(t, "rf-6"); n.ProvisionState != node.Manageable || n.PowerState != node.PowerOn {
		t.Fatalf("rf-6 after manage: %s, power %q", n.ProvisionState, n.PowerState)
	}

	// rack-c has no worker: refused, nothing changed.
	before := s.Node(t, "rf-5")
	for _, req := range []struct{ path, body string }{
		{"/states/power", `{"target":"power off"}`},
		{"/states/provision", `{"target":"provide"}`},
	} {
		code, _, body := do(t, http.MethodPut, base+"rf-5"+req.path, "1.46", req.body)
		if req.path == "/states/provision" {
			// provide reads no BMC: it needs no worker.
			if code != http.StatusAccepted {
				t.Fatalf("provide rf-5: %d %s", code, body)
			}
			continue
		}
		if code != http.StatusBadRequest || !strings.Contains(ironicFault(t, body), `No valid host was found. Reason: No conductor service registered which supports driver redfish for conductor group "rack-c"`) {
			t.Fatalf("power off rf-5 (no worker of rack-c): %d %s", code, body)
		}
	}
	if after := s.Node(t, "rf-5"); after.PowerState != before.PowerState || after.TargetPowerState != "" || after.LastError != before.LastError {
		t.Fatalf("a refused change touched rf-5: %+v", after)
	}
	if got := s.Redfish.PowerState("5"); got != "On" {
		t.Fatalf("system 5 is %s: a refused change reached it", got)
	}

	// Moved to rack-b (groups are case-insensitive), its next change runs
	// on rack-b's worker.
	if code, _, body := do(t, http.MethodPatch, base+"rf-5", "1.46", `[{"op":"replace","path":"/conductor_group","value":"RACK-B"}]`); code != http.StatusOK {
		t.Fatalf("move rf-5 to rack-b: %d %s", code, body)
	}
	if code, _, body := do(t, http.MethodPut, base+"rf-5/states/power", "1.46", `{"target":"power off"}`); code != http.StatusAccepted {
		t.Fatalf("power off rf-5 in rack-b: %d %s", code, body)
	}
	itest.WaitFor(t, time.Minute, "rf-5 to be off", func() bool {
		n := s.Node(t, "rf-5")
		return n.PowerState == node.PowerOff && n.TargetPowerState == ""
	})
	groups["5"] = "rack-b"

	// Who called each system.
	for id, g := range groups {
		callers := s.Redfish.Callers(id)
		if g == "rack-c" {
			if len(callers) != 0 {
				t.Errorf("system %s (rack-c, no worker) was called by %q", id, callers)
			}
			continue
		}
		if want := []string{redfish.UserAgent(g)}; !slices.Equal(callers, want) {
			t.Errorf("system %s (group %q) was called by %q, want only %q", id, g, callers, want)
		}
	}
}
