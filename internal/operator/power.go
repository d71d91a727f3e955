package operator

import (
	"context"
	"errors"
	"fmt"

	"go.temporal.io/sdk/client"

	"github.com/metalpower/metalpower/internal/dispatch"
	"github.com/metalpower/metalpower/internal/node"
	"github.com/metalpower/metalpower/internal/store"
	"github.com/metalpower/metalpower/workflows"
)

// NoFreeWorkersMessage is the last_error of a node whose change could not
// start (the workflow service unreachable), Ironic's wording for
// NoFreeConductorWorker. A group no live worker serves is another refusal,
// dispatch.NoWorkerError.
const NoFreeWorkersMessage = "No free conductor workers available"

// ErrInvalidRequest wraps a request refused before anything started.
var ErrInvalidRequest = errors.New("invalid request")

// PowerRequest is a power change an operator asks for.
type PowerRequest struct {
	Target  string
	Timeout int
	// Via says who asked (cli, api), for the Web UI summary and the node
	// history.
	Via string
}

// StartPowerChange checks the request against the node, records
// target_power_state and starts PowerChange under the node's lock ID. A
// running change or sync on the node gives a *dispatch.LockedError, a
// group no live worker serves a *dispatch.NoWorkerError.
func StartPowerChange(ctx context.Context, c client.Client, s store.Store, taskQueue string, n *node.Node, req PowerRequest) (client.WorkflowRun, error) {
	switch node.CheckPowerRequest(n, req.Target, node.OptionalTimeout(req.Timeout)) {
	case node.RefusedTimeout:
		return nil, fmt.Errorf("%w: timeout %d: must be a positive number of seconds", ErrInvalidRequest, req.Timeout)
	case node.RefusedTarget:
		return nil, fmt.Errorf("%w: power target %q: use one of %q, %q, %q, %q or %q", ErrInvalidRequest, req.Target,
			node.PowerOn, node.PowerOff, node.Reboot, node.SoftReboot, node.SoftPowerOff)
	case node.RefusedUnsupported:
		return nil, fmt.Errorf("%w: %s", ErrInvalidRequest, node.UnsupportedMessage(n, req.Target))
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
	queue, err := dispatch.Route(ctx, c, taskQueue, n.ConductorGroup, n.Driver)
	if err != nil {
		return nil, err
	}
	final := node.FinalState(req.Target)
	if n.TargetPowerState != "" {
		if held, _ := dispatch.Held(ctx, c, n.UUID); held {
			return nil, dispatch.Locked(dispatch.LockID(n.UUID), "")
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
		lastError := NoFreeWorkersMessage
		if _, locked := dispatch.AsLocked(err); locked {
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

func startPowerWorkflow(ctx context.Context, c client.Client, taskQueue string, n *node.Node, req PowerRequest) (client.WorkflowRun, error) {
	in := workflows.PowerChangeInput{Node: n.UUID, Target: req.Target, Timeout: req.Timeout, Via: req.Via}
	return startLocked(ctx, c, taskQueue, n, req.Target, workflows.Summary(req.Target, n.Ident(), req.Via), workflows.PowerChangeWorkflow, in)
}

// startLocked starts a workflow under n's lock ID on taskQueue, with the
// node's search attributes (target in PowerTarget), retrying while the
// lock is held as Ironic does.
func startLocked(ctx context.Context, c client.Client, taskQueue string, n *node.Node, target, summary, workflow string, in any) (client.WorkflowRun, error) {
	opts := dispatch.StartOptions(dispatch.Work{NodeUUID: n.UUID, NodeName: n.Name, Target: target, Summary: summary, Queue: taskQueue})
	// A worker in this process (the bench, a combined binary) takes the
	// first task at once; elsewhere this is a no-op.
	opts.EnableEagerStart = true
	return dispatch.Start(ctx, c, opts, dispatch.LockRetryAttempts, workflow, in)
}
