package node

import (
	"fmt"

	"github.com/metalpower/metalpower/internal/bmc"
)

// Refusal is why a power request is refused, or Allowed. Each layer turns
// it into its own wording: an HTTP status, an application error type, a
// CLI message.
type Refusal int

const (
	Allowed Refusal = iota
	// RefusedTimeout: a timeout was given and is not a positive number of
	// seconds.
	RefusedTimeout
	// RefusedTarget: not one of Targets.
	RefusedTarget
	// RefusedCleaning: Ironic changes no power while a node is cleaning.
	RefusedCleaning
	// RefusedPowerOff: the change would end powered off and the node has
	// disable_power_off set.
	RefusedPowerOff
	// RefusedUnsupported: the node's driver has no such action (a PDU
	// outlet has no soft power off).
	RefusedUnsupported
)

// CheckPowerRequest applies Ironic's checks on a power request for n, in
// Ironic's order (NodeStatesController.power, then
// change_node_power_state): the timeout (nil when not given), the target,
// what the driver supports, cleaning, disable_power_off. Every layer that accepts a power request
// calls it; the sync's corrections, which Ironic does not check, do not.
func CheckPowerRequest(n *Node, target string, timeout *int) Refusal {
	switch {
	case timeout != nil && *timeout < 1:
		return RefusedTimeout
	case !IsTarget(target):
		return RefusedTarget
	case !supports(n.Driver, target):
		return RefusedUnsupported
	case n.ProvisionState == Cleaning || n.ProvisionState == CleanWait:
		return RefusedCleaning
	case n.DisablePowerOff && FinalState(target) == PowerOff:
		return RefusedPowerOff
	}
	return Allowed
}

// OptionalTimeout is a timeout as CheckPowerRequest takes it from callers
// where 0 means "not given".
func OptionalTimeout(seconds int) *int {
	if seconds == 0 {
		return nil
	}
	return &seconds
}

// supports reports whether driver can perform target (Ironic's
// get_supported_power_states). An unknown driver is left to fail where
// its driver_info is parsed.
func supports(driver, target string) bool {
	d, err := bmc.Lookup(driver)
	if err != nil {
		return true
	}
	switch target {
	case SoftPowerOff:
		return d.Supports.SoftPowerOff
	case Reboot:
		return d.Supports.Reboot
	case SoftReboot:
		return d.Supports.SoftReboot
	}
	return true
}

// UnsupportedMessage is Ironic's wording of RefusedUnsupported.
func UnsupportedMessage(n *Node, target string) string {
	return fmt.Sprintf("The driver %s does not support the power state, %s", n.Driver, target)
}
