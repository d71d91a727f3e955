package dispatch

import (
	"context"
	"errors"
	"fmt"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"
)

// Work is one workflow to run under a node's lock.
type Work struct {
	NodeUUID string
	NodeName string
	// Target is what the work does to the node (a power target, a
	// provision action, "sync"), shown in the PowerTarget search attribute.
	Target  string
	Summary string
	// Queue is the task queue the workflow runs on.
	Queue string
}

// StartOptions start w under the node's lock ID: a running workflow under
// that ID refuses the start, a closed one does not.
func StartOptions(w Work) client.StartWorkflowOptions {
	return client.StartWorkflowOptions{
		ID:                                       LockID(w.NodeUUID),
		TaskQueue:                                w.Queue,
		WorkflowIDConflictPolicy:                 enumspb.WORKFLOW_ID_CONFLICT_POLICY_FAIL,
		WorkflowIDReusePolicy:                    enumspb.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE,
		WorkflowExecutionErrorWhenAlreadyStarted: true,
		StaticSummary:                            w.Summary,
		TypedSearchAttributes:                    temporal.NewSearchAttributes(Attributes(w.NodeUUID, w.NodeName, w.Target)...),
	}
}

// ChildOptions run w as a child workflow under the node's lock ID.
func ChildOptions(w Work, parentClose enumspb.ParentClosePolicy) workflow.ChildWorkflowOptions {
	return workflow.ChildWorkflowOptions{
		WorkflowID:            LockID(w.NodeUUID),
		TaskQueue:             w.Queue,
		StaticSummary:         w.Summary,
		ParentClosePolicy:     parentClose,
		WorkflowIDReusePolicy: enumspb.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE,
		TypedSearchAttributes: temporal.NewSearchAttributes(Attributes(w.NodeUUID, w.NodeName, w.Target)...),
	}
}

// Starter is the part of the Temporal client Start needs.
type Starter interface {
	ExecuteWorkflow(ctx context.Context, options client.StartWorkflowOptions, workflow any, args ...any) (client.WorkflowRun, error)
}

// Ironic's [conductor] node_locked_retry_attempts and _interval.
const (
	LockRetryAttempts = 3
	lockRetryInterval = time.Second
)

// Start starts workflow under opts (StartOptions), trying attempts times,
// a second apart, while the lock is held, as Ironic's
// node_locked_retry_attempts: a change that is finishing releases the
// lock a moment later. A lock still held gives a *LockedError naming the
// holder's run.
func Start(ctx context.Context, c Starter, opts client.StartWorkflowOptions, attempts int, workflow string, in any) (client.WorkflowRun, error) {
	for attempt := 1; ; attempt++ {
		run, err := c.ExecuteWorkflow(ctx, opts, workflow, in)
		var started *serviceerror.WorkflowExecutionAlreadyStarted
		switch {
		case err == nil:
			return run, nil
		case !errors.As(err, &started):
			return nil, fmt.Errorf("start %s: %w", workflow, err)
		case attempt >= attempts:
			return nil, Locked(opts.ID, started.RunId)
		}
		select {
		case <-ctx.Done():
			return nil, Locked(opts.ID, started.RunId)
		case <-time.After(lockRetryInterval):
		}
	}
}
