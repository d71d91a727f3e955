package activities_test

// Power-failure recovery (RecoverPowerFailures) against Ironic's
// ManagerPowerRecoveryTestCase (_power_failure_recovery):
//
//   test_node_not_mapped                     not applicable: no hash ring; the maintenance+fault query filter is
//                                            TestRecoveryReadsOnlyPowerFailureMaintenanceNodes
//   test_node_locked_on_acquire              TestRecoveryReadsOnlyPowerFailureMaintenanceNodes ("target set": a node's
//                                            lock holder marks target_power_state) and
//                                            TestRecoveryLeavesANodeThatChangedDuringTheRead
//   test_node_in_enroll_on_acquire           TestRecoveryReadsOnlyPowerFailureMaintenanceNodes ("enroll")
//   test_node_in_power_transition_on_acquire TestRecoveryReadsOnlyPowerFailureMaintenanceNodes ("target set")
//   test_node_not_in_maintenance_on_acquire  TestRecoveryReadsOnlyPowerFailureMaintenanceNodes, TestRecoveryLeavesANodeThatChangedDuringTheRead
//   test_node_disappears_on_acquire          TestRecoveryNodeDeletedDuringThePassIsSkipped
//   test_node_recovery_success               TestRecoverySuccessClearsMaintenanceKeepsLastError
//   test_node_recovery_failed                TestRecoveryFailedReadChangesNothing

import (
	"context"
	"testing"

	"github.com/metalpower/metalpower/activities"
	"github.com/metalpower/metalpower/internal/node"
)

// powerFailure puts a node in maintenance as the sync's max-retries
// handler does.
func powerFailure(n *node.Node) {
	n.Maintenance, n.Fault, n.SyncFailures = true, node.FaultPowerFailure, 4
	n.MaintenanceReason, n.LastError = "During sync_power_state, max retries exceeded", "During sync_power_state, max retries exceeded"
}

func TestRecoveryReadsOnlyPowerFailureMaintenanceNodes(t *testing.T) {
	f := newFixture(t, force(conductor()))
	f.allowNova()
	failed := f.addNode(powerFailure)
	failedManageable := f.addNode(func(n *node.Node) { powerFailure(n); n.ProvisionState = node.Manageable })
	// Only enroll is excluded here, unlike the sync's excluded states.
	failedDeployWait := f.addNode(func(n *node.Node) { powerFailure(n); n.ProvisionState = node.DeployWait })
	others := map[string]*node.Node{
		"admin maintenance":  f.addNode(func(n *node.Node) { n.Maintenance, n.MaintenanceReason = true, "rack move" }),
		"not in maintenance": f.addNode(func(n *node.Node) { n.Fault = node.FaultPowerFailure }),
		"other fault":        f.addNode(func(n *node.Node) { powerFailure(n); n.Fault = node.FaultCleanFailure }),
		"enroll":             f.addNode(func(n *node.Node) { powerFailure(n); n.ProvisionState = node.Enroll }),
		"target set":         f.addNode(func(n *node.Node) { powerFailure(n); n.TargetPowerState = node.PowerOn }),
	}
	res := f.recoverPass()
	for _, n := range []*node.Node{failed, failedManageable, failedDeployWait} {
		if f.bmcs.readsOf(n.UUID) != 1 {
			t.Errorf("power-failure node (%s) read %d times, want once", n.ProvisionState, f.bmcs.readsOf(n.UUID))
		}
		if f.get(n.UUID).Maintenance {
			t.Errorf("power-failure node (%s) still in maintenance", n.ProvisionState)
		}
	}
	for name, n := range others {
		if r := f.bmcs.readsOf(n.UUID); r != 0 {
			t.Errorf("%s: read %d times, want never", name, r)
		}
		if got := f.get(n.UUID); got.Version != n.Version {
			t.Errorf("%s: node written", name)
		}
	}
	if res.Recovered != 3 || res.StillFailing != 0 {
		t.Fatalf("result = %+v, want 3 recovered", res)
	}
}

func TestRecoverySuccessClearsMaintenanceKeepsLastError(t *testing.T) {
	tests := []struct {
		name     string
		recorded string
		read     string
		instance bool
		nova     bool
	}{
		{"state changed, instance", node.PowerOn, node.PowerOff, true, true},
		{"state changed from none, instance", "", node.PowerOn, true, true},
		{"state unchanged", node.PowerOff, node.PowerOff, true, false},
		{"state changed, no instance", node.PowerOff, node.PowerOn, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, force(conductor()))
			n := f.addNode(func(n *node.Node) {
				powerFailure(n)
				n.PowerState = tt.recorded
				if !tt.instance {
					n.InstanceUUID = ""
				}
			})
			f.bmcs.on(n.UUID, reading{state: tt.read})
			if tt.nova {
				f.expectNova(n.InstanceUUID, tt.read)
			}
			res := f.recoverPass()
			if res != (activities.RecoveryResult{Checked: 1, Recovered: 1}) {
				t.Fatalf("result = %+v", res)
			}
			got := f.get(n.UUID)
			if got.Maintenance || got.MaintenanceReason != "" || got.Fault != "" || got.PowerState != tt.read {
				t.Fatalf("node = maintenance %v, reason %q, fault %q, power %q", got.Maintenance, got.MaintenanceReason, got.Fault, got.PowerState)
			}
			// Ironic's _power_failure_recovery keeps last_error and its in-memory counter.
			if got.LastError != n.LastError || got.SyncFailures != n.SyncFailures || got.TargetPowerState != "" {
				t.Fatalf("node = last_error %q, failures %d, target %q", got.LastError, got.SyncFailures, got.TargetPowerState)
			}
			if len(f.bmcs.sets) != 0 {
				t.Errorf("power set: %v", f.bmcs.sets)
			}
			if !tt.nova {
				f.noNova()
			}
		})
	}
}

func TestRecoveryFailedReadChangesNothing(t *testing.T) {
	for name, edit := range map[string]func(f *fixture, uuid string){
		"read error":   func(f *fixture, uuid string) { f.bmcs.on(uuid, fails(errUnreachable)) },
		"error state":  func(f *fixture, uuid string) { f.bmcs.on(uuid, driverError()) },
		"invalid info": func(f *fixture, uuid string) { f.bmcs.forErr[uuid] = errBadDriverInfo },
	} {
		t.Run(name, func(t *testing.T) {
			f := newFixture(t, force(conductor()))
			n := f.addNode(powerFailure)
			edit(f, n.UUID)
			res := f.recoverPass()
			if res != (activities.RecoveryResult{Checked: 1, StillFailing: 1}) {
				t.Fatalf("result = %+v", res)
			}
			if got := f.get(n.UUID); got.Version != n.Version || !got.Maintenance || got.Fault != node.FaultPowerFailure {
				t.Fatalf("node changed: maintenance %v, fault %q", got.Maintenance, got.Fault)
			}
			f.noNova()
			// The next pass tries again, and succeeds once the BMC answers.
			f.bmcs.script[n.UUID], f.bmcs.forErr[n.UUID] = []reading{on()}, nil
			if res := f.recoverPass(); res.Recovered != 1 {
				t.Fatalf("second pass = %+v", res)
			}
		})
	}
}

func TestRecoveryLeavesANodeThatChangedDuringTheRead(t *testing.T) {
	for name, change := range map[string]func(f *fixture, uuid string){
		"operator cleared maintenance": func(f *fixture, uuid string) {
			f.modify(uuid, func(n *node.Node) { n.Maintenance, n.MaintenanceReason, n.Fault = false, "", "" })
		},
		"operator took over the maintenance": func(f *fixture, uuid string) {
			f.modify(uuid, func(n *node.Node) { n.MaintenanceReason, n.Fault = "replacing PSU", "" })
		},
		"power change started": func(f *fixture, uuid string) {
			f.modify(uuid, func(n *node.Node) { n.TargetPowerState = node.PowerOff })
		},
	} {
		t.Run(name, func(t *testing.T) {
			f := newFixture(t, force(conductor()))
			n := f.addNode(powerFailure)
			f.bmcs.on(n.UUID, reading{state: node.PowerOff, before: func() { change(f, n.UUID) }})
			if res := f.recoverPass(); res.Recovered != 0 {
				t.Fatalf("result = %+v", res)
			}
			got := f.get(n.UUID)
			if got.PowerState != node.PowerOn {
				t.Fatalf("recovery wrote power_state %q on a node no longer in power failure", got.PowerState)
			}
			f.noNova()
		})
	}
}

func TestRecoveryNodeDeletedDuringThePassIsSkipped(t *testing.T) {
	f := newFixture(t, force(conductor()))
	gone := f.addNode(powerFailure)
	next := f.addNode(powerFailure)
	f.bmcs.on(gone.UUID, reading{state: node.PowerOn, before: func() {
		if err := f.store.Delete(context.Background(), gone.UUID); err != nil {
			t.Error(err)
		}
	}})
	env := newActivityEnv(f)
	if _, err := env.ExecuteActivity(f.recovery.RecoverPowerFailures); err != nil {
		t.Fatalf("pass failed: %v", err)
	}
	if f.get(next.UUID).Maintenance {
		t.Fatal("the node after the deleted one was not recovered")
	}
}
