package workflows

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/metalpower/metalpower/activities"
)

// TestPowerSyncReadsEachGroupOnItsWorkers: a pass reads each served
// conductor group's pages on that group's task queue, runs its per-node
// syncs there, and counts the nodes of a group nobody serves.
func TestPowerSyncReadsEachGroupOnItsWorkers(t *testing.T) {
	env := newChildrenSyncEnv(t, "power-sync")
	start := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	env.OnActivity(passActs.ClearStaleTargets, mock.Anything).Return(0, nil).Once()
	served(env, false, activities.Groups{Served: []string{"", "rack-b"}, Unserved: map[string]int{"rack-c": 3}, UnservedNodes: 3})
	after := &activities.SyncPosition{Failures: 2, ID: 7}
	env.OnActivity(passActs.ReadPowerStates, mock.Anything, activities.SyncPageInput{StaleTargetsCleared: true, Group: group("")}).
		Return(activities.SyncPage{PassStart: start, Done: true, Checked: 2, InSync: 1, Window: 8, Candidates: candidates("mismatch", uuidN(0))}, nil).Once()
	env.OnActivity(passActs.ReadPowerStates, mock.Anything, activities.SyncPageInput{PassStart: start, StaleTargetsCleared: true, Group: group("rack-b")}).
		Return(activities.SyncPage{PassStart: start, After: after, Checked: 3, InSync: 3, Window: 8}, nil).Once()
	env.OnActivity(passActs.ReadPowerStates, mock.Anything, activities.SyncPageInput{After: after, PassStart: start, StaleTargetsCleared: true, Group: group("rack-b")}).
		Return(activities.SyncPage{PassStart: start, Done: true, Checked: 1, Window: 8, Candidates: candidates("mismatch", uuidN(1))}, nil).Once()

	var mu sync.Mutex
	queues := map[string][]string{} // what ran -> task queues
	env.SetOnActivityStartedListener(func(info *activity.Info, _ context.Context, _ converter.EncodedValues) {
		mu.Lock()
		defer mu.Unlock()
		queues[info.ActivityType.Name] = append(queues[info.ActivityType.Name], info.TaskQueue)
	})
	env.OnWorkflow(activities.NodePowerSyncWorkflow, mock.Anything, mock.Anything).Return(
		func(ctx workflow.Context, in activities.NodeSyncInput) (activities.NodeSyncResult, error) {
			mu.Lock()
			defer mu.Unlock()
			queues[in.NodeUUID] = append(queues[in.NodeUUID], workflow.GetInfo(ctx).TaskQueueName)
			return activities.NodeSyncResult{Action: activities.SyncForce}, nil
		})
	env.ExecuteWorkflow(PowerSync, PowerSyncInput{})
	res := syncResult(t, env)
	if want := (activities.SyncCounts{Checked: 6, InSync: 4, Corrected: 2, NoWorker: 3}); res.SyncCounts != want {
		t.Fatalf("counts %+v, want %+v", res.SyncCounts, want)
	}
	for what, want := range map[string][]string{
		nameOf(passActs.ReadPowerStates): {"default-test-taskqueue", "default-test-taskqueue.rack-b", "default-test-taskqueue.rack-b"},
		uuidN(0):                         {"default-test-taskqueue"},
		uuidN(1):                         {"default-test-taskqueue.rack-b"},
	} {
		if got := queues[what]; !slices.Equal(got, want) {
			t.Errorf("%s ran on %q, want %q", what, got, want)
		}
	}
}

// TestPowerSyncSkipsAGroupNoWorkerPicksUp: the group's workers vanished
// since the pass began; its page is never taken, and the pass goes on.
func TestPowerSyncSkipsAGroupNoWorkerPicksUp(t *testing.T) {
	env := newChildrenSyncEnv(t, "power-sync")
	env.OnActivity(passActs.ClearStaleTargets, mock.Anything).Return(0, nil).Once()
	served(env, false, activities.Groups{Served: []string{"rack-b", "rack-d"}})
	env.OnActivity(passActs.ReadPowerStates, mock.Anything, mock.MatchedBy(func(in activities.SyncPageInput) bool { return *in.Group == "rack-b" })).
		Return(activities.SyncPage{}, temporal.NewTimeoutError(enumspb.TIMEOUT_TYPE_SCHEDULE_TO_START, nil)).Once()
	env.OnActivity(passActs.ReadPowerStates, mock.Anything, mock.MatchedBy(func(in activities.SyncPageInput) bool { return *in.Group == "rack-d" })).
		Return(activities.SyncPage{Done: true, Checked: 2, InSync: 2}, nil).Once()
	env.ExecuteWorkflow(PowerSync, PowerSyncInput{})
	if res := syncResult(t, env); res.Checked != 2 || res.InSync != 2 {
		t.Fatalf("counts %+v, want rack-d's 2 in sync", res.SyncCounts)
	}
}

// TestPowerFailureRecoveryRunsEachGroupOnItsWorkers adds up the groups'
// recoveries; the nodes of a group nobody serves count as skipped.
func TestPowerFailureRecoveryRunsEachGroupOnItsWorkers(t *testing.T) {
	env := newChildrenSyncEnv(t, "power-failure-recovery")
	served(env, true, activities.Groups{Served: []string{"", "rack-b"}, Unserved: map[string]int{"rack-c": 2}, UnservedNodes: 2})
	env.OnActivity(recoveryActs.RecoverGroup, mock.Anything, "").Return(activities.RecoveryResult{Checked: 2, Recovered: 1, StillFailing: 1}, nil).Once()
	env.OnActivity(recoveryActs.RecoverGroup, mock.Anything, "rack-b").Return(activities.RecoveryResult{Checked: 3, Recovered: 3}, nil).Once()
	var mu sync.Mutex
	var queues []string
	env.SetOnActivityStartedListener(func(info *activity.Info, _ context.Context, _ converter.EncodedValues) {
		mu.Lock()
		defer mu.Unlock()
		queues = append(queues, info.TaskQueue)
	})
	env.ExecuteWorkflow(PowerFailureRecovery)
	var res activities.RecoveryResult
	if err := env.GetWorkflowResult(&res); err != nil {
		t.Fatal(err)
	}
	if want := (activities.RecoveryResult{Checked: 5, Recovered: 4, StillFailing: 1, Skipped: 2}); res != want {
		t.Fatalf("result = %+v, want %+v", res, want)
	}
	if want := []string{"default-test-taskqueue", "default-test-taskqueue.rack-b"}; !slices.Equal(queues, want) {
		t.Fatalf("recoveries ran on %q, want %q", queues, want)
	}
}

// TestPowerSyncRunsEachPagesNodeSyncsInOneActivity: a pass of this build
// hands each page's candidates to one RunNodeSyncs activity on a worker
// of the page's group, naming that group's queue for the per-node syncs,
// and adds up what it counted; it starts no child itself.
func TestPowerSyncRunsEachPagesNodeSyncsInOneActivity(t *testing.T) {
	env := newSyncEnv(t, "power-sync")
	start := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	env.OnActivity(passActs.ClearStaleTargets, mock.Anything).Return(0, nil).Once()
	served(env, false, activities.Groups{Served: []string{"", "rack-b"}})
	env.OnActivity(passActs.ReadPowerStates, mock.Anything, activities.SyncPageInput{StaleTargetsCleared: true, Group: group("")}).
		Return(activities.SyncPage{PassStart: start, Done: true, Checked: 4, InSync: 1, Window: 8,
			Candidates: candidates("mismatch", uuidN(0), uuidN(1), uuidN(2))}, nil).Once()
	env.OnActivity(passActs.ReadPowerStates, mock.Anything, activities.SyncPageInput{PassStart: start, StaleTargetsCleared: true, Group: group("rack-b")}).
		Return(activities.SyncPage{PassStart: start, Done: true, Checked: 1, Window: 4, Candidates: candidates("unknown", uuidN(3))}, nil).Once()

	var mu sync.Mutex
	var queues []string
	env.SetOnActivityStartedListener(func(info *activity.Info, _ context.Context, _ converter.EncodedValues) {
		if info.ActivityType.Name == nameOf(passActs.RunNodeSyncs) {
			mu.Lock()
			defer mu.Unlock()
			queues = append(queues, info.TaskQueue)
		}
	})
	env.OnActivity(passActs.RunNodeSyncs, mock.Anything, activities.NodeSyncsInput{
		Candidates: candidates("mismatch", uuidN(0), uuidN(1), uuidN(2)), Window: 8, TaskQueue: "default-test-taskqueue", Pass: "power-sync",
	}).Return(activities.SyncCounts{Corrected: 1, SkippedLocked: 1, ForceFailed: 1}, nil).Once()
	env.OnActivity(passActs.RunNodeSyncs, mock.Anything, activities.NodeSyncsInput{
		Candidates: candidates("unknown", uuidN(3)), Window: 4, TaskQueue: "default-test-taskqueue.rack-b", Pass: "power-sync",
	}).Return(activities.SyncCounts{Corrected: 1}, nil).Once()
	env.OnWorkflow(activities.NodePowerSyncWorkflow, mock.Anything, mock.Anything).Return(activities.NodeSyncResult{}, nil).Never()

	env.ExecuteWorkflow(PowerSync, PowerSyncInput{})
	res := syncResult(t, env)
	if want := (activities.SyncCounts{Checked: 5, InSync: 1, Corrected: 2, SkippedLocked: 1, ForceFailed: 1}); res.SyncCounts != want {
		t.Fatalf("counts %+v, want %+v", res.SyncCounts, want)
	}
	if want := []string{"default-test-taskqueue", "default-test-taskqueue.rack-b"}; !slices.Equal(queues, want) {
		t.Errorf("RunNodeSyncs ran on %q, want %q", queues, want)
	}
}
