package activities

import (
	"context"
	"errors"
	"fmt"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/metalpower/metalpower/internal/metrics"
	"github.com/metalpower/metalpower/internal/nova"
)

// Nova tells Nova of power changes (QueueNovaNotification,
// SendPowerUpdate), and queues the notifications the other activities
// owe it on the same ordered notifier.
type Nova struct {
	// Notifier is nil when notifications cannot be sent; Disabled says why
	// (switched off, or credentials missing), and is recorded on each
	// change.
	Notifier Notifier
	Disabled string
	// Temporal starts and signals the notifier workflows, which run on
	// TaskQueue, this worker's own.
	Temporal  client.Client
	TaskQueue string
	// Metrics records the domain metrics; nil records nothing.
	Metrics *metrics.Metrics
}

// The Nova notifier workflow: one per instance, fed by signal-with-start,
// so a Nova outage holds no node lock and loses no notification.
const (
	NovaNotifyWorkflow = "NovaNotify"
	PowerUpdateSignal  = "power-update"
	novaNotifyPrefix   = "nova-notify/"
)

// NovaNotifyID is the notifier workflow ID of an instance.
func NovaNotifyID(instanceUUID string) string { return novaNotifyPrefix + instanceUUID }

// PowerUpdate is one state to tell Nova about.
type PowerUpdate struct {
	InstanceUUID string    `json:"instance_uuid"`
	NodeUUID     string    `json:"node_uuid"`
	PowerState   string    `json:"power_state"`
	ChangedAt    time.Time `json:"changed_at"`
	// Source is the workflow that made the change.
	Source string `json:"source,omitempty"`
}

// NovaNotifyInput starts a notifier; Pending carries an unsent update
// across continue-as-new.
type NovaNotifyInput struct {
	InstanceUUID string       `json:"instance_uuid"`
	Pending      *PowerUpdate `json:"pending,omitempty"`
}

// Notification outcomes recorded on a power change.
const (
	NovaQueued        = "queued"
	NovaNoInstance    = "no instance"
	NovaDisabledState = "not sent: [nova] send_power_notifications is false"
)

// directTimeout bounds the first, direct delivery attempt.
const directTimeout = 3 * time.Second

// QueueNovaNotification tells Nova about a new power state. When nothing
// is pending for the instance it delivers at once, which costs no
// workflow; if Nova does not answer, or an older update is still being
// delivered (order matters), it hands the update to the instance's durable
// notifier workflow (starting it if needed) and returns. It returns why
// nothing was sent when notifications are off or not configured. A local
// activity.
func (a *Nova) QueueNovaNotification(ctx context.Context, u PowerUpdate) (string, error) {
	return a.queue(ctx, u)
}

// queue is QueueNovaNotification's work, for the activities that
// notify Nova as one of their steps (an activity never calls another).
func (a *Nova) queue(ctx context.Context, u PowerUpdate) (string, error) {
	if a.Notifier == nil {
		a.Metrics.NovaNotification(metrics.NovaNotSent, 1)
		return a.Disabled, nil
	}
	if _, ok := nova.Tag(u.PowerState); !ok {
		a.Metrics.NovaNotification(metrics.NovaNotSent, 1)
		return fmt.Sprintf("not sent: %q is not a state Nova accepts", u.PowerState), nil
	}
	if !a.notifierRunning(ctx, u.InstanceUUID) {
		dctx, cancel := context.WithTimeout(ctx, directTimeout)
		outcome, err := a.deliver(dctx, ctx, u)
		cancel()
		if err == nil {
			return outcome, nil
		}
	}
	_, err := a.Temporal.SignalWithStartWorkflow(ctx, NovaNotifyID(u.InstanceUUID), PowerUpdateSignal, u,
		client.StartWorkflowOptions{
			ID:                       NovaNotifyID(u.InstanceUUID),
			TaskQueue:                a.TaskQueue,
			WorkflowIDConflictPolicy: enumspb.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING,
			StaticSummary:            "notify Nova of instance " + u.InstanceUUID + " power changes",
		},
		NovaNotifyWorkflow, NovaNotifyInput{InstanceUUID: u.InstanceUUID})
	if err != nil {
		return "", temporal.NewApplicationError("queue Nova notification: "+err.Error(), StoreType)
	}
	a.Metrics.NovaNotification(metrics.NovaQueued, 1)
	return NovaQueued, nil
}

// notifierRunning reports whether updates for the instance are still
// being delivered; a newer one must then queue behind them. When unsure,
// it says yes: queueing is always safe.
func (a *Nova) notifierRunning(ctx context.Context, instanceUUID string) bool {
	d, err := a.Temporal.DescribeWorkflowExecution(ctx, NovaNotifyID(instanceUUID), "")
	var notFound *serviceerror.NotFound
	if errors.As(err, &notFound) {
		return false
	}
	return err != nil || d.GetWorkflowExecutionInfo().GetStatus() == enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING
}

// Delivery outcomes of SendPowerUpdate and QueueNovaNotification.
const (
	NovaDelivered = "delivered"
	NovaRejected  = "rejected"
)

// SendPowerUpdate posts one power-update event to Nova. A permanent
// rejection (unknown instance, no host, bad request, forbidden) is a
// result, not an error, so it is recorded and never retried; transient
// failures (Nova down, 5xx, 429) are errors the retry policy retries.
func (a *Nova) SendPowerUpdate(ctx context.Context, u PowerUpdate) (string, error) {
	if a.Notifier == nil {
		a.Metrics.NovaNotification(metrics.NovaNotSent, 1)
		return a.Disabled, nil
	}
	return a.deliver(ctx, ctx, u)
}

// deliver posts one event within ctx (logging through actx). A permanent
// rejection is a result, recorded and logged; only a transient failure is
// an error, which a caller may retry. Delivered notifications record their
// queue age: from the change (ChangedAt) to Nova accepting it.
func (a *Nova) deliver(ctx, actx context.Context, u PowerUpdate) (string, error) {
	err := a.Notifier.PowerUpdate(ctx, u.InstanceUUID, u.PowerState)
	switch {
	case err == nil:
		a.Metrics.NovaDelivered(u.ChangedAt)
		return NovaDelivered, nil
	case nova.IsPermanent(err):
		a.Metrics.NovaNotification(metrics.NovaRejected, 1)
		activity.GetLogger(actx).Warn("Nova rejected a power-update event", "instance_uuid", u.InstanceUUID, "power_state", u.PowerState, "error", err.Error())
		return NovaRejected + ": " + err.Error(), nil
	}
	a.Metrics.NovaDeliveryError()
	return "", temporal.NewApplicationError(err.Error(), NovaUnavailableType)
}
