package dispatch

import (
	"context"
	"errors"
	"fmt"
	"strings"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/temporal"
)

// LockPrefix starts the workflow ID of every workflow that drives a node's
// power.
const LockPrefix = "node-power/"

// LockID is the workflow ID that holds a node's lock: Temporal allows one
// running workflow per ID, so a sync and a power change, or two power
// changes, never act on one node at once.
func LockID(nodeUUID string) string { return LockPrefix + nodeUUID }

// Search attributes set on every workflow under a node's lock, for
// filtering in the Web UI.
var (
	NodeUUIDKey    = temporal.NewSearchAttributeKeyKeyword("NodeUUID")
	NodeNameKey    = temporal.NewSearchAttributeKeyKeyword("NodeName")
	PowerTargetKey = temporal.NewSearchAttributeKeyKeyword("PowerTarget")
)

// Attributes are the search attributes of a workflow acting on a node
// (target: a power target, or "sync").
func Attributes(nodeUUID, nodeName, target string) []temporal.SearchAttributeUpdate {
	updates := []temporal.SearchAttributeUpdate{NodeUUIDKey.ValueSet(nodeUUID), PowerTargetKey.ValueSet(target)}
	if nodeName != "" {
		updates = append(updates, NodeNameKey.ValueSet(nodeName))
	}
	return updates
}

// LockedType is the Temporal application error type of LockedError; it is
// not retryable.
const LockedType = "NodeLocked"

// LockedError is the one refusal because a running workflow holds the
// node's lock (Ironic's NodeLocked, HTTP 409), however the work was asked
// for: the API, the CLI, a workflow started by hand, a sync pass.
type LockedError struct {
	NodeUUID string
	// Holder is the workflow ID holding the lock; RunID its run, when known.
	Holder string
	RunID  string
}

// Locked is the refusal naming the lock's holder, workflow ID holder.
func Locked(holder, runID string) *LockedError {
	return &LockedError{NodeUUID: strings.TrimPrefix(holder, LockPrefix), Holder: holder, RunID: runID}
}

func (e *LockedError) Error() string {
	return fmt.Sprintf("Node %s is locked by host metalpower, please retry after the current operation is completed. (workflow %s)", e.NodeUUID, e.Holder)
}

// Application is the refusal as a workflow returns it: a non-retryable
// application error of type LockedType, with the holder as its detail.
func (e *LockedError) Application() error {
	return temporal.NewNonRetryableApplicationError(e.Error(), LockedType, nil, e.Holder)
}

// AsLocked finds a LockedError in err, also when it crossed a workflow
// boundary as an application error.
func AsLocked(err error) (*LockedError, bool) {
	var locked *LockedError
	if errors.As(err, &locked) {
		return locked, true
	}
	if app := applicationError(err, LockedType); app != nil {
		var holder string
		_ = app.Details(&holder)
		return Locked(holder, ""), true
	}
	return nil, false
}

// WorkflowDescriber is what Held needs of a Temporal client.
type WorkflowDescriber interface {
	DescribeWorkflowExecution(ctx context.Context, workflowID, runID string) (*workflowservice.DescribeWorkflowExecutionResponse, error)
}

// Held reports whether a running workflow holds the node's lock. An error
// means it cannot be told (Temporal unreachable); each caller decides what
// that means for it.
func Held(ctx context.Context, c WorkflowDescriber, nodeUUID string) (bool, error) {
	d, err := c.DescribeWorkflowExecution(ctx, LockID(nodeUUID), "")
	var notFound *serviceerror.NotFound
	switch {
	case errors.As(err, &notFound):
		return false, nil
	case err != nil:
		return false, err
	}
	return d.GetWorkflowExecutionInfo().GetStatus() == enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING, nil
}

// applicationError is the application error of type typ in err's chain,
// however deeply a child workflow or activity failure wraps it; nil if
// none.
func applicationError(err error, typ string) *temporal.ApplicationError {
	for err != nil {
		var app *temporal.ApplicationError
		if !errors.As(err, &app) {
			return nil
		}
		if app.Type() == typ {
			return app
		}
		err = app.Unwrap()
	}
	return nil
}
