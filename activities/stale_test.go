package activities_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	workflowpb "go.temporal.io/api/workflow/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/mocks"

	"github.com/metalpower/metalpower/activities"
	"github.com/metalpower/metalpower/internal/dispatch"
	"github.com/metalpower/metalpower/internal/node"
	"github.com/metalpower/metalpower/internal/store"
)

// TestPassClearsATargetNoWorkflowHolds: a target_power_state left by a
// change that no longer runs (terminated by hand; a worker lost between a
// per-node sync's decision to force and the end of its workflow task,
// which the chaos test can hit) would keep the node out of every pass.
// The first page of a pass clears it, as Ironic's conductor does for
// operations a dead conductor left, and syncs the node; a target whose
// lock is held stays.
func TestPassClearsATargetNoWorkflowHolds(t *testing.T) {
	f := newFixture(t, conductor())
	f.syncPass.StaleTargetAge = -time.Second // every target counts as old
	stale := f.addNode(func(n *node.Node) { n.TargetPowerState = node.PowerOff })
	held := f.addNode(func(n *node.Node) { n.TargetPowerState = node.PowerOff })
	// As Ironic's _check_orphan_nodes: a node in maintenance is left
	// alone (its lock is not even asked about).
	inMaintenance := f.addNode(func(n *node.Node) { n.TargetPowerState, n.Maintenance = node.PowerOff, true })
	locks := &mocks.Client{}
	t.Cleanup(func() { locks.AssertExpectations(t) })
	locks.On("DescribeWorkflowExecution", mock.Anything, dispatch.LockPrefix+stale.UUID, "").
		Return(nil, serviceerror.NewNotFound("workflow not found")).Once()
	locks.On("DescribeWorkflowExecution", mock.Anything, dispatch.LockPrefix+held.UUID, "").
		Return(&workflowservice.DescribeWorkflowExecutionResponse{WorkflowExecutionInfo: &workflowpb.WorkflowExecutionInfo{
			Status: enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING}}, nil).Once()
	f.syncPass.Temporal = locks

	page := f.readPage(activities.SyncPageInput{})
	if page.ClearedTargets != 1 || page.Checked != 1 || page.InSync != 1 {
		t.Fatalf("page = %+v", page)
	}
	want := fmt.Sprintf(activities.StaleTargetAborted, dispatch.LockPrefix+stale.UUID)
	got := f.get(stale.UUID)
	if got.TargetPowerState != "" || got.PowerState != node.PowerOn {
		t.Fatalf("stale node: target %q power %q", got.TargetPowerState, got.PowerState)
	}
	events, err := f.store.History(context.Background(), stale.UUID, "", 0)
	if err != nil || len(events) != 1 || events[0].Severity != "ERROR" || events[0].Type != store.EventTakeover || events[0].Event != want {
		t.Fatalf("history = %+v, %v", events, err)
	}
	if got := f.get(held.UUID); got.TargetPowerState != node.PowerOff {
		t.Fatalf("a target whose lock is held was cleared: %+v", got)
	}
	if got := f.get(inMaintenance.UUID); got.TargetPowerState != node.PowerOff || got.LastError != "" {
		t.Fatalf("a node in maintenance was cleared: %+v", got)
	}
}

// TestPassLeavesAFreshTargetAlone: a starter marks the target a moment
// before it starts the workflow; within the stale age nothing is asked.
func TestPassLeavesAFreshTargetAlone(t *testing.T) {
	f := newFixture(t, conductor())
	n := f.addNode(func(n *node.Node) { n.TargetPowerState = node.PowerOn })
	locks := &mocks.Client{} // any call fails the test
	f.syncPass.Temporal = locks
	if page := f.readPage(activities.SyncPageInput{}); page.ClearedTargets != 0 || page.Checked != 0 {
		t.Fatalf("page = %+v", page)
	}
	if got := f.get(n.UUID); got.TargetPowerState != node.PowerOn {
		t.Fatalf("target = %q", got.TargetPowerState)
	}
}
