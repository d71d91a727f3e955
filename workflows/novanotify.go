package workflows

import (
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/metalpower/metalpower/activities"
)

// NovaNotifyResult counts what a notifier delivered before it ended.
type NovaNotifyResult struct {
	Delivered int    `json:"delivered"`
	Rejected  int    `json:"rejected"`
	Expired   int    `json:"expired"`
	Replaced  int    `json:"replaced"`
	Last      string `json:"last,omitempty"`
}

// NovaRetryHorizon is how long one update is retried while Nova is
// unreachable before it is given up (recorded, logged).
const NovaRetryHorizon = time.Hour

// sendsBeforeContinue bounds one run's history.
const sendsBeforeContinue = 200

// NovaNotify delivers power-update events for one instance, in order.
// Power changes signal it and return at once, so a Nova outage never holds
// a node's lock. Updates that queue up while one is being delivered
// collapse into the newest: Nova only needs the latest state. It ends when
// nothing is pending; the next change starts it again.
func NovaNotify(ctx workflow.Context, in activities.NovaNotifyInput) (NovaNotifyResult, error) {
	var res NovaNotifyResult
	updates := workflow.GetSignalChannel(ctx, activities.PowerUpdateSignal)
	pending := in.Pending
	if err := workflow.SetQueryHandler(ctx, "status", func() (NovaNotifyResult, error) { return res, nil }); err != nil {
		return res, err
	}
	// drain keeps only the newest of the updates already received.
	drain := func() {
		var u activities.PowerUpdate
		for updates.ReceiveAsync(&u) {
			if pending != nil {
				res.Replaced++
			}
			latest := u
			pending = &latest
		}
	}
	// A local activity: one workflow task per delivery instead of three
	// round trips, which matters when a sync corrects many nodes at once.
	// Retries while Nova is down stay in the worker, with the workflow task
	// heartbeating; a worker that dies is replaced and starts over.
	actx := workflow.WithLocalActivityOptions(ctx, workflow.LocalActivityOptions{
		StartToCloseTimeout:    time.Minute,
		ScheduleToCloseTimeout: NovaRetryHorizon,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval: time.Second, BackoffCoefficient: 2, MaximumInterval: 30 * time.Second,
		},
	})
	for sends := 0; ; sends++ {
		drain()
		if pending == nil {
			return res, nil
		}
		if sends == sendsBeforeContinue {
			return res, workflow.NewContinueAsNewError(ctx, activities.NovaNotifyWorkflow,
				activities.NovaNotifyInput{InstanceUUID: in.InstanceUUID, Pending: pending})
		}
		current := *pending
		pending = nil
		var outcome string
		if err := workflow.ExecuteLocalActivity(actx, novaActs.SendPowerUpdate, current).Get(ctx, &outcome); err != nil {
			workflow.GetLogger(ctx).Error("giving up on a Nova notification", "instance_uuid", current.InstanceUUID,
				"power_state", current.PowerState, "error", err)
			res.Expired++
			res.Last = "expired: " + err.Error()
			continue
		}
		res.Last = outcome
		if outcome == activities.NovaDelivered {
			res.Delivered++
		} else {
			res.Rejected++
		}
	}
}
