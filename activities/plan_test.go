package activities_test

import (
	"testing"

	"github.com/metalpower/metalpower/activities"
	"github.com/metalpower/metalpower/internal/bmc/ipmi"
	"github.com/metalpower/metalpower/internal/config"
	"github.com/metalpower/metalpower/internal/node"
)

// Every power change, requested or forced by the sync, is planned by
// NewPowerPlan: one set of defaults for both (the sync used to retry the BMC
// command for 1 s where a request retried for 60 s when
// command_retry_timeout was 0).
func TestNewPowerPlan(t *testing.T) {
	cond := config.Conductor{PowerStateChangeTimeout: 60, SoftPowerOffTimeout: 600}
	n := node.New("", "n1", ipmi.Name, node.DriverInfo{"ipmi_address": "10.0.0.7", "ipmi_port": float64(6230)})
	n.InstanceUUID = "6c1a4f0e-9c61-4b53-9a2a-3c8d2f3f1b10"
	tests := []struct {
		name         string
		target, via  string
		timeout      int
		retry        int
		wantFinal    string
		wantTimeout  int
		wantRetrying int
	}{
		{"request, defaults", node.PowerOff, "api", 0, 0, node.PowerOff, 60, 60},
		{"sync force, defaults", node.PowerOn, "sync", 0, 0, node.PowerOn, 60, 60},
		{"negative retry option", node.PowerOn, "sync", 0, -5, node.PowerOn, 60, 60},
		{"retry option set", node.PowerOn, "cli", 0, 10, node.PowerOn, 60, 10},
		{"own timeout", node.PowerOff, "api", 30, 0, node.PowerOff, 30, 60},
		{"reboot ends on", node.Reboot, "api", 0, 0, node.PowerOn, 60, 60},
		{"soft reboot waits soft_power_off_timeout", node.SoftReboot, "api", 0, 0, node.PowerOn, 600, 60},
		{"soft power off waits soft_power_off_timeout", node.SoftPowerOff, "api", 0, 0, node.PowerOff, 600, 60},
		{"soft power off with its own timeout", node.SoftPowerOff, "api", 45, 0, node.PowerOff, 45, 60},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := activities.NewPowerPlan(n, tt.target, tt.timeout, tt.via, cond, config.IPMI{CommandRetryTimeout: tt.retry})
			want := activities.PowerPlan{NodeUUID: n.UUID, NodeName: "n1", Driver: ipmi.Name, BMC: "10.0.0.7:6230", InstanceUUID: n.InstanceUUID,
				Target: tt.target, Final: tt.wantFinal, Timeout: tt.wantTimeout, CommandRetryTimeout: tt.wantRetrying, Via: tt.via}
			if p != want {
				t.Fatalf("NewPowerPlan = %+v\nwant           %+v", p, want)
			}
		})
	}
}
