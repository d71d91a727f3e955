package powersync

import (
	"errors"
	"testing"

	"github.com/metalpower/metalpower/internal/bmc/ipmi"
	"github.com/metalpower/metalpower/internal/node"
)

func TestDecide(t *testing.T) {
	timeout := errors.New("timed out")
	force := Rules{Force: true, MaxRetries: 3}
	record := Rules{Force: false, MaxRetries: 3}
	tests := []struct {
		name  string
		edit  func(n *node.Node)
		read  Read
		rules Rules
		want  Decision
	}{
		{"match resets the counter and last_error", func(n *node.Node) { n.SyncFailures, n.LastError = 2, "old" },
			Read{State: node.PowerOn}, force, Decision{Action: InSync, State: node.PowerOn, Write: true}},
		{"no record: take the hardware's and tell Nova", func(n *node.Node) { n.PowerState, n.SyncFailures = "", 1 },
			Read{State: node.PowerOff}, force, Decision{Action: Recorded, State: node.PowerOff, Notify: true, Write: true}},
		{"no record, driver_info unusable: skip, count nothing", func(n *node.Node) { n.PowerState, n.SyncFailures, n.LastError = "", 2, "x" },
			Read{Err: timeout, ConfigError: true}, force, Decision{Action: Skipped, LastError: "x", Write: true}},
		{"no record, BMC unreachable (404, TLS, unknown host): counts like any failure", func(n *node.Node) { n.PowerState = "" },
			Read{Err: timeout}, force, Decision{Action: Unreadable, Count: 1, Write: true}},
		{"no record, no state read (unmappable): nothing to do", func(n *node.Node) { n.PowerState, n.SyncFailures = "", 1 },
			Read{State: ""}, force, Decision{Action: InSync, Write: true}},
		{"unmappable state is a mismatch: push the record", func(n *node.Node) {},
			Read{State: ""}, force, Decision{Action: Force, Count: 1, Target: node.PowerOn, Moved: true, Write: true}},
		{"unreadable counts", func(n *node.Node) { n.SyncFailures, n.LastError = 1, "x" },
			Read{Err: timeout}, force, Decision{Action: Unreadable, Count: 2, LastError: "x", Write: true}},
		{"unreadable with a known state and a config error still counts", func(n *node.Node) {},
			Read{Err: timeout, ConfigError: true}, force, Decision{Action: Unreadable, Count: 1, Write: true}},
		{"mismatch, forcing: push the record", func(n *node.Node) { n.LastError = "x" },
			Read{State: node.PowerOff}, force, Decision{Action: Force, Count: 1, State: node.PowerOff, Target: node.PowerOn, Moved: true, Write: true}},
		{"mismatch, forcing, failure state keeps last_error", func(n *node.Node) { n.ProvisionState, n.LastError = node.DeployFailed, "x" },
			Read{State: node.PowerOff}, force, Decision{Action: Force, Count: 1, State: node.PowerOff, Target: node.PowerOn, LastError: "x", Moved: true, Write: true}},
		{"mismatch, not forcing: record and tell Nova, last_error stays", func(n *node.Node) { n.LastError = "x" },
			Read{State: node.PowerOff}, record, Decision{Action: Recorded, Count: 1, State: node.PowerOff, LastError: "x", Notify: true, Moved: true, Write: true}},
		{"mismatch, disable_power_off blocks forcing", func(n *node.Node) { n.DisablePowerOff = true },
			Read{State: node.PowerOff}, force, Decision{Action: Recorded, Count: 1, State: node.PowerOff, Notify: true, Moved: true, Write: true}},
		{"recorded error cannot be forced", func(n *node.Node) { n.PowerState = node.PowerError },
			Read{State: node.PowerOn}, force, Decision{Action: ForceFailed, Count: 1, State: node.PowerOn, Write: true,
				LastError: "Failed to change power state to 'None' by 'error': the recorded power state can not be forced onto the hardware"}},
		{"over max on a mismatch: maintenance, record, tell Nova", func(n *node.Node) { n.SyncFailures = 3 },
			Read{State: node.PowerOff}, force, Decision{Action: Maintenance, Count: 4, State: node.PowerOff, Notify: true, Moved: true, Write: true,
				LastError: "During sync_power_state, max retries exceeded for node N, node state power off does not match expected state 'power on'. Updating DB state to 'power off' Switching node to maintenance mode."}},
		{"over max unreadable: maintenance, record None", func(n *node.Node) { n.SyncFailures = 3 },
			Read{Err: timeout}, force, Decision{Action: Maintenance, Count: 4, Notify: true, Write: true,
				LastError: "During sync_power_state, max retries exceeded for node N, node state None does not match expected state 'power on'. Updating DB state to 'None' Switching node to maintenance mode. Error: timed out"}},
		{"over max, driver said error: record error", func(n *node.Node) { n.SyncFailures = 3 },
			Read{State: node.PowerError, Err: timeout, DriverError: true}, force, Decision{Action: Maintenance, Count: 4, State: node.PowerError, Notify: true, Write: true,
				LastError: "During sync_power_state, max retries exceeded for node N, node state error does not match expected state 'power on'. Updating DB state to 'error' Switching node to maintenance mode. Error: timed out"}},
		{"in maintenance since the page: skip", func(n *node.Node) { n.Maintenance, n.SyncFailures = true, 1 },
			Read{State: node.PowerOff}, force, Decision{Action: Skipped, Count: 1}},
		{"change started since the page: skip", func(n *node.Node) { n.TargetPowerState = node.PowerOff },
			Read{State: node.PowerOff}, force, Decision{Action: Skipped}},
		{"excluded state since the page: skip", func(n *node.Node) { n.ProvisionState = node.DeployWait },
			Read{State: node.PowerOff}, force, Decision{Action: Skipped}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := node.New("N", "n", ipmi.Name, nil)
			n.UUID, n.ProvisionState, n.PowerState = "N", node.Active, node.PowerOn
			tt.edit(n)
			if got := Decide(n, tt.read, tt.rules); got != tt.want {
				t.Fatalf("Decide =\n%+v\nwant\n%+v", got, tt.want)
			}
		})
	}
}

func TestTriage(t *testing.T) {
	timeout := errors.New("timed out")
	tests := []struct {
		name       string
		recorded   string
		read       Read
		wantInSync bool
		wantReason string
	}{
		{"match", node.PowerOn, Read{State: node.PowerOn}, true, ""},
		{"mismatch", node.PowerOn, Read{State: node.PowerOff}, false, "mismatch"},
		{"unreadable", node.PowerOn, Read{Err: timeout}, false, "unreadable"},
		{"driver said error", node.PowerOn, Read{State: node.PowerError, Err: timeout, DriverError: true}, false, "unreadable"},
		{"no record", "", Read{State: node.PowerOn}, false, "unknown"},
		{"no record, unreadable", "", Read{Err: timeout}, false, "unknown"},
		{"no record, unaddressable: left alone", "", Read{Err: timeout, ConfigError: true}, false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := node.New("", "n", ipmi.Name, nil)
			n.PowerState = tt.recorded
			inSync, reason := Triage(n, tt.read)
			if inSync != tt.wantInSync || reason != tt.wantReason {
				t.Fatalf("Triage = %v, %q; want %v, %q", inSync, reason, tt.wantInSync, tt.wantReason)
			}
		})
	}
}
