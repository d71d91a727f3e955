// Package workflows holds metalpower's deterministic orchestration: IDs,
// order, retries and timers. Side effects live in package activities.
package workflows

import (
	"errors"
	"fmt"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/metalpower/metalpower/activities"
	"github.com/metalpower/metalpower/internal/dispatch"
	"github.com/metalpower/metalpower/internal/node"
)

// PowerChangeWorkflow is the registered type name.
const PowerChangeWorkflow = "PowerChange"

// Search attributes metalpower sets, for filtering in the Web UI.
var (
	NodeUUIDKey    = dispatch.NodeUUIDKey
	NodeNameKey    = dispatch.NodeNameKey
	PowerTargetKey = dispatch.PowerTargetKey
)

// SearchAttributes names them, for creating them at worker start.
var SearchAttributes = []string{NodeUUIDKey.GetName(), NodeNameKey.GetName(), PowerTargetKey.GetName()}

// PowerChangeInput is the workflow input, as an operator types it:
// {"node": "r1-n07", "target": "power off", "timeout": 120}.
type PowerChangeInput struct {
	Node    string `json:"node"`
	Target  string `json:"target"`
	Timeout int    `json:"timeout,omitempty"`
	// Via says who asked (api, cli, sync); shown in summaries. Its JSON
	// name is the one histories recorded.
	Via string `json:"requested_via,omitempty"`
}

// PowerChangeResult is what the change did.
type PowerChangeResult struct {
	NodeUUID   string `json:"node_uuid"`
	NodeName   string `json:"node_name,omitempty"`
	Target     string `json:"target"`
	PowerState string `json:"power_state"`
	// Skipped: the hardware already was in the requested state.
	Skipped bool `json:"skipped,omitempty"`
	// Nova says what became of the Nova notification.
	Nova string `json:"nova"`
	// LockWorkflowID is the workflow that held the lock, when this one
	// was started under another ID and delegated to it.
	LockWorkflowID string `json:"lock_workflow_id,omitempty"`
}

// Status is the answer to the "status" query.
type Status struct {
	Step       string `json:"step"`
	NodeUUID   string `json:"node_uuid,omitempty"`
	Target     string `json:"target"`
	PowerState string `json:"power_state,omitempty"`
	Error      string `json:"error,omitempty"`
}

// Summary is the one-line description shown in the Web UI and CLI.
func Summary(target, node, via string) string {
	if via == "" {
		via = "temporal"
	}
	return fmt.Sprintf("%s %s (requested via %s)", target, node, via)
}

// PowerChange changes one node's power as Ironic's change_node_power_state
// and node_power_action: validate and mark, set (or skip when already
// there), verify, persist, then queue the Nova notification. It holds the
// node's lock by running under LockID; started under any other ID (tctl,
// a name) it runs the change as a child under the lock ID.
func PowerChange(ctx workflow.Context, in PowerChangeInput) (PowerChangeResult, error) {
	status := &Status{Step: "validating", Target: in.Target}
	if err := workflow.SetQueryHandler(ctx, "status", func() (Status, error) { return *status, nil }); err != nil {
		return PowerChangeResult{}, err
	}
	info := workflow.GetInfo(ctx)
	holdsLock := info.WorkflowExecution.ID == dispatch.LockID(in.Node)

	plan, err := prepare(ctx, activities.PrepareInput{Node: in.Node, Target: in.Target, Timeout: in.Timeout, Mark: holdsLock, Via: in.Via})
	if err != nil {
		status.Step, status.Error = "failed", err.Error()
		if holdsLock {
			// The starter recorded the target before starting us.
			dctx, _ := workflow.NewDisconnectedContext(ctx)
			if aerr := workflow.ExecuteLocalActivity(localCtx(dctx), powerActs.AbortPowerChange, in.Node).Get(dctx, nil); aerr != nil {
				return PowerChangeResult{}, errors.Join(err, aerr)
			}
		}
		return PowerChangeResult{}, err
	}
	status.NodeUUID = plan.NodeUUID
	if !holdsLock && info.WorkflowExecution.ID != dispatch.LockID(plan.NodeUUID) {
		status.Step = "waiting for " + dispatch.LockID(plan.NodeUUID)
		return runUnderLock(ctx, in, plan)
	}
	if !holdsLock {
		// Started under the lock ID with a node name: mark now.
		if err := workflow.ExecuteLocalActivity(localCtx(ctx), powerActs.MarkPowerChange, plan).Get(ctx, nil); err != nil {
			return PowerChangeResult{}, err
		}
	}
	upsertSearchAttributes(ctx, plan)
	return change(ctx, plan, status, false)
}

func prepare(ctx workflow.Context, in activities.PrepareInput) (activities.PowerPlan, error) {
	var plan activities.PowerPlan
	err := workflow.ExecuteLocalActivity(localCtx(ctx), powerActs.PreparePowerChange, in).Get(ctx, &plan)
	return plan, err
}

// change runs the steps once the lock is held.
//
// With local, the BMC action runs as a local activity: the sync forces
// many nodes at once, and a local activity saves each a server round
// trip. A power change an operator asked for keeps it a regular activity,
// its own step in the Web UI.
func change(ctx workflow.Context, plan activities.PowerPlan, status *Status, local bool) (PowerChangeResult, error) {
	res := PowerChangeResult{NodeUUID: plan.NodeUUID, NodeName: plan.NodeName, Target: plan.Target, Nova: activities.NovaNoInstance}
	name := plan.NodeName
	if name == "" {
		name = plan.NodeUUID
	}

	// However the workflow ends, the node must not keep a stale
	// target_power_state: the outcome is written from a context that
	// survives cancellation.
	finish := func(in activities.FinishInput) (activities.FinishResult, error) {
		dctx, _ := workflow.NewDisconnectedContext(ctx)
		var out activities.FinishResult
		err := workflow.ExecuteLocalActivity(localCtx(dctx), powerActs.FinishPowerChange, in).Get(dctx, &out)
		return out, err
	}
	fail := func(err error) (PowerChangeResult, error) {
		status.Step, status.Error = "failed", err.Error()
		if _, ferr := finish(activities.FinishInput{NodeUUID: plan.NodeUUID, Target: plan.Target, Final: plan.Final, Failure: failureMessage(err)}); ferr != nil {
			return res, errors.Join(err, ferr)
		}
		return res, err
	}

	if plan.Unserved {
		return fail(noWorker(plan))
	}
	status.Step = "setting power"
	var set activities.SetPowerResult
	if err := setPower(ctx, plan, name, local, &set); err != nil {
		return fail(err)
	}

	finishIn := activities.FinishInput{NodeUUID: plan.NodeUUID, Target: plan.Target, Final: plan.Final, Via: plan.Via}
	if set.Skipped {
		// Ironic: record the corrected state. Nova hears of it only when
		// the record changed (FinishPowerChange queues that itself).
		finishIn.Skipped, finishIn.HardwareState = true, set.HardwareState
		out, err := finish(finishIn)
		if err != nil {
			return res, err
		}
		status.Step, status.PowerState = "done (already "+out.PowerState+")", out.PowerState
		res.PowerState, res.Skipped, res.Nova = out.PowerState, true, "not sent: no change"
		if out.Nova != "" {
			res.Nova = out.Nova
		}
		return res, nil
	}

	if !set.Verified {
		if err := verify(ctx, plan, name, status); err != nil {
			return fail(err)
		}
	}

	out, err := finish(finishIn)
	if err != nil {
		return res, err
	}
	res.PowerState = out.PowerState
	status.PowerState = out.PowerState

	if out.InstanceUUID != "" {
		status.Step = "queueing Nova notification"
		u := activities.PowerUpdate{InstanceUUID: out.InstanceUUID, NodeUUID: plan.NodeUUID, PowerState: plan.Final,
			ChangedAt: workflow.Now(ctx), Source: workflow.GetInfo(ctx).WorkflowExecution.ID}
		if err := workflow.ExecuteLocalActivity(localCtx(ctx), novaActs.QueueNovaNotification, u).Get(ctx, &res.Nova); err != nil {
			// The power change itself succeeded; the notification is lost
			// only if queueing keeps failing, and the result says so.
			res.Nova = "not sent: " + err.Error()
		}
	}
	status.Step = "done"
	return res, nil
}

// setPower sends the action, as an activity on a worker of the node's
// conductor group, or as a local activity when this worker is one.
func setPower(ctx workflow.Context, plan activities.PowerPlan, name string, local bool, set *activities.SetPowerResult) error {
	attempt, total := setTimeouts(plan)
	// Transient BMC errors are retried for about [ipmi] command_retry_timeout
	// (counted in attempts); the schedule-to-close bound also allows for a
	// busy task queue, so a burst of changes waits rather than fails.
	retry := &temporal.RetryPolicy{
		InitialInterval: time.Second, BackoffCoefficient: 2, MaximumInterval: 10 * time.Second,
		MaximumAttempts:        int32(max(2, total/attempt+1)),
		NonRetryableErrorTypes: activities.NonRetryable,
	}
	total += queueAllowance
	opts := workflow.ActivityOptions{
		Summary:             fmt.Sprintf("%s %s via %s %s", plan.Target, name, plan.Driver, plan.BMC),
		StartToCloseTimeout: attempt, ScheduleToCloseTimeout: total, RetryPolicy: retry,
	}
	in := activities.SetPowerInput{NodeUUID: plan.NodeUUID, Target: plan.Target}
	var err error
	if local && (plan.Queue == "" || plan.Queue == workflow.GetInfo(ctx).TaskQueueName) {
		lctx := workflow.WithLocalActivityOptions(ctx, workflow.LocalActivityOptions{
			Summary: opts.Summary, StartToCloseTimeout: attempt, ScheduleToCloseTimeout: total, RetryPolicy: retry,
		})
		err = workflow.ExecuteLocalActivity(lctx, powerActs.SetPowerState, in).Get(ctx, set)
	} else {
		err = workflow.ExecuteActivity(onGroup(ctx, plan, opts), powerActs.SetPowerState, in).Get(ctx, set)
	}
	return onNodeGroup(ctx, unpicked(plan, err), opts, set, powerActs.SetPowerState, in)
}

// verify polls the hardware until it reaches the plan's final state or the
// plan's timeout passes.
func verify(ctx workflow.Context, plan activities.PowerPlan, name string, status *Status) error {
	status.Step = "verifying " + plan.Final
	deadline := workflow.Now(ctx).Add(time.Duration(plan.Timeout) * time.Second)
	// The action was sent: whatever else fails (the node store while the
	// activity loads the node, the worker), polling is retried until the
	// deadline has passed, when an attempt reads once more and ends with
	// the state read or a non-retryable timeout. Retrying only a few times
	// would fail a change the hardware made because the store was away
	// for a minute.
	opts := workflow.ActivityOptions{
		Summary:                fmt.Sprintf("wait until %s is %s (timeout %ds)", name, plan.Final, plan.Timeout),
		StartToCloseTimeout:    time.Duration(plan.Timeout)*time.Second + 30*time.Second,
		ScheduleToCloseTimeout: time.Duration(plan.Timeout)*time.Second + OutageHorizon,
		HeartbeatTimeout:       15 * time.Second,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval: time.Second, BackoffCoefficient: 2, MaximumInterval: 10 * time.Second,
			NonRetryableErrorTypes: activities.NonRetryable,
		},
	}
	in := activities.VerifyInput{NodeUUID: plan.NodeUUID, Want: plan.Final, Deadline: deadline}
	err := workflow.ExecuteActivity(onGroup(ctx, plan, opts), powerActs.VerifyPowerState, in).Get(ctx, nil)
	return onNodeGroup(ctx, unpicked(plan, err), opts, nil, powerActs.VerifyPowerState, in)
}

// runUnderLock runs the change as a child holding the node's lock, for a
// workflow started under another ID. A running holder means the node is
// locked: refused, naming the holder.
func runUnderLock(ctx workflow.Context, in PowerChangeInput, plan activities.PowerPlan) (PowerChangeResult, error) {
	lock := dispatch.LockID(plan.NodeUUID)
	name := plan.NodeName
	if name == "" {
		name = plan.NodeUUID
	}
	// The child runs on this workflow's queue: its BMC activities go to
	// the node's group (onGroup) wherever it runs.
	cctx := workflow.WithChildOptions(ctx, dispatch.ChildOptions(dispatch.Work{
		NodeUUID: plan.NodeUUID, NodeName: plan.NodeName, Target: plan.Target, Summary: Summary(plan.Target, name, in.Via),
	}, enumspb.PARENT_CLOSE_POLICY_REQUEST_CANCEL))
	child := workflow.ExecuteChildWorkflow(cctx, PowerChangeWorkflow, PowerChangeInput{
		Node: plan.NodeUUID, Target: in.Target, Timeout: in.Timeout, Via: in.Via,
	})
	var res PowerChangeResult
	if err := child.GetChildWorkflowExecution().Get(ctx, nil); err != nil {
		var started *temporal.ChildWorkflowExecutionAlreadyStartedError
		if errors.As(err, &started) {
			return res, dispatch.Locked(lock, "").Application()
		}
		return res, err
	}
	if err := child.Get(ctx, &res); err != nil {
		return res, err
	}
	res.LockWorkflowID = lock
	return res, nil
}

// upsertSearchAttributes sets the attributes a starter could not (tctl
// knows no node UUID); when they are already there it costs no event.
func upsertSearchAttributes(ctx workflow.Context, p activities.PowerPlan) {
	current := workflow.GetTypedSearchAttributes(ctx)
	if v, ok := current.GetKeyword(NodeUUIDKey); ok && v == p.NodeUUID {
		return
	}
	updates := dispatch.Attributes(p.NodeUUID, p.NodeName, p.Target)
	// Best effort: a namespace without the attributes must not stop a
	// power change.
	if err := workflow.UpsertTypedSearchAttributes(ctx, updates...); err != nil {
		workflow.GetLogger(ctx).Warn("cannot set search attributes", "error", err)
	}
}

// queueAllowance is how long a power action may wait for a free worker.
const queueAllowance = 10 * time.Minute

// setTimeouts bounds SetPowerState: transient BMC errors are retried for
// up to the plan's CommandRetryTimeout ([ipmi] command_retry_timeout, as
// Ironic retries one IPMI command), in attempts of a third of it (2-20 s).
// Reboots wait inside the driver for the server to go off, so their
// attempts also get the change's timeout.
func setTimeouts(p activities.PowerPlan) (attempt, total time.Duration) {
	total = time.Duration(p.CommandRetryTimeout) * time.Second
	attempt = min(max(total/3, 2*time.Second), 20*time.Second)
	if p.Target == node.Reboot || p.Target == node.SoftReboot {
		attempt += time.Duration(p.Timeout) * time.Second
		total += time.Duration(p.Timeout) * time.Second
	}
	return attempt, max(total, attempt)
}

// OutageHorizon is how long the steps that record a change in the node
// store (and queue its Nova notification) keep retrying while the store
// or Temporal is unreachable. Giving up earlier would end a change with
// its target_power_state left set and its outcome unrecorded: the node
// would then be left out of every sync pass. A database failover or a
// Temporal upgrade takes minutes, not an hour.
const OutageHorizon = time.Hour

// localCtx runs the local activities that read and write the node store:
// permanent errors fail at once, anything else (the store or Temporal
// unreachable) is retried for up to OutageHorizon. Retries stay in the
// worker (at most 5 s apart, the workflow task heartbeating); a retry
// policy is not part of the history, so this is replay-safe.
func localCtx(ctx workflow.Context) workflow.Context {
	return workflow.WithLocalActivityOptions(ctx, workflow.LocalActivityOptions{
		StartToCloseTimeout:    10 * time.Second,
		ScheduleToCloseTimeout: OutageHorizon,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval: 200 * time.Millisecond, BackoffCoefficient: 2, MaximumInterval: 5 * time.Second,
			NonRetryableErrorTypes: activities.NonRetryable,
		},
	})
}

// failureMessage is the error text recorded as last_error: the
// application error's own message, without Temporal's wrapping.
func failureMessage(err error) string {
	var appErr *temporal.ApplicationError
	if errors.As(err, &appErr) {
		return appErr.Message()
	}
	var timeoutErr *temporal.TimeoutError
	if errors.As(err, &timeoutErr) {
		return "the BMC did not answer in time"
	}
	var canceled *temporal.CanceledError
	if errors.As(err, &canceled) {
		return "the power operation was aborted"
	}
	return err.Error()
}
