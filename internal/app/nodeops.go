package app

import (
	"context"
	"fmt"

	"github.com/metalpower/metalpower/activities"
	"github.com/metalpower/metalpower/internal/node"
	"github.com/metalpower/metalpower/internal/store"
)

// SetMaintenance puts a node in maintenance with an operator's reason
// (no fault: recovery never clears it).
func SetMaintenance(ctx context.Context, s store.Store, ident, reason string) (*node.Node, error) {
	return store.Modify(ctx, s, ident, func(n *node.Node) error {
		n.Maintenance, n.MaintenanceReason, n.Fault = true, reason, ""
		return nil
	})
}

// UnsetMaintenance takes a node out of maintenance, clearing the reason
// and any fault, as Ironic's DELETE .../maintenance.
func UnsetMaintenance(ctx context.Context, s store.Store, ident string) (*node.Node, error) {
	return store.Modify(ctx, s, ident, func(n *node.Node) error {
		n.Maintenance, n.MaintenanceReason, n.Fault = false, "", ""
		return nil
	})
}

// Provide moves a manageable node to available (metalpower does no
// cleaning: that is Ironic's job).
func Provide(ctx context.Context, s store.Store, ident string) (*node.Node, error) {
	return transition(ctx, s, ident, "provide", node.Manageable, node.Available)
}

// Adopt takes a manageable node already running a workload straight to
// active, after reading its power state through the BMC, as Ironic's
// adoption does; a failed read puts it in adopt failed with last_error.
func Adopt(ctx context.Context, s store.Store, bmcs activities.BMCs, ident string) (*node.Node, error) {
	n, err := s.Get(ctx, ident)
	if err != nil {
		return nil, err
	}
	if n.ProvisionState != node.Manageable && n.ProvisionState != node.AdoptFailed {
		return nil, invalidTransition("adopt", n)
	}
	state, readErr := activities.ReadPower(ctx, bmcs, n)
	n, err = store.Modify(ctx, s, n.UUID, func(n *node.Node) error {
		if readErr != nil {
			n.ProvisionState, n.LastError = node.AdoptFailed, "Failed to adopt node: "+readErr.Error()
			return nil
		}
		n.ProvisionState, n.PowerState, n.LastError = node.Active, state, ""
		return nil
	})
	if err != nil {
		return nil, err
	}
	if readErr != nil {
		return n, fmt.Errorf("adopt node %s: %w", n.Ident(), readErr)
	}
	return n, nil
}

func transition(ctx context.Context, s store.Store, ident, action, from, to string) (*node.Node, error) {
	return store.Modify(ctx, s, ident, func(n *node.Node) error {
		if n.ProvisionState != from {
			return invalidTransition(action, n)
		}
		n.ProvisionState = to
		return nil
	})
}

// invalidTransition is Ironic's InvalidStateRequested wording.
func invalidTransition(action string, n *node.Node) error {
	return fmt.Errorf("%w: the requested action %q can not be performed on node %q while it is in state %q",
		ErrInvalidState, action, n.UUID, n.ProvisionState)
}
