package workflows

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/mock"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

	"github.com/metalpower/metalpower/activities"
	"github.com/metalpower/metalpower/internal/dispatch"
	"github.com/metalpower/metalpower/internal/node"
)

// The test environment runs workflows on this queue.
const ownQueue = "default-test-taskqueue"

// startedOn records the task queue of every activity the workflow starts.
func startedOn(env *testsuite.TestWorkflowEnvironment) func() map[string][]string {
	var mu sync.Mutex
	queues := map[string][]string{}
	env.SetOnActivityStartedListener(func(info *activity.Info, _ context.Context, _ converter.EncodedValues) {
		mu.Lock()
		defer mu.Unlock()
		queues[info.ActivityType.Name] = append(queues[info.ActivityType.Name], info.TaskQueue)
	})
	return func() map[string][]string {
		mu.Lock()
		defer mu.Unlock()
		return queues
	}
}

// TestPowerChangeRunsBMCActivitiesOnTheNodesGroup: whatever queue the
// change runs on, setting and verifying the power run on the queue the
// plan names, its node's group's; a plan of the build before routing
// names none and keeps the workflow's own queue.
func TestPowerChangeRunsBMCActivitiesOnTheNodesGroup(t *testing.T) {
	for _, tt := range []struct {
		name, planQueue, want string
	}{
		{"another group", "metalpower.segment-b", "metalpower.segment-b"},
		{"this workflow's own group", ownQueue, ownQueue},
		{"a plan made before routing", "", ownQueue},
	} {
		t.Run(tt.name, func(t *testing.T) {
			env := newEnv(t, dispatch.LockID(testUUID))
			p := plan(node.PowerOff, "")
			p.Queue = tt.planQueue
			env.OnActivity(powerActs.PreparePowerChange, mock.Anything, mock.Anything).Return(p, nil).Once()
			env.OnActivity(powerActs.SetPowerState, mock.Anything, mock.Anything).Return(activities.SetPowerResult{HardwareState: node.PowerOn}, nil).Once()
			env.OnActivity(powerActs.VerifyPowerState, mock.Anything, mock.Anything).Return(node.PowerOff, nil).Once()
			env.OnActivity(powerActs.FinishPowerChange, mock.Anything, mock.Anything).Return(activities.FinishResult{PowerState: node.PowerOff}, nil).Once()
			queues := startedOn(env)
			env.ExecuteWorkflow(PowerChange, PowerChangeInput{Node: testUUID, Target: node.PowerOff})
			if err := env.GetWorkflowError(); err != nil {
				t.Fatal(err)
			}
			for _, act := range []string{nameOf(powerActs.SetPowerState), nameOf(powerActs.VerifyPowerState)} {
				if got := queues()[act]; !slices.Equal(got, []string{tt.want}) {
					t.Errorf("%s ran on %q, want %q", act, got, tt.want)
				}
			}
		})
	}
}

// TestPowerChangeForAGroupNobodyServes: a plan whose group no live worker
// serves, or a BMC activity no worker of the group took within
// dispatch.Pickup, ends the change with Ironic's NoValidHost, recorded
// as the node's last_error; nothing reaches a BMC after it.
func TestPowerChangeForAGroupNobodyServes(t *testing.T) {
	for _, tt := range []struct {
		name     string
		unserved bool
		setErr   error
	}{
		{"no live worker when planned", true, nil},
		{"the group's workers went away", false, temporal.NewTimeoutError(enumspb.TIMEOUT_TYPE_SCHEDULE_TO_START, nil)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			env := newEnv(t, dispatch.LockID(testUUID))
			p := plan(node.PowerOff, "")
			p.Group, p.Queue, p.Unserved = "segment-c", "metalpower.segment-c", tt.unserved
			env.OnActivity(powerActs.PreparePowerChange, mock.Anything, mock.Anything).Return(p, nil).Once()
			if !tt.unserved {
				env.OnActivity(powerActs.SetPowerState, mock.Anything, mock.Anything).Return(activities.SetPowerResult{}, tt.setErr).Once()
			}
			var failure string
			env.OnActivity(powerActs.FinishPowerChange, mock.Anything, mock.MatchedBy(func(in activities.FinishInput) bool {
				failure = in.Failure
				return in.Failure != ""
			})).Return(activities.FinishResult{PowerState: node.PowerOn}, nil).Once()
			env.ExecuteWorkflow(PowerChange, PowerChangeInput{Node: testUUID, Target: node.PowerOff})
			err := env.GetWorkflowError()
			nw, ok := dispatch.AsNoWorker(err)
			if !ok || nw.Group != "segment-c" || nw.Queue != "metalpower.segment-c" {
				t.Fatalf("workflow error = %v, want NoValidHost for segment-c", err)
			}
			want := `No valid host was found. Reason: No conductor service registered which supports driver ipmi for conductor group "segment-c". ` +
				`Start a worker with [conductor] conductor_group = "segment-c": it polls task queue metalpower.segment-c.`
			if failure != want || !strings.Contains(err.Error(), want) {
				t.Fatalf("last_error's cause %q, workflow error %q; want %q", failure, err, want)
			}
		})
	}
}

// misrouted is a worker's refusal of a node of another group.
func misrouted(group, queue string) error {
	return temporal.NewNonRetryableApplicationError("conductor group is served elsewhere", activities.WrongGroupType, nil,
		activities.Misrouted{Group: group, Queue: queue, Driver: "redfish"})
}

// TestNodePowerSyncStartedElsewhereReadsOnTheNodesGroup: a per-node sync
// started on a queue of another group (by hand) reads on the node's
// group, and forces there; started by a pass, on the node's group, it
// reads once, locally.
func TestNodePowerSyncStartedElsewhereReadsOnTheNodesGroup(t *testing.T) {
	env := newChildrenSyncEnv(t, dispatch.LockID(testUUID))
	p := forcePlan()
	p.Queue = "metalpower.segment-b"
	env.OnActivity(nodeSyncActs.SyncNode, mock.Anything, testUUID).Return(activities.NodeSyncDecision{}, misrouted("segment-b", p.Queue)).Once()
	env.OnActivity(nodeSyncActs.SyncNode, mock.Anything, testUUID).
		Return(activities.NodeSyncDecision{Action: activities.SyncForce, Count: 1, PowerState: node.PowerOff, Plan: &p}, nil).Once()
	env.OnActivity(powerActs.SetPowerState, mock.Anything, mock.Anything).Return(activities.SetPowerResult{Verified: true}, nil).Once()
	env.OnActivity(powerActs.FinishPowerChange, mock.Anything, mock.Anything).Return(activities.FinishResult{PowerState: node.PowerOn}, nil).Once()
	queues := startedOn(env)
	res := nodeSync(t, env)
	if res.Action != activities.SyncForce || res.PowerState != node.PowerOn {
		t.Fatalf("result = %+v", res)
	}
	// The local read is not an activity task; the routed read and the
	// force are, both on segment-b's queue.
	for act, want := range map[string][]string{nameOf(nodeSyncActs.SyncNode): {p.Queue}, nameOf(powerActs.SetPowerState): {p.Queue}} {
		if got := queues()[act]; !slices.Equal(got, want) {
			t.Errorf("%s ran on %q, want %q", act, got, want)
		}
	}
}

// TestNodeProvisionStartedElsewhereReadsOnTheNodesGroup: manage started
// on another group's queue reads the BMC on the node's group; when no
// worker of it takes the read, NoValidHost.
func TestNodeProvisionStartedElsewhereReadsOnTheNodesGroup(t *testing.T) {
	for _, tt := range []struct {
		name    string
		second  error
		wantErr bool
	}{
		{"a worker of the group reads", nil, false},
		{"nobody serves the group", temporal.NewTimeoutError(enumspb.TIMEOUT_TYPE_SCHEDULE_TO_START, nil), true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var s testsuite.WorkflowTestSuite
			env := s.NewTestWorkflowEnvironment()
			env.RegisterWorkflowWithOptions(NodeProvision, workflow.RegisterOptions{Name: NodeProvisionWorkflow})
			registerActivities(env)
			in := activities.ProvisionInput{Node: testUUID, Action: node.ActionManage}
			env.OnActivity(provisionActs.ProvisionNode, mock.Anything, in).Return(activities.ProvisionResult{}, misrouted("segment-b", "metalpower.segment-b")).Once()
			env.OnActivity(provisionActs.ProvisionNode, mock.Anything, in).Return(activities.ProvisionResult{ProvisionState: node.Manageable}, tt.second).Once()
			queues := startedOn(env)
			env.ExecuteWorkflow(NodeProvision, in)
			env.AssertExpectations(t)
			err := env.GetWorkflowError()
			if _, ok := dispatch.AsNoWorker(err); ok != tt.wantErr || (err != nil) != tt.wantErr {
				t.Fatalf("workflow error = %v, want NoValidHost: %v", err, tt.wantErr)
			}
			if got, want := queues()[nameOf(provisionActs.ProvisionNode)], []string{ownQueue, "metalpower.segment-b"}; !slices.Equal(got, want) {
				t.Errorf("ProvisionNode ran on %q, want %q", got, want)
			}
		})
	}
}

// TestPowerChangePlannedBeforeRoutingFindsTheNodesGroup: a change planned
// by the build before routing (no queue in its plan) whose BMC step a
// worker of another group refuses runs that step again on the node's
// group: in-flight changes finish after the upgrade.
func TestPowerChangePlannedBeforeRoutingFindsTheNodesGroup(t *testing.T) {
	env := newEnv(t, dispatch.LockID(testUUID))
	env.OnActivity(powerActs.PreparePowerChange, mock.Anything, mock.Anything).Return(plan(node.PowerOff, ""), nil).Once()
	env.OnActivity(powerActs.SetPowerState, mock.Anything, mock.Anything).Return(activities.SetPowerResult{}, misrouted("segment-b", "metalpower.segment-b")).Once()
	env.OnActivity(powerActs.SetPowerState, mock.Anything, mock.Anything).Return(activities.SetPowerResult{}, nil).Once()
	env.OnActivity(powerActs.VerifyPowerState, mock.Anything, mock.Anything).Return("", misrouted("segment-b", "metalpower.segment-b")).Once()
	env.OnActivity(powerActs.VerifyPowerState, mock.Anything, mock.Anything).Return(node.PowerOff, nil).Once()
	env.OnActivity(powerActs.FinishPowerChange, mock.Anything, activities.FinishInput{NodeUUID: testUUID, Target: node.PowerOff, Final: node.PowerOff}).
		Return(activities.FinishResult{PowerState: node.PowerOff}, nil).Once()
	queues := startedOn(env)
	env.ExecuteWorkflow(PowerChange, PowerChangeInput{Node: testUUID, Target: node.PowerOff})
	if err := env.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	for _, act := range []string{nameOf(powerActs.SetPowerState), nameOf(powerActs.VerifyPowerState)} {
		if got, want := queues()[act], []string{ownQueue, "metalpower.segment-b"}; !slices.Equal(got, want) {
			t.Errorf("%s ran on %q, want %q", act, got, want)
		}
	}
}
