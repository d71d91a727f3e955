package node

import (
	"errors"
	"fmt"
)

// Provision actions metalpower takes (Ironic's provision verbs; the
// others are Ironic's own business: metalpower does no cleaning or
// deployment).
const (
	ActionManage  = "manage"
	ActionProvide = "provide"
	ActionAdopt   = "adopt"
)

// ProvisionActions are the provision actions metalpower serves.
var ProvisionActions = []string{ActionManage, ActionProvide, ActionAdopt}

// ErrInvalidState: the node's provision state does not allow the action.
var ErrInvalidState = errors.New("invalid provision state")

// Move is where a provision action takes a node.
type Move struct {
	// To is the provision state once the action succeeds.
	To string
	// ReadBMC says the action first reads the power state through the
	// BMC (Ironic's verify step for manage, its adoption for adopt);
	// the node takes the state read.
	ReadBMC bool
	// FailState is the provision state a failed read leaves (the node's
	// own state when empty), and FailPrefix starts the last_error it
	// records, Ironic's wording.
	FailState, FailPrefix string
}

// Plan returns the move action makes from the node's provision state,
// or an error wrapping ErrInvalidState in Ironic's InvalidStateRequested
// wording.
func Plan(n *Node, action string) (Move, error) {
	switch s := n.ProvisionState; {
	case action == ActionManage && s == Enroll:
		return Move{To: Manageable, ReadBMC: true, FailPrefix: "Failed to verify node power access: "}, nil
	case action == ActionManage && (s == Available || s == CleanFailed || s == InspectFail):
		return Move{To: Manageable}, nil
	case action == ActionProvide && s == Manageable:
		return Move{To: Available}, nil
	case action == ActionAdopt && (s == Manageable || s == AdoptFailed):
		return Move{To: Active, ReadBMC: true, FailState: AdoptFailed, FailPrefix: "Failed to adopt node: "}, nil
	}
	return Move{}, fmt.Errorf("%w: the requested action %q can not be performed on node %q while it is in state %q",
		ErrInvalidState, action, n.UUID, n.ProvisionState)
}

// Apply makes the move on n: to its target with the power state read,
// or, when the read failed, to its fail state with last_error.
func (m Move) Apply(n *Node, power string, readErr error) {
	if readErr != nil {
		if m.FailState != "" {
			n.ProvisionState = m.FailState
		}
		n.LastError = m.FailPrefix + readErr.Error()
		return
	}
	n.ProvisionState = m.To
	if m.ReadBMC {
		n.PowerState, n.LastError = power, ""
	}
}

// SetMaintenance puts the node in maintenance with an operator's reason.
// A fault stays: a node the sync put in maintenance for a power failure
// is still recovered by the recovery pass (Ironic's PUT .../maintenance
// changes maintenance and its reason only).
func (n *Node) SetMaintenance(reason string) {
	n.Maintenance, n.MaintenanceReason = true, reason
}

// UnsetMaintenance takes the node out of maintenance, clearing the reason
// and any fault, as Ironic's DELETE .../maintenance.
func (n *Node) UnsetMaintenance() {
	n.Maintenance, n.MaintenanceReason, n.Fault = false, "", ""
}

// LeftMaintenance applies Ironic's update_node rule after any update (a
// PATCH of maintenance=false): a node that was in maintenance and no
// longer is loses the reason and the fault.
func (n *Node) LeftMaintenance(wasInMaintenance bool) {
	if wasInMaintenance && !n.Maintenance {
		n.UnsetMaintenance()
	}
}
