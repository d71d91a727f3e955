package activities_test

// Tests of the power sync activities against Ironic's unit tests
// (ironic/tests/unit/conductor/test_manager.py). Each Ironic test
// has a counterpart here, in workflows/sync_test.go, or a reason why not.
//
// ManagerDoSyncPowerStateTestCase (do_sync_power_state = SyncNode)
//   test_state_unchanged                                  TestSyncMatchResetsCounterAndClearsLastError
//   test_state_unchanged_for_fake_node                    TestSyncUnknownStateTakesHardwareStateAndNotifiesNova/"no state either side"
//   test_state_not_set                                    TestSyncUnknownStateTakesHardwareStateAndNotifiesNova
//   test_validate_fail                                    TestSyncInvalidDriverInfoWithUnknownStateChangesNothing
//   test_get_power_state_fail                             TestSyncReadFailureCountsUpThenEntersMaintenance
//   test_get_power_state_error                            TestSyncDriverErrorStateIsAFailure
//   test_state_changed_no_sync                            TestSyncNotForcingRecordsHardwareStateAndNotifiesNova
//   test_state_changed_no_sync_with_disable_power_off     TestSyncDisablePowerOffBlocksForcingBothWays
//   test_state_changed_no_sync_notify                     TestSyncNotForcingRecordsHardwareStateAndNotifiesNova (exactly one Nova update;
//                                                         no oslo notifications exist here)
//   test_state_changed_sync                               TestSyncForceReturnsPlanWithRecordedStateAndKeepsCounter
//   test_state_changed_sync_failed                        workflows: TestNodePowerSyncFailedForceDoesNotFailTheWorkflow;
//                                                         counter kept: TestSyncCounterTimeline/"force fails"
//   test_no_power_sync_support                            not applicable: both drivers (ipmi, redfish) support power sync;
//                                                         the not-forcing path is TestSyncNotForcingRecordsHardwareStateAndNotifiesNova
//   test_max_retries_exceeded, ..._exceeded2, ..._notify  TestSyncMaxRetriesExceededEntersMaintenanceWithIronicMessage
//   test_max_retries_exceeded_preserve_admin_intent       TestSyncMaxRetriesPreservesAdminMaintenance
//   test_retry_then_success                               TestSyncCounterTimeline/"force works"
//   test_power_state_sync_max_retries_gps_exception       TestSyncReadFailureCountsUpThenEntersMaintenance/"stored count at max"
//   test_maintenance_on_upgrade_lock                      TestSyncRecheckSkipsMaintenanceOrExcludedStateFoundUnderLock
//   test_wrong_provision_state_on_upgrade_lock            TestSyncRecheckSkipsMaintenanceOrExcludedStateFoundUnderLock
//   test_correct_power_state_on_upgrade_lock              not applicable: only the lock holder writes power_state (PowerChange,
//                                                         NodePowerSync; recovery only touches maintenance nodes)
//   test_vendor_detection                                 not applicable: no vendor/boot-mode caches
//   test_last_error_cleared_when_node_history_enabled     TestSyncMatchResetsCounterAndClearsLastError
//   test_last_error_not_cleared_when_node_history_disabled not applicable: no [conductor]node_history (always on)
//   test_clears_last_error_on_unknown_to_known_with_history TestSyncUnknownStateTakesHardwareStateAndNotifiesNova
//   test_does_not_clear_last_error_on_unknown_with_history_disabled not applicable: no node_history option
//   test_last_error_not_cleared_when_power_states_do_not_match TestSyncNotForcingRecordsHardwareStateAndNotifiesNova
//   test_health_monitoring_enabled_by_default / _disabled_by_config not applicable: no health monitoring
//
// ManagerSyncPowerStatesTestCase (_sync_power_states = ReadPowerStates + PowerSync)
//   test_node_not_mapped                      not applicable: no hash ring, every worker syncs every node; the
//                                             maintenance=False query filter is TestPassSelectsOnlyEligibleNodes
//   test_node_locked_on_acquire               workflows: TestPowerSyncLockedNodeCountsAsSkippedLocked (the node's lock
//                                             is its workflow ID; a running PowerChange makes the child start fail)
//   test_node_in_deploywait_on_acquire        TestPassSelectsOnlyEligibleNodes, TestSyncRecheckSkipsMaintenanceOrExcludedStateFoundUnderLock
//   test_node_in_enroll_on_acquire            TestPassSelectsOnlyEligibleNodes, TestSyncRecheck...
//   test_node_in_power_transition_on_acquire  TestPassSelectsOnlyEligibleNodes, TestSyncRecheck...
//   test_node_in_maintenance_on_acquire       TestPassSelectsOnlyEligibleNodes, TestSyncRecheck...
//   test_node_disappears_on_acquire           TestSyncDeletedNodeIsNodeNotFound; workflows: TestPowerSyncFailedChildCountsAsUnreadable
//   test_single_node                          TestPassResetsInSyncNodesInBulkAndReturnsOthersAsCandidates
//   test_single_node_with_firmware_update     not applicable: no firmware updates (redfish_fw_updates)
//   test_single_node_adopt_failed             TestPassSelectsOnlyEligibleNodes
//   test__sync_power_state_multiple_nodes     TestPassSelectsOnlyEligibleNodes
//
// ParallelPowerSyncTestCase
//   test__sync_power_states_9_nodes_8_workers TestPassConcurrencyIsBoundedByWorkers/9_nodes_8_workers
//   test__sync_power_states_6_nodes_8_workers TestPassConcurrencyIsBoundedByWorkers/6_nodes_8_workers
//   test__sync_power_states_1_nodes_8_workers TestPassConcurrencyIsBoundedByWorkers/1_nodes_8_workers
//   test__sync_power_states_9_nodes_1_worker  TestPassConcurrencyIsBoundedByWorkers/9_nodes_1_workers
//   test__sync_power_states_node_prioritization TestPassReadsMostFailuresFirst
//
// ManagerPowerRecoveryTestCase is mapped in recovery_test.go.

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/mock"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/temporal"

	"github.com/metalpower/metalpower/activities"
	"github.com/metalpower/metalpower/internal/bmc/ipmi"
	"github.com/metalpower/metalpower/internal/config"
	"github.com/metalpower/metalpower/internal/node"
)

func TestSyncMatchResetsCounterAndClearsLastError(t *testing.T) {
	for _, state := range []string{node.PowerOn, node.PowerOff} {
		t.Run(state, func(t *testing.T) {
			f := newFixture(t, force(conductor()))
			n := f.addNode(func(n *node.Node) { n.PowerState, n.SyncFailures, n.LastError = state, 2, "old failure" })
			f.bmcs.on(n.UUID, reading{state: state})
			d := f.mustSync(n.UUID)
			if d.Action != activities.SyncInSync || d.Count != 0 || d.Plan != nil {
				t.Fatalf("decision = %+v, want in sync, count 0", d)
			}
			got := f.get(n.UUID)
			if got.SyncFailures != 0 || got.LastError != "" || got.PowerState != state || got.TargetPowerState != "" {
				t.Fatalf("node = failures %d, last_error %q, power %q, target %q", got.SyncFailures, got.LastError, got.PowerState, got.TargetPowerState)
			}
			if r := f.bmcs.readsOf(n.UUID); r != 1 {
				t.Errorf("%d reads, want 1", r)
			}
			f.noNova()
		})
	}
}

func TestSyncUnknownStateTakesHardwareStateAndNotifiesNova(t *testing.T) {
	tests := []struct {
		name     string
		hw       string
		instance bool
		nova     bool
	}{
		{"power on with instance", node.PowerOn, true, true},
		{"power off with instance", node.PowerOff, true, true},
		{"no instance", node.PowerOn, false, false},
		// test_state_unchanged_for_fake_node: None and None match.
		{"no state either side", "", true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, force(conductor()))
			n := f.addNode(func(n *node.Node) {
				n.PowerState, n.SyncFailures, n.LastError = "", 1, "stale error"
				if !tt.instance {
					n.InstanceUUID = ""
				}
			})
			f.bmcs.on(n.UUID, reading{state: tt.hw})
			if tt.nova {
				f.expectNova(n.InstanceUUID, tt.hw)
			}
			d := f.mustSync(n.UUID)
			if d.Count != 0 || d.Plan != nil {
				t.Fatalf("decision = %+v, want count 0 and no forcing", d)
			}
			if tt.hw != "" && (d.Action != activities.SyncRecorded || d.PowerState != tt.hw) {
				t.Fatalf("decision = %+v, want %q recorded", d, tt.hw)
			}
			got := f.get(n.UUID)
			if got.PowerState != tt.hw || got.SyncFailures != 0 || got.LastError != "" || got.TargetPowerState != "" {
				t.Fatalf("node = power %q, failures %d, last_error %q, target %q", got.PowerState, got.SyncFailures, got.LastError, got.TargetPowerState)
			}
			if !tt.nova {
				f.noNova()
			}
		})
	}
}

func TestSyncDriverErrorStateIsAFailure(t *testing.T) {
	f := newFixture(t, maxRetries(force(conductor()), 1))
	n := f.addNode(nil)
	f.bmcs.on(n.UUID, driverError())
	d := f.mustSync(n.UUID)
	if d.Action != activities.SyncUnreadable || d.Count != 1 || !strings.Contains(d.Error, "Power driver returned ERROR state") {
		t.Fatalf("cycle 1: decision = %+v, want unreadable, count 1", d)
	}
	if got := f.get(n.UUID); got.PowerState != node.PowerOn || got.SyncFailures != 1 {
		t.Fatalf("cycle 1: power %q, failures %d", got.PowerState, got.SyncFailures)
	}
	// Over max, the 'error' read is what gets recorded, as do_sync_power_state does.
	d = f.mustSync(n.UUID)
	if d.Action != activities.SyncMaintenance || d.Count != 2 {
		t.Fatalf("cycle 2: decision = %+v, want entered maintenance", d)
	}
	got := f.get(n.UUID)
	want := maxRetriesMsg(n.UUID, node.PowerError, node.PowerOn) + " Error: Power driver returned ERROR state while trying to sync power state."
	if got.PowerState != node.PowerError || !got.Maintenance || got.Fault != node.FaultPowerFailure || got.LastError != want {
		t.Fatalf("node = power %q, maintenance %v, fault %q\nlast_error %q\nwant       %q", got.PowerState, got.Maintenance, got.Fault, got.LastError, want)
	}
	f.noNova() // 'error' is not a state Nova accepts
}

func TestSyncNotForcingRecordsHardwareStateAndNotifiesNova(t *testing.T) {
	f := newFixture(t, conductor())
	n := f.addNode(func(n *node.Node) { n.LastError = "kept on mismatch" })
	f.bmcs.on(n.UUID, off(), off())
	f.expectNova(n.InstanceUUID, node.PowerOff)
	d := f.mustSync(n.UUID)
	if d.Action != activities.SyncRecorded || d.Count != 1 || d.PowerState != node.PowerOff || d.Plan != nil || d.Nova != activities.NovaQueued {
		t.Fatalf("decision = %+v, want recorded power off, count 1, Nova queued", d)
	}
	got := f.get(n.UUID)
	if got.PowerState != node.PowerOff || got.SyncFailures != 1 || got.LastError != "kept on mismatch" || got.TargetPowerState != "" {
		t.Fatalf("node = power %q, failures %d, last_error %q, target %q", got.PowerState, got.SyncFailures, got.LastError, got.TargetPowerState)
	}
	if len(f.bmcs.sets) != 0 {
		t.Errorf("power set: %v", f.bmcs.sets)
	}
	// The next cycle matches: the counter goes back to 0, as in Ironic's test_state_unchanged.
	if d := f.mustSync(n.UUID); d.Action != activities.SyncInSync || d.Count != 0 {
		t.Fatalf("cycle 2: decision = %+v, want in sync", d)
	}
	if c := f.novaCalls(); c != 1 {
		t.Fatalf("Nova notified %d times, want once", c)
	}
}

func TestSyncDisablePowerOffBlocksForcingBothWays(t *testing.T) {
	for _, tt := range []struct{ db, hw string }{{node.PowerOn, node.PowerOff}, {node.PowerOff, node.PowerOn}} {
		t.Run(tt.db+" recorded, "+tt.hw+" read", func(t *testing.T) {
			f := newFixture(t, force(conductor()))
			n := f.addNode(func(n *node.Node) { n.PowerState, n.DisablePowerOff = tt.db, true })
			f.bmcs.on(n.UUID, reading{state: tt.hw})
			f.expectNova(n.InstanceUUID, tt.hw)
			d := f.mustSync(n.UUID)
			if d.Action != activities.SyncRecorded || d.Plan != nil || d.Count != 1 {
				t.Fatalf("decision = %+v, want recorded without forcing", d)
			}
			if got := f.get(n.UUID); got.PowerState != tt.hw || got.TargetPowerState != "" {
				t.Fatalf("node = power %q, target %q", got.PowerState, got.TargetPowerState)
			}
		})
	}
}

func TestSyncForceReturnsPlanWithRecordedStateAndKeepsCounter(t *testing.T) {
	for _, tt := range []struct {
		name, provision string
		keepsLastError  bool
	}{{"active", node.Active, false}, {"failure state keeps last_error", node.DeployFailed, true}} {
		t.Run(tt.name, func(t *testing.T) {
			c := force(conductor())
			c.PowerStateChangeTimeout = 90
			f := newFixture(t, c)
			n := f.addNode(func(n *node.Node) {
				n.Name, n.ProvisionState, n.SyncFailures, n.LastError = "r1-n07", tt.provision, 1, "previous"
			})
			f.bmcs.on(n.UUID, off())
			d := f.mustSync(n.UUID)
			if d.Action != activities.SyncForce || d.Count != 2 || d.PowerState != node.PowerOff || d.Plan == nil {
				t.Fatalf("decision = %+v, want force, count 2", d)
			}
			p := *d.Plan
			if p.NodeUUID != n.UUID || p.NodeName != "r1-n07" || p.Target != node.PowerOn || p.Final != node.PowerOn ||
				p.InstanceUUID != n.InstanceUUID || p.Timeout != 90 || p.Driver != ipmi.Name || p.BMC != "10.0.0.9:623" || p.CommandRetryTimeout != 60 {
				t.Fatalf("plan = %+v", p)
			}
			got := f.get(n.UUID)
			// Marked as node_power_action marks: target set, state untouched.
			if got.TargetPowerState != node.PowerOn || got.PowerState != node.PowerOn || got.SyncFailures != 2 || got.Maintenance {
				t.Fatalf("node = target %q, power %q, failures %d", got.TargetPowerState, got.PowerState, got.SyncFailures)
			}
			if keeps := got.LastError == "previous"; keeps != tt.keepsLastError {
				t.Fatalf("last_error = %q", got.LastError)
			}
			if len(f.bmcs.sets) != 0 {
				t.Errorf("SyncNode set power itself: %v", f.bmcs.sets)
			}
			f.noNova() // the change tells Nova, once it succeeded
		})
	}
}

// ineligible are the edits that take a node out of the sync: Ironic's
// _sync_power_states query and _sync_power_state_nodes_task's checks.
var ineligible = map[string]func(n *node.Node){
	"maintenance":  func(n *node.Node) { n.Maintenance = true },
	"deploy wait":  func(n *node.Node) { n.ProvisionState = node.DeployWait },
	"clean wait":   func(n *node.Node) { n.ProvisionState = node.CleanWait },
	"enroll":       func(n *node.Node) { n.ProvisionState = node.Enroll },
	"adopt failed": func(n *node.Node) { n.ProvisionState = node.AdoptFailed },
	"target set":   func(n *node.Node) { n.TargetPowerState = node.PowerOff },
}

func TestSyncRecheckSkipsMaintenanceOrExcludedStateFoundUnderLock(t *testing.T) {
	edits := ineligible
	for name, edit := range edits {
		for _, c := range []config.Conductor{conductor(), force(conductor())} {
			// Changed after the page read it, before NodePowerSync ran.
			t.Run(fmt.Sprintf("%s before the lock, force %v", name, c.ForcePowerStateDuringSync), func(t *testing.T) {
				f := newFixture(t, c)
				n := f.addNode(func(n *node.Node) { n.SyncFailures = 1 })
				f.modify(n.UUID, edit)
				before := f.get(n.UUID)
				f.bmcs.on(n.UUID, off())
				d := f.mustSync(n.UUID)
				if d.Action != activities.SyncSkipped || d.Plan != nil || d.Count != 1 {
					t.Fatalf("decision = %+v, want skipped, counter untouched", d)
				}
				if got := f.get(n.UUID); got.Version != before.Version {
					t.Fatalf("node written: %+v", got)
				}
				f.noNova()
			})
			// Ironic re-checks after the read, under the exclusive lock
			// (do_sync_power_state re-checks under the lock: test_maintenance_on_upgrade_lock,
			// test_wrong_provision_state_on_upgrade_lock). A target can
			// only be set by the lock holder, so it cannot appear here.
			if name == "target set" {
				continue
			}
			t.Run(fmt.Sprintf("%s during the read, force %v", name, c.ForcePowerStateDuringSync), func(t *testing.T) {
				f := newFixture(t, c)
				f.allowNova()
				n := f.addNode(nil)
				f.bmcs.on(n.UUID, reading{state: node.PowerOff, before: func() { f.modify(n.UUID, edit) }})
				d, err := f.syncNode(n.UUID)
				if err == nil && (d.Action == activities.SyncForce || d.Action == activities.SyncRecorded) {
					t.Errorf("decision = %+v, want no change", d)
				}
				if got := f.get(n.UUID); got.PowerState != node.PowerOn || got.TargetPowerState != "" {
					t.Errorf("node changed: power %q, target %q", got.PowerState, got.TargetPowerState)
				}
				f.noNova()
			})
		}
	}
}

func TestSyncDeletedNodeIsNodeNotFound(t *testing.T) {
	f := newFixture(t, force(conductor()))
	_, err := f.syncNode("0b8a1f0c-0000-4000-8000-000000000000")
	var appErr *temporal.ApplicationError
	if !errors.As(err, &appErr) || appErr.Type() != activities.NodeNotFoundType || !appErr.NonRetryable() {
		t.Fatalf("err = %v, want non-retryable %s", err, activities.NodeNotFoundType)
	}
}

// TestSyncCounterTimeline is Ironic's power_state_sync_count timeline: SyncNode once per cycle against
// the same store, the counter kept in the node between cycles, the
// workflow's power change stood in for by FinishPowerChange.
func TestSyncCounterTimeline(t *testing.T) {
	type cycle struct {
		read   reading
		action string
		count  int
		nova   string // state Nova is told of in this cycle, if any
		// change ends a forcing cycle: "" succeeds, else fails with it.
		change *string
	}
	ok, failed := "", "BMC did not answer"
	tests := []struct {
		name   string
		force  bool
		max    int
		cycles []cycle
		power  string // recorded at the end
		maint  bool
	}{
		{"BMC unreachable", true, 3, []cycle{
			{fails(errUnreachable), activities.SyncUnreadable, 1, "", nil},
			{fails(errUnreachable), activities.SyncUnreadable, 2, "", nil},
			{fails(errUnreachable), activities.SyncUnreadable, 3, "", nil},
			{fails(errUnreachable), activities.SyncMaintenance, 4, "", nil},
		}, "", true},
		{"force fails", true, 3, []cycle{
			{off(), activities.SyncForce, 1, "", &failed},
			{off(), activities.SyncForce, 2, "", &failed},
			{off(), activities.SyncForce, 3, "", &failed},
			{off(), activities.SyncMaintenance, 4, node.PowerOff, nil},
		}, node.PowerOff, true},
		{"force works", true, 3, []cycle{
			{off(), activities.SyncForce, 1, "", &ok},
			{on(), activities.SyncInSync, 0, "", nil},
		}, node.PowerOn, false},
		{"not forcing, hardware changed once", false, 3, []cycle{
			{off(), activities.SyncRecorded, 1, node.PowerOff, nil},
			{off(), activities.SyncInSync, 0, "", nil},
		}, node.PowerOff, false},
		{"read failures and mismatches share one counter", false, 2, []cycle{
			{fails(errUnreachable), activities.SyncUnreadable, 1, "", nil},
			{off(), activities.SyncRecorded, 2, node.PowerOff, nil},
			{on(), activities.SyncMaintenance, 3, node.PowerOn, nil},
		}, node.PowerOn, true},
		{"a match in between resets", true, 1, []cycle{
			{fails(errUnreachable), activities.SyncUnreadable, 1, "", nil},
			{on(), activities.SyncInSync, 0, "", nil},
			{fails(errUnreachable), activities.SyncUnreadable, 1, "", nil},
		}, node.PowerOn, false},
		{"max 0: first failure", true, 0, []cycle{
			{fails(errUnreachable), activities.SyncMaintenance, 1, "", nil},
		}, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := maxRetries(conductor(), tt.max)
			c.ForcePowerStateDuringSync = tt.force
			f := newFixture(t, c)
			n := f.addNode(nil)
			notified := 0
			for i, cy := range tt.cycles {
				if cy.nova != "" {
					f.expectNova(n.InstanceUUID, cy.nova)
					notified++
				}
				f.bmcs.script[n.UUID] = []reading{cy.read}
				d := f.mustSync(n.UUID)
				if d.Action != cy.action || d.Count != cy.count {
					t.Fatalf("cycle %d: decision = %+v, want %s, count %d", i+1, d, cy.action, cy.count)
				}
				if got := f.get(n.UUID); got.SyncFailures != cy.count {
					t.Fatalf("cycle %d: stored counter %d, want %d", i+1, got.SyncFailures, cy.count)
				}
				if c := f.novaCalls(); c != notified {
					t.Fatalf("cycle %d: Nova notified %d times, want %d", i+1, c, notified)
				}
				if cy.change != nil {
					f.finishChange(d.Plan, *cy.change)
				}
			}
			got := f.get(n.UUID)
			if got.PowerState != tt.power || got.Maintenance != tt.maint || (got.Fault == node.FaultPowerFailure) != tt.maint {
				t.Fatalf("end: power %q, maintenance %v, fault %q", got.PowerState, got.Maintenance, got.Fault)
			}
		})
	}
}

// A recorded 'error' (left by max retries under admin maintenance)
// on a node back in service: forcing it cannot work, and Ironic counts
// that like any failed force (node_power_action raises), until maintenance.
func TestSyncForcingRecordedErrorStateCountsAFailure(t *testing.T) {
	f := newFixture(t, maxRetries(force(conductor()), 1))
	f.allowNova()
	n := f.addNode(func(n *node.Node) { n.PowerState = node.PowerError })
	f.bmcs.on(n.UUID, on())
	for cycle := 1; cycle <= 2; cycle++ {
		d, err := f.syncNode(n.UUID)
		if err != nil {
			t.Fatalf("cycle %d: %v", cycle, err)
		}
		if d.Count != cycle {
			t.Fatalf("cycle %d: decision = %+v", cycle, d)
		}
		if d.Plan != nil {
			f.finishChange(d.Plan, "invalid power state")
		}
	}
	if got := f.get(n.UUID); !got.Maintenance || got.PowerState != node.PowerOn || got.Fault != node.FaultPowerFailure {
		t.Fatalf("node = maintenance %v, power %q, fault %q", got.Maintenance, got.PowerState, got.Fault)
	}
}

func TestPassSelectsOnlyEligibleNodes(t *testing.T) {
	f := newFixture(t, conductor())
	skipped := ineligible
	for _, edit := range skipped {
		f.addNode(edit)
	}
	eligible := map[string]bool{}
	for _, edit := range []func(n *node.Node){
		nil,
		func(n *node.Node) { n.ProvisionState, n.InstanceUUID = node.Manageable, "" },
		func(n *node.Node) { n.ProvisionState = node.DeployFailed }, // a failure state is synced
		func(n *node.Node) { n.ProvisionState = node.Cleaning },
	} {
		eligible[f.addNode(edit).UUID] = true
	}
	page := f.readPage(activities.SyncPageInput{})
	reads := f.bmcs.readLog()
	if page.Checked != len(eligible) || page.InSync != len(eligible) || !page.Done || len(reads) != len(eligible) {
		t.Fatalf("page = %+v, reads %v; want %d eligible nodes read once", page, reads, len(eligible))
	}
	for _, u := range reads {
		if !eligible[u] {
			t.Errorf("read ineligible node %s", u)
		}
	}
}

func TestPassReadsMostFailuresFirst(t *testing.T) {
	c := conductor()
	c.SyncPowerStateWorkers = 1
	f := newFixture(t, c)
	// Ironic's test: counts {0: 1, 1: 0, 2: 2} are read in the order 2, 0, 1.
	n0 := f.addNode(func(n *node.Node) { n.SyncFailures = 1 })
	n1 := f.addNode(nil)
	n2 := f.addNode(func(n *node.Node) { n.SyncFailures = 2 })
	f.readPage(activities.SyncPageInput{})
	want := []string{n2.UUID, n0.UUID, n1.UUID}
	if got := f.bmcs.readLog(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("read order %v, want %v", got, want)
	}
}

func TestPassConcurrencyIsBoundedByWorkers(t *testing.T) {
	for _, tt := range []struct{ nodes, workers int }{{9, 8}, {6, 8}, {1, 8}, {9, 1}} {
		t.Run(fmt.Sprintf("%d nodes %d workers", tt.nodes, tt.workers), func(t *testing.T) {
			c := conductor()
			c.SyncPowerStateWorkers = tt.workers
			f := newFixture(t, c)
			want := min(tt.nodes, tt.workers)
			f.bmcs.gate = want
			for i := 0; i < tt.nodes; i++ {
				f.addNode(nil)
			}
			page := f.readPage(activities.SyncPageInput{})
			if page.Checked != tt.nodes || len(f.bmcs.readLog()) != tt.nodes {
				t.Fatalf("checked %d, read %d, want %d", page.Checked, len(f.bmcs.readLog()), tt.nodes)
			}
			if f.bmcs.maxInf != want {
				t.Fatalf("%d reads in flight at most, want %d", f.bmcs.maxInf, want)
			}
			if page.Window < 1 || page.Window > 100 {
				t.Fatalf("window %d", page.Window)
			}
		})
	}
}

func TestPassResetsInSyncNodesInBulkAndReturnsOthersAsCandidates(t *testing.T) {
	f := newFixture(t, force(conductor()))
	recovering := f.addNode(func(n *node.Node) { n.SyncFailures, n.LastError = 2, "old" })
	clean := f.addNode(nil)
	drifted := f.addNode(func(n *node.Node) { n.SyncFailures = 1 })
	unreadable := f.addNode(nil)
	driverErr := f.addNode(nil)
	unknown := f.addNode(func(n *node.Node) { n.PowerState = "" })
	f.bmcs.on(drifted.UUID, off()).on(unreadable.UUID, fails(errUnreachable)).on(driverErr.UUID, driverError())
	page := f.readPage(activities.SyncPageInput{})
	if page.Checked != 6 || page.InSync != 2 || page.Reset != 1 || !page.Done || page.After == nil || page.PassStart.IsZero() {
		t.Fatalf("page = %+v", page)
	}
	reasons := map[string]string{}
	for _, c := range page.Candidates {
		reasons[c.UUID] = c.Reason
	}
	want := map[string]string{drifted.UUID: "mismatch", unreadable.UUID: "unreadable", driverErr.UUID: "unreadable", unknown.UUID: "unknown"}
	if fmt.Sprint(reasons) != fmt.Sprint(want) {
		t.Fatalf("candidates %v, want %v", reasons, want)
	}
	if got := f.get(recovering.UUID); got.SyncFailures != 0 || got.LastError != "" {
		t.Fatalf("in-sync node not reset: failures %d, last_error %q", got.SyncFailures, got.LastError)
	}
	if got := f.get(clean.UUID); got.Version != clean.Version {
		t.Errorf("clean in-sync node written")
	}
	// Candidates are only decided on under their lock (SyncNode).
	for _, n := range []*node.Node{drifted, unreadable, driverErr, unknown} {
		if got := f.get(n.UUID); got.Version != n.Version {
			t.Errorf("candidate %s written by the page read", n.UUID)
		}
	}
	if len(f.bmcs.sets) != 0 {
		t.Errorf("power set: %v", f.bmcs.sets)
	}
	f.noNova()
}

// Ironic's validate failure changes nothing (test_validate_fail): the page
// read neither makes the node a candidate nor clears its last_error.
func TestPassInvalidDriverInfoWithUnknownStateKeepsLastError(t *testing.T) {
	f := newFixture(t, conductor())
	n := f.addNode(func(n *node.Node) { n.PowerState, n.LastError = "", "Failed to verify node power access" })
	f.bmcs.forErr[n.UUID] = errBadDriverInfo
	page := f.readPage(activities.SyncPageInput{})
	if len(page.Candidates) != 0 || page.Reset != 0 {
		t.Fatalf("page = %+v, want no candidate and no reset", page)
	}
	if got := f.get(n.UUID); got.Version != n.Version {
		t.Fatalf("node written: last_error %q, failures %d", got.LastError, got.SyncFailures)
	}
}

func TestPassPagesWithoutSkippingOrRepeating(t *testing.T) {
	f := newFixture(t, force(conductor()))
	all := map[string]bool{}
	for i := 0; i < 23; i++ {
		n := f.addNode(func(n *node.Node) {
			n.SyncFailures = i % 4
			if i%5 == 0 {
				n.LastError = "old"
			}
		})
		all[n.UUID] = true
		switch i % 3 {
		case 1: // drifted: forced back, which rewrites the node mid-pass
			f.bmcs.on(n.UUID, off(), on())
		case 2: // unreadable: its counter grows mid-pass
			f.bmcs.on(n.UUID, fails(errUnreachable))
		}
	}
	pages, last := f.pass(5)
	seen := map[string]int{}
	for _, p := range pages {
		if len(p) > 5 {
			t.Errorf("page read %d nodes, limit 5", len(p))
		}
		for _, u := range p {
			seen[u]++
		}
	}
	for u := range all {
		if seen[u] != 1 {
			t.Errorf("node %s read %d times by page reads, want once", u, seen[u])
		}
	}
	if len(pages) < 5 || !last.Done {
		t.Fatalf("%d pages, last %+v", len(pages), last)
	}
	// A second pass starts over and reads every node still eligible (an
	// unreadable node at 3 failures went into maintenance).
	eligible := 0
	for u := range all {
		if !f.get(u).Maintenance {
			eligible++
		}
	}
	pages, _ = f.pass(5)
	n := 0
	for _, p := range pages {
		n += len(p)
	}
	if n != eligible || eligible == len(all) {
		t.Fatalf("second pass read %d nodes, want %d of %d", n, eligible, len(all))
	}
}

// Beyond Ironic: the sync queues Nova's notification before it records the
// state. When Temporal cannot take it, nothing is written, so the retried
// decision records the state and tells Nova; written first, the retry
// would find the node in sync and Nova would never hear of the change.
func TestSyncRecordsNothingUntilNovaIsQueued(t *testing.T) {
	f := newFixture(t, conductor())
	n := f.addNode(nil)
	f.bmcs.on(n.UUID, off(), off(), off(), off())
	f.nova.On("SignalWithStartWorkflow", mock.Anything, activities.NovaNotifyID(n.InstanceUUID), mock.Anything, mock.Anything,
		mock.Anything, mock.Anything, mock.Anything).Return(nil, serviceerror.NewUnavailable("temporal is down")).Once()
	if _, err := f.syncNode(n.UUID); err == nil || !strings.Contains(err.Error(), "queue Nova notification") {
		t.Fatalf("sync while the notifier is unreachable: %v, want the queueing error", err)
	}
	if got := f.get(n.UUID); got.PowerState != node.PowerOn || got.SyncFailures != 0 {
		t.Fatalf("node after the failed attempt = power %q, failures %d: want it untouched", got.PowerState, got.SyncFailures)
	}
	f.expectNova(n.InstanceUUID, node.PowerOff)
	if d := f.mustSync(n.UUID); d.Action != activities.SyncRecorded || d.Nova != activities.NovaQueued {
		t.Fatalf("retried decision = %+v, want recorded with Nova queued", d)
	}
	if got := f.get(n.UUID); got.PowerState != node.PowerOff {
		t.Fatalf("node power state = %q, want power off", got.PowerState)
	}
}

// TestPageReadsChunksAndBoundsCandidates: a page reads the store a chunk
// at a time into one pool of readers; a fleet in sync is read in one page
// (which knows it is the last), while a drifted one ends pages early so
// that no page returns more candidates than its bound, and the pass still
// reads every node once.
func TestPageReadsChunksAndBoundsCandidates(t *testing.T) {
	defer activities.SetPageBounds(4, 10)()
	c := force(conductor())
	// Nodes being read count as possible candidates: two readers keep the
	// page's stopping points the same on every run.
	c.SyncPowerStateWorkers = 2

	inSync := newFixture(t, c)
	for i := 0; i < 20; i++ {
		inSync.addNode(nil)
	}
	page := inSync.readPage(activities.SyncPageInput{Limit: 20})
	if page.Checked != 20 || page.InSync != 20 || !page.Done {
		t.Fatalf("a fleet in sync: checked %d, in sync %d, done %v; want 20, 20, true in one page", page.Checked, page.InSync, page.Done)
	}

	f := newFixture(t, c)
	var drifted []string
	for i := 0; i < 20; i++ {
		n := f.addNode(nil)
		f.bmcs.on(n.UUID, off(), on())
		drifted = append(drifted, n.UUID)
	}
	pages, last := f.pass(40)
	seen := map[string]int{}
	for i, p := range pages {
		if len(p) > 10 {
			t.Errorf("page %d read %d drifted nodes, more than its 10 candidates", i, len(p))
		}
		for _, u := range p {
			seen[u]++
		}
	}
	for _, u := range drifted {
		if seen[u] != 1 {
			t.Errorf("drifted node %s read %d times by page reads, want once", u, seen[u])
		}
	}
	if len(pages) < 3 || !last.Done {
		t.Fatalf("%d pages for 20 drifted nodes with at most 10 candidates a page; last %+v", len(pages), last)
	}
}
