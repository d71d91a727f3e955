package control

import (
	"context"
	"errors"
	"fmt"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/metalpower/metalpower/internal/node"
	"github.com/metalpower/metalpower/internal/nodelock"
	"github.com/metalpower/metalpower/internal/route"
	"github.com/metalpower/metalpower/internal/store"
	"github.com/metalpower/metalpower/workflows"
)

// NoWorkerError is the last_error of a node whose change could not start
// (the workflow service unreachable), Ironic's wording for
// NoFreeConductorWorker.
const NoWorkerError = "No free conductor workers available"

// ErrInvalidRequest wraps a request refused before anything started.
var ErrInvalidRequest = errors.New("invalid request")

// PowerRequest is a power change an operator asks for.
type PowerRequest struct {
	Target  string
	Timeout int
	// Via names the caller in the Web UI summary: cli, api.
	Via string
}

// StartPowerChange checks the request against the node, records
// target_power_state and starts PowerChange under the node's lock ID. A
// running change or sync on the node gives a *nodelock.Error.
func StartPowerChange(ctx context.Context, c client.Client, s store.Store, taskQueue string, n *node.Node, req PowerRequest) (client.WorkflowRun, error) {
	switch node.CheckPowerRequest(n, req.Target, node.OptionalTimeout(req.Timeout)) {
	case node.RefusedTimeout:
		return nil, fmt.Errorf("%w: timeout %d: must be a positive number of seconds", ErrInvalidRequest, req.Timeout)
	case node.RefusedTarget:
		return nil, fmt.Errorf("%w: power target %q: use one of %q, %q, %q, %q or %q", ErrInvalidRequest, req.Target,
			node.PowerOn, node.PowerOff, node.Reboot, node.SoftReboot, node.SoftPowerOff)
	case node.RefusedCleaning:
		return nil, fmt.Errorf("%w: can not change power state because node %s is in %s provision state", ErrInvalidRequest, n.Ident(), n.ProvisionState)
	case node.RefusedPowerOff:
		return nil, fmt.Errorf("%w: node %s does not allow power off: disable_power_off is set", ErrInvalidRequest, n.Ident())
	}
	// Mark the change before answering, as Ironic does: a client polling
	// target_power_state until it is null must not see null before the
	// change has begun. A change already marked holds the node.
	// A target left by a change that no longer runs does not block (as
	// Ironic's test_node_power_action_already_being_processed).
	// As Ironic's get_topic_for: refused before anything is marked when
	// no worker serves the node's group.
	queue, err := nodeQueue(ctx, c, taskQueue, n)
	if err != nil {
		return nil, err
	}
	final := node.FinalState(req.Target)
	if n.TargetPowerState != "" {
		if held, _ := nodelock.Held(ctx, c, n.UUID); held {
			return nil, &nodelock.Error{NodeUUID: n.UUID, Holder: nodelock.ID(n.UUID)}
		}
	}
	marked, err := store.Modify(ctx, s, n.UUID, func(m *node.Node) error {
		m.MarkRequest(final)
		return nil
	})
	if err != nil {
		return nil, err
	}
	run, err := startPowerWorkflow(ctx, c, queue, marked, req)
	if err != nil {
		// Nothing started: take the mark back, unless something else
		// changed the node meanwhile. The lock held elsewhere leaves
		// last_error as it was (Ironic refuses before marking); no worker
		// leaves Ironic's trace (power_state_error_handler).
		var locked *nodelock.Error
		lastError := NoWorkerError
		if errors.As(err, &locked) {
			lastError = n.LastError
		}
		store.Modify(context.WithoutCancel(ctx), s, n.UUID, func(m *node.Node) error {
			if m.Version == marked.Version {
				m.TargetPowerState, m.LastError = "", lastError
			}
			return nil
		})
		return nil, err
	}
	return run, nil
}

// nodeQueue is the task queue of n's conductor group, or a
// *route.NoWorkerError when no live worker polls it.
func nodeQueue(ctx context.Context, c client.Client, base string, n *node.Node) (string, error) {
	queue := route.Queue(base, n.ConductorGroup)
	live, err := route.Live(ctx, c, queue)
	if err != nil {
		// The workflow service is unreachable: the start that follows
		// fails and leaves Ironic's trace on the node.
		return queue, nil
	}
	if !live {
		return "", &route.NoWorkerError{Group: n.ConductorGroup, Driver: n.Driver}
	}
	return queue, nil
}

// Ironic's [conductor] node_locked_retry_attempts and _interval.
const (
	lockRetryAttempts = 3
	lockRetryInterval = time.Second
)

func startPowerWorkflow(ctx context.Context, c client.Client, taskQueue string, n *node.Node, req PowerRequest) (client.WorkflowRun, error) {
	in := workflows.PowerChangeInput{Node: n.UUID, Target: req.Target, Timeout: req.Timeout, RequestedVia: req.Via}
	return startLocked(ctx, c, taskQueue, n, req.Target, workflows.Summary(req.Target, n.Ident(), req.Via), workflows.PowerChangeWorkflow, in)
}

// startLocked starts a workflow under n's lock ID on taskQueue, with the
// node's search attributes (target in PowerTarget).
func startLocked(ctx context.Context, c client.Client, taskQueue string, n *node.Node, target, summary, workflow string, in any) (client.WorkflowRun, error) {
	id := nodelock.ID(n.UUID)
	attrs := nodelock.Attributes(n.UUID, n.Name, target)
	opts := client.StartWorkflowOptions{
		ID:                                       id,
		TaskQueue:                                taskQueue,
		WorkflowIDConflictPolicy:                 enumspb.WORKFLOW_ID_CONFLICT_POLICY_FAIL,
		WorkflowIDReusePolicy:                    enumspb.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE,
		WorkflowExecutionErrorWhenAlreadyStarted: true,
		// A worker in this process (the bench, a combined binary) takes the
		// first task at once; elsewhere this is a no-op.
		EnableEagerStart:      true,
		StaticSummary:         summary,
		TypedSearchAttributes: temporal.NewSearchAttributes(attrs...),
	}
	// As Ironic's node_locked_retry_attempts (3, 1 s apart): a change that
	// is finishing (notifying Nova) releases the lock a moment later.
	for attempt := 1; ; attempt++ {
		run, err := c.ExecuteWorkflow(ctx, opts, workflow, in)
		var started *serviceerror.WorkflowExecutionAlreadyStarted
		switch {
		case err == nil:
			return run, nil
		case !errors.As(err, &started):
			return nil, fmt.Errorf("start %s: %w", workflow, err)
		case attempt == lockRetryAttempts:
			return nil, &nodelock.Error{NodeUUID: n.UUID, Holder: id}
		}
		select {
		case <-ctx.Done():
			return nil, &nodelock.Error{NodeUUID: n.UUID, Holder: id}
		case <-time.After(lockRetryInterval):
		}
	}
}
