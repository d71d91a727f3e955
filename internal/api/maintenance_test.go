package api_test

import (
	"testing"

	"github.com/metalpower/metalpower/internal/node"
	"github.com/metalpower/metalpower/internal/testbed/itest"
)

// TestMaintenanceKeepsAndClearsTheFaultAsIronic: PUT .../maintenance on
// a node in maintenance for a power failure changes the reason and keeps
// the fault (the recovery pass still takes it out); every way out of
// maintenance (DELETE, PATCH maintenance=false) clears reason and fault,
// as Ironic's update_node; PATCH maintenance=true keeps them.
func TestMaintenanceKeepsAndClearsTheFaultAsIronic(t *testing.T) {
	s := itest.NewStack(t, srv, itest.StackOptions{RedfishSystems: 1, IPMIBMCs: 1})
	base := s.StartAPI(t, nil) + "/v1/nodes/"
	n := s.AddRedfishNode(t, "maint-1", "1", "")
	reset := func() {
		s.Modify(t, n.UUID, func(n *node.Node) {
			n.Maintenance, n.MaintenanceReason, n.Fault = true, "During sync_power_state, max retries exceeded", node.FaultPowerFailure
		})
	}
	tests := []struct {
		name, method, path, body string
		want                     int
		maint                    bool
		reason, fault            string
	}{
		{"PUT keeps the fault", "PUT", "/maintenance", `{"reason": "rack move"}`, 202, true, "rack move", node.FaultPowerFailure},
		{"PUT without a body keeps the fault", "PUT", "/maintenance", ``, 202, true, "", node.FaultPowerFailure},
		{"DELETE clears", "DELETE", "/maintenance", ``, 202, false, "", ""},
		{"PATCH maintenance=false clears", "PATCH", "", `[{"op": "replace", "path": "/maintenance", "value": false}]`, 200, false, "", ""},
		{"PATCH maintenance=true keeps", "PATCH", "", `[{"op": "replace", "path": "/maintenance", "value": true}]`, 200, true, "During sync_power_state, max retries exceeded", node.FaultPowerFailure},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reset()
			if code, _, body := do(t, tt.method, base+n.UUID+tt.path, "1.76", tt.body); code != tt.want {
				t.Fatalf("%s %s: %d %s", tt.method, tt.path, code, body)
			}
			got := s.Node(t, n.UUID)
			if got.Maintenance != tt.maint || got.MaintenanceReason != tt.reason || got.Fault != tt.fault {
				t.Fatalf("maintenance %v, reason %q, fault %q; want %v, %q, %q", got.Maintenance, got.MaintenanceReason, got.Fault, tt.maint, tt.reason, tt.fault)
			}
		})
	}
}
