package activities_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/metalpower/metalpower/activities"
	"github.com/metalpower/metalpower/internal/node"
	"github.com/metalpower/metalpower/internal/store"
)

// TestFailedChangeIsKeptInTheNodeHistory: a failed change sets last_error
// and, as Ironic's node_history_record(error=True), leaves an ERROR event
// in the node history, which is still there once the next in-sync pass
// has cleared last_error (the chaos test found failures otherwise gone
// without a trace).
func TestFailedChangeIsKeptInTheNodeHistory(t *testing.T) {
	f := newFixture(t, conductor())
	n := f.addNode(func(n *node.Node) { n.TargetPowerState = node.PowerOff })
	if _, err := f.power.FinishPowerChange(context.Background(), activities.FinishInput{NodeUUID: n.UUID, Target: node.PowerOff,
		Final: node.PowerOff, Failure: "the BMC did not answer in time", Via: "api"}); err != nil {
		t.Fatal(err)
	}
	want := "Failed to change power state to 'power off' by 'power off': the BMC did not answer in time"
	if got := f.get(n.UUID); got.LastError != want || got.TargetPowerState != "" || got.PowerState != node.PowerOn {
		t.Fatalf("node: last_error %q target %q power %q", got.LastError, got.TargetPowerState, got.PowerState)
	}
	f.bmcs.on(n.UUID, on())
	if page := f.readPage(activities.SyncPageInput{}); page.InSync != 1 || page.Reset != 1 {
		t.Fatalf("page = %+v", page)
	}
	if got := f.get(n.UUID); got.LastError != "" {
		t.Fatalf("last_error %q not cleared by the in-sync pass", got.LastError)
	}
	events, err := f.store.History(context.Background(), n.UUID, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(events) != 1 || events[0].Severity != "ERROR" || events[0].Type != store.EventPowerChange || events[0].Event != want || events[0].Via != "api" {
		t.Fatalf("history = %+v", events)
	}
}

// TestConflictCheckLooksAtTheLastChangeMade: a failed change in the
// history set nothing, so it does not hide the change before it.
func TestConflictCheckLooksAtTheLastChangeMade(t *testing.T) {
	c := conductor()
	c.PowerConflictWindow = 900
	f := newFixture(t, c)
	n := f.addNode(nil)
	ctx := context.Background()
	if _, err := f.power.FinishPowerChange(ctx, activities.FinishInput{NodeUUID: n.UUID, Target: node.PowerOff, Final: node.PowerOff, Via: "api"}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.power.FinishPowerChange(ctx, activities.FinishInput{NodeUUID: n.UUID, Target: node.PowerOn, Final: node.PowerOn, Failure: "BMC busy", Via: "api"}); err != nil {
		t.Fatal(err)
	}
	// Powered back on right after metalpower powered it off: a conflict.
	if _, err := newActivityEnv(f).ExecuteLocalActivity(f.power.PreparePowerChange,
		activities.PrepareInput{Node: n.UUID, Target: node.PowerOn, Mark: true, Via: "api"}); err != nil {
		t.Fatal(err)
	}
	conflicts, err := f.store.History(ctx, n.UUID, store.EventConflict, 0)
	if err != nil || len(conflicts) != 1 {
		t.Fatalf("conflicts = %+v, %v", conflicts, err)
	}
}

// TestVerificationStartedPastItsDeadlineReadsOnce: an attempt retried
// after the deadline (the worker died, the node store was away) reads the
// hardware before giving up, instead of failing a change that happened.
func TestVerificationStartedPastItsDeadlineReadsOnce(t *testing.T) {
	f := newFixture(t, conductor())
	n := f.addNode(nil)
	f.bmcs.on(n.UUID, off())
	v, err := newActivityEnv(f).ExecuteActivity(f.power.VerifyPowerState,
		activities.VerifyInput{NodeUUID: n.UUID, Want: node.PowerOff, Deadline: time.Now().Add(-time.Minute)})
	if err != nil {
		t.Fatalf("verification past the deadline: %v", err)
	}
	var got string
	if err := v.Get(&got); err != nil || got != node.PowerOff {
		t.Fatalf("state = %q, %v", got, err)
	}
	// Still not there past the deadline: a timeout after that one read.
	still := f.addNode(nil)
	f.bmcs.on(still.UUID, on())
	_, err = newActivityEnv(f).ExecuteActivity(f.power.VerifyPowerState,
		activities.VerifyInput{NodeUUID: still.UUID, Want: node.PowerOff, Deadline: time.Now().Add(-time.Minute)})
	if err == nil || !strings.Contains(err.Error(), "The node is still power on.") {
		t.Fatalf("err = %v, want a timeout naming the state read", err)
	}
	if reads := f.bmcs.readsOf(n.UUID) + f.bmcs.readsOf(still.UUID); reads != 2 {
		t.Fatalf("reads = %d, want one per attempt", reads)
	}
}

// TestSkippedChangeTellsNovaOfTheCorrectedState: the hardware was switched
// off by hand, then "power off" is asked: the change is skipped and the
// record corrected, and Nova, which still has the instance running, is
// told (the chaos test found Nova left with the old state). Nothing is
// sent when the record was right.
func TestSkippedChangeTellsNovaOfTheCorrectedState(t *testing.T) {
	f := newFixture(t, conductor())
	n := f.addNode(func(n *node.Node) { n.TargetPowerState = node.PowerOff })
	f.expectNova(n.InstanceUUID, node.PowerOff)
	skip := activities.FinishInput{NodeUUID: n.UUID, Target: node.PowerOff, Final: node.PowerOff, Skipped: true, HardwareState: node.PowerOff}
	v, err := newActivityEnv(f).ExecuteLocalActivity(f.power.FinishPowerChange, skip)
	if err != nil {
		t.Fatal(err)
	}
	var out activities.FinishResult
	if err := v.Get(&out); err != nil {
		t.Fatal(err)
	}
	if out.PowerState != node.PowerOff || out.Nova != activities.NovaQueued {
		t.Fatalf("result = %+v", out)
	}
	if got := f.get(n.UUID); got.PowerState != node.PowerOff || got.TargetPowerState != "" {
		t.Fatalf("node: power %q target %q", got.PowerState, got.TargetPowerState)
	}
	// Asked again: the record is right, Nova hears nothing more.
	if _, err := newActivityEnv(f).ExecuteLocalActivity(f.power.FinishPowerChange, skip); err != nil {
		t.Fatal(err)
	}
	if c := f.novaCalls(); c != 1 {
		t.Fatalf("Nova notified %d times, want once", c)
	}
}
