// Package route says which task queue serves a node and whether any worker
// polls it. A conductor group is a BMC network segment (Ironic's
// conductor_group): only the workers of a node's group may talk to its
// BMC, so every workflow that does runs on the group's own task queue.
package route

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/workflowservice/v1"
)

// Queue is the task queue of conductor group group: base for the default
// group (""), so a deployment without groups keeps its one queue, and
// base.group for the others.
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

// NoWorkerError refuses work for a node whose group no live worker
// serves. Its text is Ironic's NoValidHost.
type NoWorkerError struct {
	Group  string
	Driver string
}

func (e *NoWorkerError) Error() string {
	hint := "Start a worker of the default conductor group (empty [conductor] conductor_group)."
	if e.Group != "" {
		hint = fmt.Sprintf("Start a worker with [conductor] conductor_group = %q.", e.Group)
	}
	return fmt.Sprintf("No valid host was found. Reason: No conductor service registered which supports driver %s for conductor group \"%s\". %s",
		e.Driver, e.Group, hint)
}

// Describer is the part of the Temporal client Live needs.
type Describer interface {
	DescribeTaskQueue(ctx context.Context, taskQueue string, taskQueueType enumspb.TaskQueueType) (*workflowservice.DescribeTaskQueueResponse, error)
}

// Live reports whether a worker polled queue for workflow tasks within
// LiveWindow. A queue found live stays live until LiveWindow after the
// poll seen, so that answer is kept until then and the power changes an
// API starts cost one Temporal round trip less; a queue not found live is
// asked again every time, so a worker just started counts at once.
func Live(ctx context.Context, c Describer, queue string) (bool, error) {
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
	c     Describer
	queue string
}

// liveUntil holds, per client and queue, when a queue found live stops
// being live unless it is polled again.
var liveUntil sync.Map
