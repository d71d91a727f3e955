package activities

import (
	"context"
	"errors"

	"go.temporal.io/sdk/temporal"

	"github.com/metalpower/metalpower/internal/node"
	"github.com/metalpower/metalpower/internal/store"
)

// Provision applies the provision moves that read the node's BMC
// (ProvisionNode).
type Provision struct {
	Store  store.Store
	BMCs   BMCs
	Queues Queues
}

// ProvisionInput is a provision move that reads the node's BMC (manage,
// adopt).
type ProvisionInput struct {
	Node   string `json:"node"`
	Action string `json:"action"`
}

// ProvisionResult is where the move left the node.
type ProvisionResult struct {
	ProvisionState string `json:"provision_state"`
	PowerState     string `json:"power_state,omitempty"`
	// ReadError is why the BMC could not be read (also in last_error).
	ReadError string `json:"read_error,omitempty"`
}

// ProvisionNode reads the node's BMC and applies the move (Ironic's
// verify step for manage, and adopt). It runs on a worker of the node's
// conductor group: only those reach its BMC. A failed read is an outcome,
// not an error: the node records it.
func (a *Provision) ProvisionNode(ctx context.Context, in ProvisionInput) (ProvisionResult, error) {
	n, err := a.Store.Get(ctx, in.Node)
	if err != nil {
		return ProvisionResult{}, storeError(err)
	}
	if _, err := node.Plan(n, in.Action); err != nil {
		return ProvisionResult{}, temporal.NewNonRetryableApplicationError(err.Error(), InvalidStateType, err)
	}
	if err := a.Queues.serves(n.ConductorGroup, n.Driver); err != nil {
		return ProvisionResult{}, err
	}
	power, readErr := ReadPower(ctx, a.BMCs, n)
	n, err = MoveNode(ctx, a.Store, n.UUID, in.Action, power, readErr)
	if errors.Is(err, node.ErrInvalidState) {
		return ProvisionResult{}, temporal.NewNonRetryableApplicationError(err.Error(), InvalidStateType, err)
	}
	if err != nil {
		return ProvisionResult{}, storeError(err)
	}
	res := ProvisionResult{ProvisionState: n.ProvisionState, PowerState: n.PowerState}
	if readErr != nil {
		res.ReadError = readErr.Error()
	}
	return res, nil
}

// MoveNode applies node.Plan's move for action, given what the BMC read
// (power, readErr) when the move reads it; the move is checked again
// inside the store's transaction.
func MoveNode(ctx context.Context, s store.Store, uuid, action, power string, readErr error) (*node.Node, error) {
	return store.Modify(ctx, s, uuid, func(n *node.Node) error {
		move, err := node.Plan(n, action)
		if err != nil {
			return err
		}
		move.Apply(n, power, readErr)
		return nil
	})
}
