package dispatch

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/temporal"
)

// Queue is the task queue of conductor group group: base ([temporal]
// task_queue) for the default group (""), so a deployment without groups
// keeps its one queue, and base.group for the others.
func Queue(base, group string) string {
	if group == "" {
		return base
	}
	// Groups are case-insensitive, as Ironic's.
	return base + "." + strings.ToLower(group)
}

// LiveWindow is how recently a worker must have polled a queue to count
// as live: an idle worker's long poll is renewed about every minute, so a
// worker gone for longer than this is taken as gone (Ironic's
// [conductor] heartbeat_timeout is 60 s).
const LiveWindow = 2 * time.Minute

// Pickup bounds how long work for a group may wait for one of the
// group's workers to take it (an activity's schedule-to-start timeout)
// before it is refused with a NoWorkerError: a group whose workers went
// away never leaves a change hanging.
const Pickup = 2 * time.Minute

// NoWorkerType is the Temporal application error type of NoWorkerError.
const NoWorkerType = "NoValidHost"

// NoWorkerError refuses work for a node whose group no live worker
// serves. Its text is Ironic's NoValidHost, with the queue and the fix.
type NoWorkerError struct {
	Group  string
	Driver string
	Queue  string
}

func (e *NoWorkerError) Error() string {
	hint := "Start a worker of the default conductor group (empty [conductor] conductor_group)"
	if e.Group != "" {
		hint = fmt.Sprintf("Start a worker with [conductor] conductor_group = %q", e.Group)
	}
	if e.Queue != "" {
		hint += fmt.Sprintf(": it polls task queue %s", e.Queue)
	}
	return fmt.Sprintf("No valid host was found. Reason: No conductor service registered which supports driver %s for conductor group \"%s\". %s.",
		e.Driver, e.Group, hint)
}

// Application is the refusal as a workflow returns it: non-retryable, of
// type NoWorkerType.
func (e *NoWorkerError) Application() error {
	return temporal.NewNonRetryableApplicationError(e.Error(), NoWorkerType, nil, e.Group, e.Queue)
}

// AsNoWorker finds a NoWorkerError in err, also when it crossed a
// workflow boundary as an application error (Group and Queue are then
// taken from its details; the text is kept in the error itself).
func AsNoWorker(err error) (*NoWorkerError, bool) {
	var nw *NoWorkerError
	if errors.As(err, &nw) {
		return nw, true
	}
	if app := applicationError(err, NoWorkerType); app != nil {
		nw = &NoWorkerError{}
		_ = app.Details(&nw.Group, &nw.Queue)
		return nw, true
	}
	return nil, false
}

// NoPickup reports whether err is a task no worker took within its
// schedule-to-start timeout (Pickup).
func NoPickup(err error) bool {
	var timeout *temporal.TimeoutError
	return errors.As(err, &timeout) && timeout.TimeoutType() == enumspb.TIMEOUT_TYPE_SCHEDULE_TO_START
}

// QueueDescriber is the part of the Temporal client Live needs.
type QueueDescriber interface {
	DescribeTaskQueue(ctx context.Context, taskQueue string, taskQueueType enumspb.TaskQueueType) (*workflowservice.DescribeTaskQueueResponse, error)
}

// Route is the task queue of a node's conductor group, or a
// *NoWorkerError when no live worker polls it. When Temporal cannot be
// asked, the queue is returned: what follows fails on its own, and the
// activities' Pickup bound still holds.
func Route(ctx context.Context, c QueueDescriber, base, group, driver string) (string, error) {
	queue := Queue(base, group)
	if live, err := Live(ctx, c, queue); err == nil && !live {
		return "", &NoWorkerError{Group: group, Driver: driver, Queue: queue}
	}
	return queue, nil
}

// Live reports whether a worker polled queue for workflow tasks within
// LiveWindow. A queue found live stays live until LiveWindow after the
// poll seen, so that answer is kept until then and the power changes an
// API starts cost one Temporal round trip less; a queue not found live is
// asked again every time, so a worker just started counts at once.
func Live(ctx context.Context, c QueueDescriber, queue string) (bool, error) {
	key := liveKey{c, queue}
	if until, ok := liveUntil.Load(key); ok && time.Now().Before(until.(time.Time)) {
		return true, nil
	}
	resp, err := c.DescribeTaskQueue(ctx, queue, enumspb.TASK_QUEUE_TYPE_WORKFLOW)
	if err != nil {
		return false, fmt.Errorf("describe task queue %s: %w", queue, err)
	}
	var last time.Time
	for _, p := range resp.GetPollers() {
		if t := p.GetLastAccessTime(); t != nil && t.AsTime().After(last) {
			last = t.AsTime()
		}
	}
	if until := last.Add(LiveWindow); time.Now().Before(until) {
		liveUntil.Store(key, until)
		return true, nil
	}
	return false, nil
}

type liveKey struct {
	c     QueueDescriber
	queue string
}

// liveUntil holds, per client and queue, when a queue found live stops
// being live unless it is polled again.
var liveUntil sync.Map
