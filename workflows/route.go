package workflows

import (
	"go.temporal.io/sdk/workflow"

	"github.com/metalpower/metalpower/activities"
	"github.com/metalpower/metalpower/internal/dispatch"
)

// A workflow may run on any worker's queue (tctl, the temporal CLI and
// schedules start it wherever they are told); every activity that talks
// to a node's BMC runs on the queue of the node's conductor group. Steps
// that touch only the node store or Nova run where the workflow runs.
// docs/design.md says why.

// onGroup runs an activity that talks to the plan's BMC on the task queue
// of the node's conductor group, whichever queue this workflow runs on,
// waiting at most dispatch.Pickup for one of its workers to take it.
// Plans made before routing carry no queue: the workflow's own, as then.
func onGroup(ctx workflow.Context, plan activities.PowerPlan, opts workflow.ActivityOptions) workflow.Context {
	if plan.Queue != "" {
		opts.TaskQueue, opts.ScheduleToStartTimeout = plan.Queue, dispatch.Pickup
	}
	return workflow.WithActivityOptions(ctx, opts)
}

// noWorker is the plan's NoValidHost refusal: no live worker serves the
// node's conductor group.
func noWorker(plan activities.PowerPlan) error {
	return (&dispatch.NoWorkerError{Group: plan.Group, Driver: plan.Driver, Queue: plan.Queue}).Application()
}

// unpicked turns a BMC activity that no worker of the group took within
// dispatch.Pickup into the plan's NoValidHost refusal.
func unpicked(plan activities.PowerPlan, err error) error {
	if dispatch.NoPickup(err) {
		return noWorker(plan)
	}
	return err
}

// onNodeGroup finishes an activity that reaches a node's BMC and ran
// where the workflow runs (a local activity, or one started before the
// node's group was known): when err is the worker's refusal because the
// node belongs to another conductor group, the activity runs once more
// with opts on that group's queue, waiting at most dispatch.Pickup for
// one of its workers. Work routed right costs nothing more.
func onNodeGroup(ctx workflow.Context, err error, opts workflow.ActivityOptions, result any, activity any, args ...any) error {
	m, ok := activities.AsMisrouted(err)
	if !ok {
		return err
	}
	opts.TaskQueue, opts.ScheduleToStartTimeout = m.Queue, dispatch.Pickup
	err = workflow.ExecuteActivity(workflow.WithActivityOptions(ctx, opts), activity, args...).Get(ctx, result)
	if dispatch.NoPickup(err) {
		return (&dispatch.NoWorkerError{Group: m.Group, Driver: m.Driver, Queue: m.Queue}).Application()
	}
	return err
}
