package workflows

// Unit tests of the sync workflows with mocked activities. Ironic
// counterparts (ManagerDoSyncPowerStateTestCase, ManagerSyncPowerStatesTestCase and
// ParallelPowerSyncTestCase are mapped in activities/sync_test.go):
//
//   test_node_locked_on_acquire           TestPowerSyncLockedNodeCountsAsSkippedLocked: the lock is the workflow
//                                         ID node-power/<uuid>; a running PowerChange makes the child's start fail
//   test_node_disappears_on_acquire       TestPowerSyncFailedChildCountsAsUnreadable (the pass goes on)
//   test_state_changed_sync               TestNodePowerSyncForceRunsThePowerChangeSteps
//   test_state_changed_sync_failed        TestNodePowerSyncFailedForceDoesNotFailTheWorkflow
//   test__sync_power_states_*             the read concurrency is in ReadPowerStates (activities); the bound on
//                                         per-node syncs is TestPowerSyncWindowBoundsChildrenInFlight

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

	"github.com/metalpower/metalpower/activities"
	"github.com/metalpower/metalpower/internal/dispatch"
	"github.com/metalpower/metalpower/internal/node"
)

func newSyncEnv(t *testing.T, workflowID string) *testsuite.TestWorkflowEnvironment {
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	env.RegisterWorkflowWithOptions(PowerSync, workflow.RegisterOptions{Name: PowerSyncWorkflow})
	env.RegisterWorkflowWithOptions(NodePowerSync, workflow.RegisterOptions{Name: activities.NodePowerSyncWorkflow})
	env.RegisterWorkflowWithOptions(PowerFailureRecovery, workflow.RegisterOptions{Name: PowerFailureRecoveryWorkflow})
	registerActivities(env)
	env.SetStartWorkflowOptions(client.StartWorkflowOptions{ID: workflowID})
	t.Cleanup(func() { env.AssertExpectations(t) })
	return env
}

// newChildrenSyncEnv is newSyncEnv for passes that run their per-node
// syncs as children, as passes started before nodeSyncsStep do (and
// replay so).
func newChildrenSyncEnv(t *testing.T, workflowID string) *testsuite.TestWorkflowEnvironment {
	env := newSyncEnv(t, workflowID)
	env.OnGetVersion(nodeSyncsStep, workflow.DefaultVersion, 1).Return(workflow.DefaultVersion).Maybe()
	return env
}

func candidates(reason string, uuids ...string) []activities.SyncCandidate {
	var cs []activities.SyncCandidate
	for _, u := range uuids {
		cs = append(cs, activities.SyncCandidate{UUID: u, Name: "n-" + u[:4], Reason: reason})
	}
	return cs
}

func uuidN(i int) string {
	return "00000000-0000-4000-8000-" + string(rune('a'+i/26)) + string(rune('a'+i%26)) + "0000000000"
}

// onePage mocks a pass of a single page, all nodes in the default group.
func onePage(env *testsuite.TestWorkflowEnvironment, page activities.SyncPage) {
	page.Done, page.PassStart = true, time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	env.OnActivity(passActs.ClearStaleTargets, mock.Anything).Return(0, nil).Once()
	served(env, false, activities.Groups{Served: []string{""}})
	env.OnActivity(passActs.ReadPowerStates, mock.Anything, activities.SyncPageInput{StaleTargetsCleared: true, Group: group("")}).Return(page, nil).Once()
}

// served mocks the pass's question of which conductor groups it serves.
func served(env *testsuite.TestWorkflowEnvironment, recovery bool, g activities.Groups) {
	env.OnActivity(passActs.ServedGroups, mock.Anything, mock.MatchedBy(func(in activities.GroupsInput) bool {
		return in.Recovery == recovery && in.Base == "default-test-taskqueue"
	})).Return(g, nil).Once()
}

func group(g string) *string { return &g }

// children mocks NodePowerSync: each child answers results[uuid] (an
// action, or an error), after running for run, and the mock records the
// most children in flight at once.
type children struct {
	mu            sync.Mutex
	ids           []string
	inflight, max int
}

func (c *children) mock(env *testsuite.TestWorkflowEnvironment, run time.Duration, results map[string]any) {
	env.OnWorkflow(activities.NodePowerSyncWorkflow, mock.Anything, mock.Anything).Return(
		func(ctx workflow.Context, in activities.NodeSyncInput) (activities.NodeSyncResult, error) {
			c.mu.Lock()
			c.inflight++
			c.max = max(c.max, c.inflight)
			c.mu.Unlock()
			if run > 0 {
				_ = workflow.Sleep(ctx, run)
			}
			c.mu.Lock()
			c.inflight--
			c.mu.Unlock()
			switch r := results[in.NodeUUID].(type) {
			case error:
				return activities.NodeSyncResult{}, r
			case string:
				return activities.NodeSyncResult{Action: r}, nil
			}
			return activities.NodeSyncResult{Action: activities.SyncInSync}, nil
		})
	env.SetOnChildWorkflowStartedListener(func(info *workflow.Info, _ workflow.Context, _ converter.EncodedValues) {
		c.mu.Lock()
		c.ids = append(c.ids, info.WorkflowExecution.ID)
		c.mu.Unlock()
	})
}

func syncResult(t *testing.T, env *testsuite.TestWorkflowEnvironment) PowerSyncResult {
	t.Helper()
	var res PowerSyncResult
	if err := env.GetWorkflowResult(&res); err != nil {
		t.Fatalf("PowerSync: %v", err)
	}
	return res
}

func TestPowerSyncPagesAndAggregatesChildOutcomes(t *testing.T) {
	env := newChildrenSyncEnv(t, "power-sync")
	start := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	after := &activities.SyncPosition{Failures: 1, ID: 5}
	u := func(i int) string { return uuidN(i) }
	page1 := activities.SyncPage{PassStart: start, After: after, Checked: 6, InSync: 2, Reset: 1, Window: 8,
		Candidates: append(candidates("mismatch", u(0), u(1), u(2)), candidates("unreadable", u(3))...)}
	page2 := activities.SyncPage{PassStart: start, After: &activities.SyncPosition{ID: 9}, Done: true, Checked: 4, InSync: 1, Window: 8,
		Candidates: append(candidates("unknown", u(4), u(5)), candidates("mismatch", u(6))...)}
	// Stale targets are cleared once, as the pass's first step; the pages
	// then leave them alone.
	env.OnActivity(passActs.ClearStaleTargets, mock.Anything).Return(2, nil).Once()
	served(env, false, activities.Groups{Served: []string{""}})
	env.OnActivity(passActs.ReadPowerStates, mock.Anything, activities.SyncPageInput{StaleTargetsCleared: true, Group: group("")}).Return(page1, nil).Once()
	env.OnActivity(passActs.ReadPowerStates, mock.Anything, activities.SyncPageInput{After: after, PassStart: start, StaleTargetsCleared: true, Group: group("")}).Return(page2, nil).Once()
	var c children
	c.mock(env, 0, map[string]any{
		u(0): activities.SyncForce, u(1): activities.SyncRecorded, u(2): activities.SyncForceFailed,
		u(3): activities.SyncMaintenance, u(4): activities.SyncInSync, u(5): activities.SyncSkipped, u(6): activities.SyncUnreadable,
	})
	env.ExecuteWorkflow(PowerSync, PowerSyncInput{})
	// A small pass ends in one run: a continue-as-new would be an error here.
	res := syncResult(t, env)
	want := activities.SyncCounts{Checked: 10, InSync: 4, Corrected: 2, ForceFailed: 1, EnteredMaintenance: 1, Skipped: 1, Unreadable: 1}
	if res.SyncCounts != want || res.Pages != 2 {
		t.Fatalf("result = %+v, want %+v over 2 pages", res, want)
	}
	ids := map[string]bool{}
	for _, id := range c.ids {
		ids[id] = true
	}
	for i := 0; i < 7; i++ {
		if !ids[dispatch.LockID(u(i))] {
			t.Errorf("no child ran as %q", dispatch.LockID(u(i)))
		}
	}
	if len(c.ids) != 7 {
		t.Fatalf("children %v, want 7", c.ids)
	}
}

func TestPowerSyncLockedNodeCountsAsSkippedLocked(t *testing.T) {
	env := newChildrenSyncEnv(t, "power-sync")
	onePage(env, activities.SyncPage{Window: 8, Checked: 2, Candidates: candidates("mismatch", uuidN(0), uuidN(1))})
	// The test environment cannot start a child on a running ID the way
	// the server refuses it; the child's result carries the same error.
	var c children
	c.mock(env, 0, map[string]any{uuidN(0): &temporal.ChildWorkflowExecutionAlreadyStartedError{}, uuidN(1): activities.SyncForce})
	env.ExecuteWorkflow(PowerSync, PowerSyncInput{})
	res := syncResult(t, env)
	if res.SkippedLocked != 1 || res.Corrected != 1 || res.Unreadable != 0 || res.Checked != 2 {
		t.Fatalf("result = %+v, want 1 skipped_locked, 1 corrected", res)
	}
}

func TestPowerSyncFailedChildCountsAsUnreadable(t *testing.T) {
	env := newChildrenSyncEnv(t, "power-sync")
	onePage(env, activities.SyncPage{Window: 8, Candidates: candidates("mismatch", uuidN(0), uuidN(1))})
	var c children
	c.mock(env, 0, map[string]any{
		uuidN(0): temporal.NewNonRetryableApplicationError("Node could not be found.", activities.NodeNotFoundType, nil),
		uuidN(1): activities.SyncRecorded,
	})
	env.ExecuteWorkflow(PowerSync, PowerSyncInput{})
	if res := syncResult(t, env); res.Unreadable != 1 || res.Corrected != 1 {
		t.Fatalf("result = %+v", res)
	}
}

func TestPowerSyncWindowBoundsChildrenInFlight(t *testing.T) {
	for _, tt := range []struct{ window, candidates, want int }{{3, 20, 3}, {8, 5, 5}, {0, 20, 8}} {
		env := newChildrenSyncEnv(t, "power-sync")
		var uuids []string
		for i := 0; i < tt.candidates; i++ {
			uuids = append(uuids, uuidN(i))
		}
		onePage(env, activities.SyncPage{Window: tt.window, Candidates: candidates("mismatch", uuids...)})
		var c children
		c.mock(env, time.Minute, nil)
		env.ExecuteWorkflow(PowerSync, PowerSyncInput{})
		res := syncResult(t, env)
		if c.max != tt.want || res.InSync != tt.candidates || len(c.ids) != tt.candidates {
			t.Fatalf("window %d: %d children in flight at most (want %d), result %+v", tt.window, c.max, tt.want, res)
		}
	}
}

func TestPowerSyncProgressQuery(t *testing.T) {
	env := newChildrenSyncEnv(t, "power-sync")
	onePage(env, activities.SyncPage{Window: 2, Checked: 6, InSync: 3, Candidates: candidates("mismatch", uuidN(0), uuidN(1), uuidN(2))})
	var c children
	c.mock(env, time.Minute, map[string]any{uuidN(0): activities.SyncForce})
	var mid SyncProgress
	env.RegisterDelayedCallback(func() {
		v, err := env.QueryWorkflow("progress")
		if err != nil {
			t.Error(err)
			return
		}
		if err := v.Get(&mid); err != nil {
			t.Error(err)
		}
	}, 30*time.Second)
	env.ExecuteWorkflow(PowerSync, PowerSyncInput{})
	res := syncResult(t, env)
	if mid.Done || mid.Pages != 1 || mid.InFlight != 2 || mid.Checked != 6 || mid.InSync != 3 {
		t.Fatalf("progress during the pass = %+v", mid)
	}
	v, err := env.QueryWorkflow("progress")
	if err != nil {
		t.Fatal(err)
	}
	var end SyncProgress
	if err := v.Get(&end); err != nil {
		t.Fatal(err)
	}
	if !end.Done || end.InFlight != 0 || end.SyncCounts != res.SyncCounts || end.Pages != 1 {
		t.Fatalf("progress at the end = %+v, result %+v", end, res)
	}
}

// The children are the real NodePowerSync, deciding with a mocked SyncNode.
func TestPowerSyncRunsNodePowerSyncChildren(t *testing.T) {
	env := newChildrenSyncEnv(t, "power-sync")
	onePage(env, activities.SyncPage{Window: 8, Checked: 2, Candidates: candidates("mismatch", uuidN(0), uuidN(1))})
	env.OnActivity(nodeSyncActs.SyncNode, mock.Anything, uuidN(0)).Return(activities.NodeSyncDecision{Action: activities.SyncRecorded, Count: 1}, nil).Once()
	env.OnActivity(nodeSyncActs.SyncNode, mock.Anything, uuidN(1)).Return(activities.NodeSyncDecision{Action: activities.SyncUnreadable, Count: 2}, nil).Once()
	env.ExecuteWorkflow(PowerSync, PowerSyncInput{})
	if res := syncResult(t, env); res.Corrected != 1 || res.Unreadable != 1 || res.Checked != 2 {
		t.Fatalf("result = %+v", res)
	}
}

func forcePlan() activities.PowerPlan {
	p := plan(node.PowerOn, "inst-1")
	p.CommandRetryTimeout = 60
	return p
}

func nodeSync(t *testing.T, env *testsuite.TestWorkflowEnvironment) activities.NodeSyncResult {
	t.Helper()
	env.ExecuteWorkflow(NodePowerSync, activities.NodeSyncInput{NodeUUID: testUUID, NodeName: "r1-n07"})
	var res activities.NodeSyncResult
	if err := env.GetWorkflowResult(&res); err != nil {
		t.Fatalf("NodePowerSync: %v", err)
	}
	return res
}

func TestNodePowerSyncForceRunsThePowerChangeSteps(t *testing.T) {
	env := newChildrenSyncEnv(t, dispatch.LockID(testUUID))
	p := forcePlan()
	env.OnActivity(nodeSyncActs.SyncNode, mock.Anything, testUUID).
		Return(activities.NodeSyncDecision{Action: activities.SyncForce, Count: 2, PowerState: node.PowerOff, Plan: &p}, nil).Once()
	env.OnActivity(powerActs.SetPowerState, mock.Anything, activities.SetPowerInput{NodeUUID: testUUID, Target: node.PowerOn}).
		Return(activities.SetPowerResult{HardwareState: node.PowerOff}, nil).Once()
	env.OnActivity(powerActs.VerifyPowerState, mock.Anything, mock.MatchedBy(func(in activities.VerifyInput) bool {
		return in.NodeUUID == testUUID && in.Want == node.PowerOn
	})).Return(node.PowerOn, nil).Once()
	env.OnActivity(powerActs.FinishPowerChange, mock.Anything, activities.FinishInput{NodeUUID: testUUID, Target: node.PowerOn, Final: node.PowerOn}).
		Return(activities.FinishResult{PowerState: node.PowerOn, InstanceUUID: "inst-1"}, nil).Once()
	env.OnActivity(novaActs.QueueNovaNotification, mock.Anything, mock.MatchedBy(func(u activities.PowerUpdate) bool {
		return u.InstanceUUID == "inst-1" && u.NodeUUID == testUUID && u.PowerState == node.PowerOn && u.Source == dispatch.LockID(testUUID)
	})).Return(activities.NovaQueued, nil).Once()
	res := nodeSync(t, env)
	// A successful force keeps the counter; the next matching read resets it.
	if res.Action != activities.SyncForce || res.Count != 2 || res.PowerState != node.PowerOn || res.Nova != activities.NovaQueued {
		t.Fatalf("result = %+v", res)
	}
}

func TestNodePowerSyncForceFindsHardwareAlreadyThere(t *testing.T) {
	env := newChildrenSyncEnv(t, dispatch.LockID(testUUID))
	p := forcePlan()
	env.OnActivity(nodeSyncActs.SyncNode, mock.Anything, testUUID).Return(activities.NodeSyncDecision{Action: activities.SyncForce, Count: 1, Plan: &p}, nil).Once()
	env.OnActivity(powerActs.SetPowerState, mock.Anything, mock.Anything).Return(activities.SetPowerResult{Skipped: true, HardwareState: node.PowerOn}, nil).Once()
	env.OnActivity(powerActs.FinishPowerChange, mock.Anything, mock.MatchedBy(func(in activities.FinishInput) bool { return in.Skipped && in.Failure == "" })).
		Return(activities.FinishResult{PowerState: node.PowerOn, InstanceUUID: "inst-1"}, nil).Once()
	// No QueueNovaNotification expectation: Ironic tells Nova nothing on a skip.
	if res := nodeSync(t, env); res.Action != activities.SyncForce || res.PowerState != node.PowerOn {
		t.Fatalf("result = %+v", res)
	}
}

func TestNodePowerSyncFailedForceDoesNotFailTheWorkflow(t *testing.T) {
	env := newChildrenSyncEnv(t, dispatch.LockID(testUUID))
	p := forcePlan()
	env.OnActivity(nodeSyncActs.SyncNode, mock.Anything, testUUID).Return(activities.NodeSyncDecision{Action: activities.SyncForce, Count: 1, Plan: &p}, nil).Once()
	env.OnActivity(powerActs.SetPowerState, mock.Anything, mock.Anything).
		Return(activities.SetPowerResult{}, temporal.NewNonRetryableApplicationError("bad credentials", activities.BMCAuthType, nil))
	env.OnActivity(powerActs.FinishPowerChange, mock.Anything, mock.MatchedBy(func(in activities.FinishInput) bool {
		return in.NodeUUID == testUUID && in.Failure == "bad credentials" && in.Final == node.PowerOn
	})).Return(activities.FinishResult{PowerState: node.PowerOff}, nil).Once()
	res := nodeSync(t, env)
	if res.Action != activities.SyncForceFailed || res.Count != 1 || res.Error == "" || res.Nova != "" {
		t.Fatalf("result = %+v, want %q with the error", res, activities.SyncForceFailed)
	}
}

func TestNodePowerSyncNonForceDecisionsReturnAtOnce(t *testing.T) {
	for _, d := range []activities.NodeSyncDecision{
		{Action: activities.SyncInSync},
		{Action: activities.SyncRecorded, Count: 1, PowerState: node.PowerOff, Nova: activities.NovaQueued},
		{Action: activities.SyncUnreadable, Count: 2, Error: "connection refused"},
		{Action: activities.SyncMaintenance, Count: 4, Error: "connection refused"},
		{Action: activities.SyncSkipped, Count: 1},
	} {
		env := newChildrenSyncEnv(t, dispatch.LockID(testUUID))
		env.OnActivity(nodeSyncActs.SyncNode, mock.Anything, testUUID).Return(d, nil).Once()
		var ran []string
		env.SetOnLocalActivityStartedListener(func(info *activity.Info, _ context.Context, _ []any) { ran = append(ran, info.ActivityType.Name) })
		env.SetOnActivityStartedListener(func(info *activity.Info, _ context.Context, _ converter.EncodedValues) {
			ran = append(ran, info.ActivityType.Name)
		})
		res := nodeSync(t, env)
		want := activities.NodeSyncResult{Action: d.Action, Count: d.Count, PowerState: d.PowerState, Nova: d.Nova, Error: d.Error}
		if res != want || len(ran) != 1 {
			t.Fatalf("%s: result = %+v, want %+v; activities %v", d.Action, res, want, ran)
		}
	}
}

func TestNodePowerSyncDecisionErrorFailsTheWorkflow(t *testing.T) {
	env := newChildrenSyncEnv(t, dispatch.LockID(testUUID))
	env.OnActivity(nodeSyncActs.SyncNode, mock.Anything, testUUID).
		Return(activities.NodeSyncDecision{}, temporal.NewNonRetryableApplicationError("Node could not be found.", activities.NodeNotFoundType, nil)).Once()
	env.ExecuteWorkflow(NodePowerSync, activities.NodeSyncInput{NodeUUID: testUUID})
	var appErr *temporal.ApplicationError
	if err := env.GetWorkflowError(); !errors.As(err, &appErr) || appErr.Type() != activities.NodeNotFoundType {
		t.Fatalf("err = %v", err)
	}
}

func TestPowerFailureRecoveryReturnsActivityCounts(t *testing.T) {
	env := newChildrenSyncEnv(t, "power-failure-recovery")
	want := activities.RecoveryResult{Checked: 5, Recovered: 2, StillFailing: 2, Skipped: 1}
	served(env, true, activities.Groups{Served: []string{""}})
	env.OnActivity(recoveryActs.RecoverGroup, mock.Anything, "").Return(want, nil).Once()
	env.ExecuteWorkflow(PowerFailureRecovery)
	var res activities.RecoveryResult
	if err := env.GetWorkflowResult(&res); err != nil {
		t.Fatal(err)
	}
	if res != want {
		t.Fatalf("result = %+v, want %+v", res, want)
	}
}

// TestNodePowerSyncCountsThePageReadFailure: a candidate the page could
// not read is decided on that failure (SyncFailedRead), never read again.
func TestNodePowerSyncCountsThePageReadFailure(t *testing.T) {
	env := newChildrenSyncEnv(t, dispatch.LockID(testUUID))
	env.OnActivity(nodeSyncActs.SyncFailedRead, mock.Anything, activities.FailedRead{NodeUUID: testUUID, Error: "BMC unreachable", DriverError: true}).
		Return(activities.NodeSyncDecision{Action: activities.SyncUnreadable, Count: 1, Error: "BMC unreachable"}, nil).Once()
	env.ExecuteWorkflow(NodePowerSync, activities.NodeSyncInput{NodeUUID: testUUID, ReadError: "BMC unreachable", DriverError: true})
	var res activities.NodeSyncResult
	if err := env.GetWorkflowResult(&res); err != nil {
		t.Fatal(err)
	}
	if res.Action != activities.SyncUnreadable || res.Count != 1 || res.Error != "BMC unreachable" {
		t.Fatalf("result = %+v", res)
	}
}
