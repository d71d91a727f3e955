// Package nodelock is the per-node lock. Every workflow that drives a
// node's power runs under the workflow ID node-power/<node uuid>, and
// Temporal allows one running workflow per ID: so a sync and a power
// change, or two power changes, never act on one node at once.
package nodelock

import (
	"context"
	"errors"
	"fmt"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/temporal"
)

// Prefix starts the workflow ID of every workflow that drives a node's
// power.
const Prefix = "node-power/"

// ID is the workflow ID that holds a node's lock.
func ID(nodeUUID string) string { return Prefix + nodeUUID }

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

// ErrType is the Temporal application error type of a refusal because the
// lock is held; it is not retryable.
const ErrType = "NodeLocked"

// Error is a refusal because a running workflow holds the node.
type Error struct {
	NodeUUID string
	// Holder is the workflow ID holding the lock.
	Holder string
}

func (e *Error) Error() string {
	return fmt.Sprintf("node %s is locked by running workflow %s: a power change or sync is in progress", e.NodeUUID, e.Holder)
}

// Refusal is the refusal as a workflow returns it: a non-retryable
// application error of type ErrType, with the holder as its detail.
func Refusal(nodeUUID, holder string) error {
	return temporal.NewNonRetryableApplicationError(
		fmt.Sprintf("Node %s is locked by workflow %s: a power change or sync is running; try again when it ends.", nodeUUID, holder),
		ErrType, nil, holder)
}

// Describer is what Held needs of a Temporal client.
type Describer interface {
	DescribeWorkflowExecution(ctx context.Context, workflowID, runID string) (*workflowservice.DescribeWorkflowExecutionResponse, error)
}

// Held reports whether a running workflow holds the node's lock. An error
// means it cannot be told (Temporal unreachable); each caller decides what
// that means for it.
func Held(ctx context.Context, c Describer, nodeUUID string) (bool, error) {
	d, err := c.DescribeWorkflowExecution(ctx, ID(nodeUUID), "")
	var notFound *serviceerror.NotFound
	switch {
	case errors.As(err, &notFound):
		return false, nil
	case err != nil:
		return false, err
	}
	return d.GetWorkflowExecutionInfo().GetStatus() == enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING, nil
}
