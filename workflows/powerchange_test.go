package workflows

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

	"github.com/metalpower/metalpower/activities"
	"github.com/metalpower/metalpower/internal/dispatch"
	"github.com/metalpower/metalpower/internal/node"
)

// Unit tests of the workflow logic with mocked activities; the integration
// tests in internal/testbed/itest run the same workflows against a real server.

const testUUID = "6f2b8f3a-1c1e-4a8e-9a57-8d2c3e4f5a6b"

func newEnv(t *testing.T, workflowID string) *testsuite.TestWorkflowEnvironment {
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	env.RegisterWorkflowWithOptions(PowerChange, workflow.RegisterOptions{Name: PowerChangeWorkflow})
	env.RegisterWorkflowWithOptions(NovaNotify, workflow.RegisterOptions{Name: activities.NovaNotifyWorkflow})
	registerActivities(env)
	env.SetStartWorkflowOptions(client.StartWorkflowOptions{ID: workflowID})
	t.Cleanup(func() { env.AssertExpectations(t) })
	return env
}

func plan(target string, instance string) activities.PowerPlan {
	return activities.PowerPlan{NodeUUID: testUUID, NodeName: "r1-n07", Driver: "ipmi", BMC: "10.0.0.7:623",
		InstanceUUID: instance, Target: target, Final: node.FinalState(target), Timeout: 60}
}

func TestPowerChangeSetsVerifiesPersistsAndQueuesNova(t *testing.T) {
	env := newEnv(t, dispatch.LockID(testUUID))
	p := plan(node.PowerOff, "inst-1")
	env.OnActivity(powerActs.PreparePowerChange, mock.Anything, activities.PrepareInput{Node: testUUID, Target: node.PowerOff, Mark: true}).Return(p, nil).Once()
	env.OnActivity(powerActs.SetPowerState, mock.Anything, activities.SetPowerInput{NodeUUID: testUUID, Target: node.PowerOff}).
		Return(activities.SetPowerResult{HardwareState: node.PowerOn}, nil).Once()
	env.OnActivity(powerActs.VerifyPowerState, mock.Anything, mock.MatchedBy(func(in activities.VerifyInput) bool {
		return in.Want == node.PowerOff && in.NodeUUID == testUUID
	})).Return(node.PowerOff, nil).Once()
	env.OnActivity(powerActs.FinishPowerChange, mock.Anything, activities.FinishInput{NodeUUID: testUUID, Target: node.PowerOff, Final: node.PowerOff}).
		Return(activities.FinishResult{PowerState: node.PowerOff, InstanceUUID: "inst-1"}, nil).Once()
	env.OnActivity(novaActs.QueueNovaNotification, mock.Anything, mock.MatchedBy(func(u activities.PowerUpdate) bool {
		return u.InstanceUUID == "inst-1" && u.PowerState == node.PowerOff
	})).Return(activities.NovaQueued, nil).Once()

	env.ExecuteWorkflow(PowerChange, PowerChangeInput{Node: testUUID, Target: node.PowerOff})
	var res PowerChangeResult
	if err := env.GetWorkflowResult(&res); err != nil {
		t.Fatal(err)
	}
	if res.PowerState != node.PowerOff || res.Nova != activities.NovaQueued || res.Skipped {
		t.Fatalf("result = %+v", res)
	}
}

func TestPowerChangeRebootEndsOnAndNotifiesPowerOn(t *testing.T) {
	env := newEnv(t, dispatch.LockID(testUUID))
	p := plan(node.Reboot, "inst-1")
	env.OnActivity(powerActs.PreparePowerChange, mock.Anything, mock.Anything).Return(p, nil)
	env.OnActivity(powerActs.SetPowerState, mock.Anything, mock.Anything).Return(activities.SetPowerResult{}, nil)
	env.OnActivity(powerActs.VerifyPowerState, mock.Anything, mock.MatchedBy(func(in activities.VerifyInput) bool { return in.Want == node.PowerOn })).Return(node.PowerOn, nil)
	env.OnActivity(powerActs.FinishPowerChange, mock.Anything, mock.Anything).Return(activities.FinishResult{PowerState: node.PowerOn, InstanceUUID: "inst-1"}, nil)
	env.OnActivity(novaActs.QueueNovaNotification, mock.Anything, mock.MatchedBy(func(u activities.PowerUpdate) bool { return u.PowerState == node.PowerOn })).
		Return(activities.NovaQueued, nil).Once()
	env.ExecuteWorkflow(PowerChange, PowerChangeInput{Node: testUUID, Target: node.Reboot})
	if err := env.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
}

func TestPowerChangeSkipsWhenAlreadyThereWithoutNova(t *testing.T) {
	env := newEnv(t, dispatch.LockID(testUUID))
	env.OnActivity(powerActs.PreparePowerChange, mock.Anything, mock.Anything).Return(plan(node.PowerOff, "inst-1"), nil)
	env.OnActivity(powerActs.SetPowerState, mock.Anything, mock.Anything).Return(activities.SetPowerResult{Skipped: true, HardwareState: node.PowerOff}, nil)
	env.OnActivity(powerActs.FinishPowerChange, mock.Anything, activities.FinishInput{NodeUUID: testUUID, Target: node.PowerOff, Final: node.PowerOff, Skipped: true, HardwareState: node.PowerOff}).
		Return(activities.FinishResult{PowerState: node.PowerOff, InstanceUUID: "inst-1"}, nil).Once()
	env.ExecuteWorkflow(PowerChange, PowerChangeInput{Node: testUUID, Target: node.PowerOff})
	var res PowerChangeResult
	if err := env.GetWorkflowResult(&res); err != nil {
		t.Fatal(err)
	}
	if !res.Skipped || res.PowerState != node.PowerOff {
		t.Fatalf("result = %+v", res)
	}
	// VerifyPowerState and QueueNovaNotification have no expectations: a
	// call would fail the test.
}

func TestPowerChangeFailureRecordsLastErrorAndFailsTyped(t *testing.T) {
	tests := []struct {
		name    string
		setErr  error
		verify  error
		errType string
	}{
		{"bmc auth", temporal.NewNonRetryableApplicationError("bad credentials", activities.BMCAuthType, nil), nil, activities.BMCAuthType},
		{"verify timeout", nil, temporal.NewNonRetryableApplicationError("Failed to set node power state to power off.", activities.PowerStateTimeoutType, nil), activities.PowerStateTimeoutType},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := newEnv(t, dispatch.LockID(testUUID))
			env.OnActivity(powerActs.PreparePowerChange, mock.Anything, mock.Anything).Return(plan(node.PowerOff, ""), nil)
			env.OnActivity(powerActs.SetPowerState, mock.Anything, mock.Anything).Return(activities.SetPowerResult{}, tt.setErr)
			if tt.setErr == nil {
				env.OnActivity(powerActs.VerifyPowerState, mock.Anything, mock.Anything).Return("", tt.verify)
			}
			env.OnActivity(powerActs.FinishPowerChange, mock.Anything, mock.MatchedBy(func(in activities.FinishInput) bool {
				return in.Failure != "" && !in.Skipped
			})).Return(activities.FinishResult{PowerState: node.PowerOn}, nil).Once()
			env.ExecuteWorkflow(PowerChange, PowerChangeInput{Node: testUUID, Target: node.PowerOff})
			err := env.GetWorkflowError()
			var appErr *temporal.ApplicationError
			if !errors.As(err, &appErr) || appErr.Type() != tt.errType {
				t.Fatalf("err = %v, want type %s", err, tt.errType)
			}
		})
	}
}

// TestPowerChangeRidesOutANodeStoreOutage: the node store is away for a
// while after the action was sent (found by the chaos test with a 40 s
// PostgreSQL outage). Verification and the final write keep retrying
// until it is back, instead of failing the change with its
// target_power_state left set and nothing recorded.
func TestPowerChangeRidesOutANodeStoreOutage(t *testing.T) {
	env := newEnv(t, dispatch.LockID(testUUID))
	storeDown := temporal.NewApplicationError("get node: connection refused", activities.StoreType)
	env.OnActivity(powerActs.PreparePowerChange, mock.Anything, mock.Anything).Return(plan(node.PowerOff, ""), nil).Once()
	env.OnActivity(powerActs.SetPowerState, mock.Anything, mock.Anything).Return(activities.SetPowerResult{}, nil).Once()
	env.OnActivity(powerActs.VerifyPowerState, mock.Anything, mock.Anything).Return("", storeDown).Times(6)
	env.OnActivity(powerActs.VerifyPowerState, mock.Anything, mock.Anything).Return(node.PowerOff, nil).Once()
	env.OnActivity(powerActs.FinishPowerChange, mock.Anything, mock.Anything).Return(activities.FinishResult{}, storeDown).Times(15)
	env.OnActivity(powerActs.FinishPowerChange, mock.Anything, mock.MatchedBy(func(in activities.FinishInput) bool { return in.Failure == "" })).
		Return(activities.FinishResult{PowerState: node.PowerOff}, nil).Once()
	env.ExecuteWorkflow(PowerChange, PowerChangeInput{Node: testUUID, Target: node.PowerOff})
	var res PowerChangeResult
	if err := env.GetWorkflowResult(&res); err != nil {
		t.Fatalf("the change failed on a store outage: %v", err)
	}
	if res.PowerState != node.PowerOff {
		t.Fatalf("result = %+v", res)
	}
}

func TestPowerChangeUnderAnotherIDRunsUnderTheNodeLock(t *testing.T) {
	env := newEnv(t, "my-own-id")
	env.OnActivity(powerActs.PreparePowerChange, mock.Anything, activities.PrepareInput{Node: "r1-n07", Target: node.PowerOn}).Return(plan(node.PowerOn, ""), nil).Once()
	var childID string
	// The child is the same workflow under the lock ID: it marks the node.
	env.OnActivity(powerActs.PreparePowerChange, mock.Anything, activities.PrepareInput{Node: testUUID, Target: node.PowerOn, Mark: true}).Return(plan(node.PowerOn, ""), nil).Once()
	env.OnActivity(powerActs.SetPowerState, mock.Anything, mock.Anything).Return(activities.SetPowerResult{Skipped: true, HardwareState: node.PowerOn}, nil).Once()
	env.OnActivity(powerActs.FinishPowerChange, mock.Anything, mock.Anything).Return(activities.FinishResult{PowerState: node.PowerOn}, nil).Once()
	env.SetOnChildWorkflowStartedListener(func(info *workflow.Info, _ workflow.Context, _ converter.EncodedValues) {
		childID = info.WorkflowExecution.ID
	})
	env.ExecuteWorkflow(PowerChange, PowerChangeInput{Node: "r1-n07", Target: node.PowerOn})
	var res PowerChangeResult
	if err := env.GetWorkflowResult(&res); err != nil {
		t.Fatal(err)
	}
	if childID != dispatch.LockID(testUUID) || res.LockWorkflowID != dispatch.LockID(testUUID) {
		t.Fatalf("child ran under %q (result %+v), want %q", childID, res, dispatch.LockID(testUUID))
	}
}

func TestInvalidTargetFailsBeforeAnythingChanges(t *testing.T) {
	env := newEnv(t, dispatch.LockID(testUUID))
	env.OnActivity(powerActs.PreparePowerChange, mock.Anything, mock.Anything).
		Return(activities.PowerPlan{}, temporal.NewNonRetryableApplicationError("Invalid power target", activities.InvalidTargetType, nil))
	// The target the starter recorded is taken back.
	env.OnActivity(powerActs.AbortPowerChange, mock.Anything, testUUID).Return(nil).Once()
	env.ExecuteWorkflow(PowerChange, PowerChangeInput{Node: testUUID, Target: "explode"})
	var appErr *temporal.ApplicationError
	if err := env.GetWorkflowError(); !errors.As(err, &appErr) || appErr.Type() != activities.InvalidTargetType {
		t.Fatalf("err = %v", err)
	}
}

func TestNovaNotifyCollapsesQueuedUpdatesToTheNewest(t *testing.T) {
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	registerActivities(env)
	var sent []string
	record := func(_ context.Context, u activities.PowerUpdate) (string, error) {
		sent = append(sent, u.PowerState)
		return activities.NovaDelivered, nil
	}
	// The first delivery takes a while; three updates arrive meanwhile and
	// only the last of them needs to go.
	env.OnActivity(novaActs.SendPowerUpdate, mock.Anything, mock.Anything).After(5 * time.Second).Return(record).Once()
	env.OnActivity(novaActs.SendPowerUpdate, mock.Anything, mock.Anything).Return(record).Once()
	first := activities.PowerUpdate{InstanceUUID: "i", PowerState: node.PowerOff}
	env.RegisterDelayedCallback(func() {
		for _, st := range []string{node.PowerOn, node.PowerOff, node.PowerOn} {
			env.SignalWorkflow(activities.PowerUpdateSignal, activities.PowerUpdate{InstanceUUID: "i", PowerState: st})
		}
	}, time.Second)
	env.ExecuteWorkflow(NovaNotify, activities.NovaNotifyInput{InstanceUUID: "i", Pending: &first})
	var res NovaNotifyResult
	if err := env.GetWorkflowResult(&res); err != nil {
		t.Fatal(err)
	}
	if len(sent) != 2 || sent[0] != node.PowerOff || sent[1] != node.PowerOn {
		t.Fatalf("sent %v, want [power off, power on]", sent)
	}
	if res.Delivered != 2 || res.Replaced != 2 {
		t.Fatalf("result = %+v", res)
	}
}

func TestNovaNotifyRecordsRejectionsAndExpiry(t *testing.T) {
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	registerActivities(env)
	env.OnActivity(novaActs.SendPowerUpdate, mock.Anything, mock.Anything).Return(activities.NovaRejected+": 404", nil).Once()
	env.ExecuteWorkflow(NovaNotify, activities.NovaNotifyInput{InstanceUUID: "i", Pending: &activities.PowerUpdate{InstanceUUID: "i", PowerState: node.PowerOn}})
	var res NovaNotifyResult
	if err := env.GetWorkflowResult(&res); err != nil {
		t.Fatal(err)
	}
	if res.Rejected != 1 || res.Delivered != 0 {
		t.Fatalf("result = %+v", res)
	}
}
