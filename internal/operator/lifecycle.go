package operator

import (
	"context"
	"errors"
	"fmt"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/metalpower/metalpower/activities"
	"github.com/metalpower/metalpower/internal/dispatch"
	"github.com/metalpower/metalpower/internal/node"
	"github.com/metalpower/metalpower/internal/store"
	"github.com/metalpower/metalpower/workflows"
)

// SetMaintenance puts a node in maintenance with an operator's reason.
func SetMaintenance(ctx context.Context, s store.Store, ident, reason string) (*node.Node, error) {
	return store.Modify(ctx, s, ident, func(n *node.Node) error {
		n.SetMaintenance(reason)
		return nil
	})
}

// UnsetMaintenance takes a node out of maintenance.
func UnsetMaintenance(ctx context.Context, s store.Store, ident string) (*node.Node, error) {
	return store.Modify(ctx, s, ident, func(n *node.Node) error {
		n.UnsetMaintenance()
		return nil
	})
}

// ErrBMCRead marks a provision move whose BMC read failed: the node
// records why in last_error (and adopt leaves it in adopt failed).
var ErrBMCRead = errors.New("read the BMC")

// Manage moves a node to manageable: from enroll after reading its power
// state through the BMC (bad credentials or an unreachable BMC leave it in
// enroll with last_error), from available, clean or inspect failed at once.
func Manage(ctx context.Context, w Workers, s store.Store, ident string) (*node.Node, error) {
	return Provision(ctx, w, s, ident, node.ActionManage)
}

// Provide moves a manageable node to available (metalpower does no
// cleaning: that is Ironic's job).
func Provide(ctx context.Context, s store.Store, ident string) (*node.Node, error) {
	return Provision(ctx, Workers{}, s, ident, node.ActionProvide)
}

// Adopt takes a manageable node already running a workload straight to
// active after reading its power state; a failed read puts it in adopt
// failed with last_error.
func Adopt(ctx context.Context, w Workers, s store.Store, ident string) (*node.Node, error) {
	return Provision(ctx, w, s, ident, node.ActionAdopt)
}

// Workers is how operator reaches the workers: the Temporal client and the
// default conductor group's task queue.
type Workers struct {
	Client    client.Client
	TaskQueue string
}

// Provision applies node.Plan's move for action. A move that reads the
// BMC runs as a NodeProvision workflow on a worker of the node's
// conductor group, under the node's lock, and is waited for; the others
// are applied here.
func Provision(ctx context.Context, w Workers, s store.Store, ident, action string) (*node.Node, error) {
	n, err := s.Get(ctx, ident)
	if err != nil {
		return nil, err
	}
	move, err := node.Plan(n, action)
	if err != nil {
		return nil, err
	}
	if !move.ReadBMC {
		return activities.MoveNode(ctx, s, n.UUID, action, "", nil)
	}
	queue, err := dispatch.Route(ctx, w.Client, w.TaskQueue, n.ConductorGroup, n.Driver)
	if err != nil {
		return nil, err
	}
	run, err := startLocked(ctx, w.Client, queue, n, action, fmt.Sprintf("%s %s", action, n.Ident()),
		workflows.NodeProvisionWorkflow, activities.ProvisionInput{Node: n.UUID, Action: action})
	if err != nil {
		return nil, err
	}
	var res activities.ProvisionResult
	if err := run.Get(ctx, &res); err != nil {
		var appErr *temporal.ApplicationError
		if errors.As(err, &appErr) && appErr.Type() == activities.InvalidStateType {
			return nil, fmt.Errorf("%w: %s", node.ErrInvalidState, appErr.Message())
		}
		return nil, fmt.Errorf("%s node %s: %w", action, n.Ident(), err)
	}
	if n, err = s.Get(ctx, n.UUID); err != nil {
		return nil, err
	}
	if res.ReadError != "" {
		return n, fmt.Errorf("%s node %s: %w: %s", action, n.Ident(), ErrBMCRead, res.ReadError)
	}
	return n, nil
}
