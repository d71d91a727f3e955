package activities_test

// The power sync's failure paths: unreadable BMCs, invalid driver_info,
// the way to maintenance (the Ironic test map is in sync_test.go).

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/metalpower/metalpower/activities"
	"github.com/metalpower/metalpower/internal/bmc"
	"github.com/metalpower/metalpower/internal/node"
	"github.com/metalpower/metalpower/internal/store"
)

func TestSyncInvalidDriverInfoWithUnknownStateChangesNothing(t *testing.T) {
	f := newFixture(t, force(conductor()))
	n := f.addNode(func(n *node.Node) { n.PowerState, n.LastError = "", "keep me" })
	f.bmcs.forErr[n.UUID] = errBadDriverInfo
	d := f.mustSync(n.UUID)
	if d.Action != activities.SyncSkipped || d.Count != 0 {
		t.Fatalf("decision = %+v, want skipped with count 0", d)
	}
	got := f.get(n.UUID)
	if got.PowerState != "" || got.LastError != "keep me" || got.SyncFailures != 0 || got.Maintenance {
		t.Fatalf("node = power %q, last_error %q, failures %d, maintenance %v", got.PowerState, got.LastError, got.SyncFailures, got.Maintenance)
	}
	if len(f.bmcs.readLog()) != 0 {
		t.Errorf("power read %d times, want never", len(f.bmcs.readLog()))
	}
	f.noNova()

	// With a known state, unusable driver_info is a failed read like any other.
	k := f.addNode(nil)
	f.bmcs.forErr[k.UUID] = errBadDriverInfo
	if d := f.mustSync(k.UUID); d.Action != activities.SyncUnreadable || d.Count != 1 {
		t.Fatalf("known state: decision = %+v, want unreadable, count 1", d)
	}
}

// TestSyncBMCSideErrorsCountWithNoRecordedState: only a driver_info that
// fails validation is skipped uncounted (Ironic's power.validate before
// do_sync_power_state's read); a BMC that answers 404 for the system,
// fails TLS or whose host is unknown is a failed read like any other, so
// such a node reaches maintenance.
func TestSyncBMCSideErrorsCountWithNoRecordedState(t *testing.T) {
	for name, err := range map[string]error{
		"404 for the system": &bmc.Error{Kind: bmc.Config, Op: "get power state", BMC: "b", Err: errors.New("404 Not Found")},
		"TLS failure":        &bmc.Error{Kind: bmc.Config, Op: "get power state", BMC: "b", Err: errors.New("x509: certificate signed by unknown authority")},
		"unknown host":       &bmc.Error{Kind: bmc.Config, Op: "get power state", BMC: "b", Err: errors.New("lookup bmc.invalid: no such host")},
	} {
		t.Run(name, func(t *testing.T) {
			f := newFixture(t, maxRetries(force(conductor()), 1))
			n := f.addNode(func(n *node.Node) { n.PowerState = "" })
			f.bmcs.on(n.UUID, fails(err))
			if d := f.mustSync(n.UUID); d.Action != activities.SyncUnreadable || d.Count != 1 {
				t.Fatalf("first pass: decision = %+v, want unreadable, count 1", d)
			}
			if d := f.mustSync(n.UUID); d.Action != activities.SyncMaintenance || d.Count != 2 {
				t.Fatalf("second pass: decision = %+v, want entered maintenance", d)
			}
			if got := f.get(n.UUID); !got.Maintenance || got.Fault != node.FaultPowerFailure {
				t.Fatalf("node = maintenance %v, fault %q", got.Maintenance, got.Fault)
			}
		})
	}
}

// TestSyncPageReadFailureIsThePassOneFailure: the pass's page read of a
// node failed; the per-node sync counts that failure under the lock
// without reading the BMC again (Ironic reads a node once a pass), so a
// BMC that answers the second time does not hide the failure.
func TestSyncPageReadFailureIsThePassOneFailure(t *testing.T) {
	f := newFixture(t, force(conductor()))
	n := f.addNode(nil)
	f.bmcs.on(n.UUID, fails(errUnreachable))
	page := f.readPage(activities.SyncPageInput{})
	if len(page.Candidates) != 1 || page.Candidates[0].ReadError == "" {
		t.Fatalf("page = %+v, want the node as a candidate with its read error", page)
	}
	c := page.Candidates[0]
	reads := len(f.bmcs.readLog())
	f.bmcs.on(n.UUID, reading{state: node.PowerOn}) // would answer now
	v, err := newActivityEnv(f).ExecuteLocalActivity(f.nodeSync.SyncFailedRead,
		activities.FailedRead{NodeUUID: c.UUID, Error: c.ReadError, DriverError: c.DriverError})
	if err != nil {
		t.Fatal(err)
	}
	var d activities.NodeSyncDecision
	if err := v.Get(&d); err != nil {
		t.Fatal(err)
	}
	if d.Action != activities.SyncUnreadable || d.Count != 1 || !strings.Contains(d.Error, "SpongeBob") {
		t.Fatalf("decision = %+v, want unreadable, count 1, with the page's error", d)
	}
	if len(f.bmcs.readLog()) != reads {
		t.Fatalf("the BMC was read again under the lock")
	}
	if got := f.get(n.UUID); got.SyncFailures != 1 {
		t.Fatalf("sync_failures = %d", got.SyncFailures)
	}
}

func TestSyncReadFailureCountsUpThenEntersMaintenance(t *testing.T) {
	t.Run("below max", func(t *testing.T) {
		f := newFixture(t, force(conductor()))
		n := f.addNode(func(n *node.Node) { n.LastError = "earlier" })
		f.bmcs.on(n.UUID, fails(errUnreachable))
		d := f.mustSync(n.UUID)
		if d.Action != activities.SyncUnreadable || d.Count != 1 || !strings.Contains(d.Error, "SpongeBob") || d.Plan != nil {
			t.Fatalf("decision = %+v, want unreadable, count 1", d)
		}
		got := f.get(n.UUID)
		if got.SyncFailures != 1 || got.PowerState != node.PowerOn || got.LastError != "earlier" || got.Maintenance || got.TargetPowerState != "" {
			t.Fatalf("node = %+v: only the counter may change", got)
		}
		f.noNova()
	})
	t.Run("stored count at max", func(t *testing.T) {
		f := newFixture(t, maxRetries(force(conductor()), 2))
		n := f.addNode(func(n *node.Node) { n.SyncFailures = 2 })
		f.bmcs.on(n.UUID, fails(errUnreachable))
		d := f.mustSync(n.UUID)
		if d.Action != activities.SyncMaintenance || d.Count != 3 || d.PowerState != "" {
			t.Fatalf("decision = %+v, want entered maintenance, count 3", d)
		}
		got := f.get(n.UUID)
		want := maxRetriesMsg(n.UUID, "", node.PowerOn) + " Error: " + errUnreachable.Error()
		if !got.Maintenance || got.Fault != node.FaultPowerFailure || got.MaintenanceReason != want || got.LastError != want || got.PowerState != "" {
			t.Fatalf("node = maintenance %v, fault %q, power %q\nreason     %q\nlast_error %q\nwant       %q", got.Maintenance, got.Fault, got.PowerState, got.MaintenanceReason, got.LastError, want)
		}
		if len(f.bmcs.sets) != 0 {
			t.Errorf("power set: %v", f.bmcs.sets)
		}
		// Nova is told None, which Ironic drops: nothing is queued.
		f.noNova()
	})
}

func TestSyncMaxRetriesExceededEntersMaintenanceWithIronicMessage(t *testing.T) {
	for _, max := range []int{0, 1, 2} {
		t.Run(fmt.Sprintf("max %d", max), func(t *testing.T) {
			f := newFixture(t, maxRetries(force(conductor()), max))
			n := f.addNode(nil)
			f.bmcs.on(n.UUID, off())
			for cycle := 1; cycle <= max; cycle++ {
				d := f.mustSync(n.UUID)
				if d.Action != activities.SyncForce || d.Count != cycle {
					t.Fatalf("cycle %d: decision = %+v, want force", cycle, d)
				}
				f.finishChange(d.Plan, "the node flipped back")
			}
			f.expectNova(n.InstanceUUID, node.PowerOff)
			d := f.mustSync(n.UUID)
			if d.Action != activities.SyncMaintenance || d.Count != max+1 || d.Plan != nil || d.Nova != activities.NovaQueued {
				t.Fatalf("decision = %+v, want entered maintenance, count %d", d, max+1)
			}
			got := f.get(n.UUID)
			msg := maxRetriesMsg(n.UUID, node.PowerOff, node.PowerOn)
			if got.PowerState != node.PowerOff || !got.Maintenance || got.MaintenanceReason != msg || got.Fault != node.FaultPowerFailure ||
				got.LastError != msg || got.SyncFailures != max+1 || got.TargetPowerState != "" {
				t.Fatalf("node = power %q, maintenance %v, fault %q, failures %d\nreason %q\nwant   %q", got.PowerState, got.Maintenance, got.Fault, got.SyncFailures, got.MaintenanceReason, msg)
			}
			// Ironic's node_history_record(event_type=MONITORING, error=True),
			// still there after the next power change clears last_error.
			f.modify(n.UUID, func(n *node.Node) { n.UnsetMaintenance(); n.MarkTarget(node.PowerOn) })
			events, err := f.store.History(context.Background(), n.UUID, store.EventMonitoring, 0)
			if err != nil {
				t.Fatal(err)
			}
			if len(events) != 1 || events[0].Severity != "ERROR" || events[0].Event != msg || events[0].Via != "sync" {
				t.Fatalf("monitoring events = %+v, want one ERROR with %q", events, msg)
			}
			if got := f.get(n.UUID); got.LastError != "" {
				t.Fatalf("last_error after the power change = %q", got.LastError)
			}
		})
	}
}

func TestSyncMaxRetriesPreservesAdminMaintenance(t *testing.T) {
	f := newFixture(t, maxRetries(force(conductor()), 1))
	n := f.addNode(func(n *node.Node) { n.SyncFailures = 1 })
	// The operator puts the node in maintenance while its BMC is being
	// read; the read then fails for the second time.
	f.bmcs.on(n.UUID, reading{err: errUnreachable, before: func() {
		f.modify(n.UUID, func(n *node.Node) { n.Maintenance, n.MaintenanceReason = true, "rack move" })
	}})
	d := f.mustSync(n.UUID)
	if d.Action != activities.SyncMaintenance || d.Count != 2 {
		t.Fatalf("decision = %+v", d)
	}
	got := f.get(n.UUID)
	if !got.Maintenance || got.MaintenanceReason != "rack move" || got.Fault != "" {
		t.Fatalf("admin maintenance overridden: reason %q, fault %q", got.MaintenanceReason, got.Fault)
	}
	if got.PowerState != "" || !strings.HasPrefix(got.LastError, maxRetriesMsg(n.UUID, "", node.PowerOn)) || got.SyncFailures != 2 {
		t.Fatalf("node = power %q, failures %d, last_error %q", got.PowerState, got.SyncFailures, got.LastError)
	}
	f.noNova() // None is never sent
}
