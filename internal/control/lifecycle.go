package control

import (
	"context"
	"fmt"

	"github.com/metalpower/metalpower/activities"
	"github.com/metalpower/metalpower/internal/node"
	"github.com/metalpower/metalpower/internal/store"
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

// Manage moves a node to manageable: from enroll after reading its power
// state through the BMC (bad credentials or an unreachable BMC leave it in
// enroll with last_error), from available, clean or inspect failed at once.
func Manage(ctx context.Context, s store.Store, bmcs activities.BMCs, ident string) (*node.Node, error) {
	return Provision(ctx, s, bmcs, ident, node.ActionManage)
}

// Provide moves a manageable node to available (metalpower does no
// cleaning: that is Ironic's job).
func Provide(ctx context.Context, s store.Store, ident string) (*node.Node, error) {
	return Provision(ctx, s, nil, ident, node.ActionProvide)
}

// Adopt takes a manageable node already running a workload straight to
// active after reading its power state; a failed read puts it in adopt
// failed with last_error.
func Adopt(ctx context.Context, s store.Store, bmcs activities.BMCs, ident string) (*node.Node, error) {
	return Provision(ctx, s, bmcs, ident, node.ActionAdopt)
}

// Provision applies node.Plan's move for action; the BMC is read outside
// the store's transaction and the move checked again inside it.
func Provision(ctx context.Context, s store.Store, bmcs activities.BMCs, ident, action string) (*node.Node, error) {
	n, err := s.Get(ctx, ident)
	if err != nil {
		return nil, err
	}
	move, err := node.Plan(n, action)
	if err != nil {
		return nil, err
	}
	var power string
	var readErr error
	if move.ReadBMC {
		power, readErr = activities.ReadPower(ctx, bmcs, n)
	}
	n, err = store.Modify(ctx, s, n.UUID, func(n *node.Node) error {
		again, err := node.Plan(n, action)
		if err != nil {
			return err
		}
		again.Apply(n, power, readErr)
		return nil
	})
	if err != nil {
		return nil, err
	}
	if readErr != nil {
		return n, fmt.Errorf("%s node %s: read the BMC: %w", action, n.Ident(), readErr)
	}
	return n, nil
}
