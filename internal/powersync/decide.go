// Package powersync holds the periodic sync's rules as pure functions, the
// way Ironic's do_sync_power_state reads as one decision: given a node, what
// its BMC answered and the configuration, what happens to the node. The
// activities load, read, call these and apply the result.
package powersync

import (
	"fmt"

	"github.com/metalpower/metalpower/internal/node"
)

// Action is what the sync does with one node. The strings are recorded in
// workflow histories: they never change.
type Action string

const (
	InSync      Action = "in sync"
	Skipped     Action = "skipped"
	Recorded    Action = "recorded hardware state"
	Unreadable  Action = "unreadable"
	Maintenance Action = "entered maintenance"
	Force       Action = "force"
	ForceFailed Action = "force failed"
)

// Rules are the options the decision follows.
type Rules struct {
	// Force is [conductor] force_power_state_during_sync.
	Force bool
	// MaxRetries is [conductor] power_state_sync_max_retries.
	MaxRetries int
}

// Read is one read of a node's BMC: the state, or why it failed.
type Read struct {
	State string
	Err   error
	// ConfigError: the driver or driver_info fails validation (Ironic's
	// power.validate). A BMC that answers 404, fails TLS or whose host is
	// unknown is a failed read like any other.
	ConfigError bool
	// DriverError: the driver answered "error", which counts as a failed
	// read.
	DriverError bool
}

// Decision is what happens to the node.
type Decision struct {
	Action Action
	// Count is the node's sync failure counter afterwards.
	Count int
	// State is the power state read, which Recorded and Maintenance
	// record.
	State string
	// Target is the recorded state Force pushes onto the hardware.
	Target string
	// LastError is the node's last_error afterwards.
	LastError string
	// Notify: tell Nova of State (it changed on record).
	Notify bool
	// Moved: the hardware changed behind metalpower's back (a record may
	// follow a change metalpower just made).
	Moved bool
	// Write: the node record changes.
	Write bool
}

// Decide is Ironic's do_sync_power_state for a node re-checked under its
// lock, rule for rule.
func Decide(n *node.Node, r Read, rules Rules) Decision {
	if Skip(n) {
		return Decision{Action: Skipped, Count: n.SyncFailures, LastError: n.LastError}
	}
	old, count := n.PowerState, n.SyncFailures+1
	if old == "" && r.Err != nil && r.ConfigError {
		// Ironic's validate failure: nothing read, nothing counted.
		return Decision{Action: Skipped, LastError: n.LastError, Write: true}
	}
	if r.Err != nil {
		if count > rules.MaxRetries {
			actual := ""
			if r.DriverError {
				actual = node.PowerError
			}
			return maxRetriesExceeded(n, actual, count, r.Err)
		}
		return Decision{Action: Unreadable, Count: count, LastError: n.LastError, Write: true}
	}
	state := r.State
	moved := old != "" && old != state && old != node.PowerError
	switch {
	case old == state:
		// Both the same, or both no state (a BMC that reports a state
		// the driver cannot map): nothing to do.
		return Decision{Action: InSync, State: state, Write: true}
	case old == "":
		// No previous state: take the hardware's and tell Nova.
		return Decision{Action: Recorded, State: state, Notify: true, Write: true}
	case count > rules.MaxRetries:
		d := maxRetriesExceeded(n, state, count, nil)
		d.Moved = moved
		return d
	case rules.Force && !n.DisablePowerOff && old == node.PowerError:
		// A recorded "error" cannot be pushed onto hardware: as Ironic's
		// node_power_action with no target, the force fails, is recorded
		// and counted, on the way to maintenance.
		return Decision{Action: ForceFailed, Count: count, State: state, Moved: moved, Write: true,
			LastError: fmt.Sprintf("Failed to change power state to 'None' by '%s': the recorded power state can not be forced onto the hardware", old)}
	case rules.Force && !n.DisablePowerOff:
		// Push the recorded state onto the hardware. A successful force
		// keeps the counter: only a later matching read resets it.
		d := Decision{Action: Force, Count: count, State: state, Target: old, Moved: moved, Write: true, LastError: n.LastError}
		if !n.InFailureState() {
			d.LastError = ""
		}
		return d
	default:
		// Not forcing (or disable_power_off, which blocks forcing either
		// way): the hardware is right. last_error stays, as Ironic.
		return Decision{Action: Recorded, Count: count, State: state, LastError: n.LastError, Notify: true, Moved: moved, Write: true}
	}
}

// Skip reports whether the sync leaves n alone, its BMC unread: what
// changed since the page was read wins (_sync_power_state_nodes_task and
// do_sync_power_state re-check under the lock).
func Skip(n *node.Node) bool {
	return n.SyncExcluded() || n.Maintenance || n.TargetPowerState != ""
}

// maxRetriesExceeded is Ironic's handle_sync_power_state_max_retries_exceeded:
// record the state read, with the reason in last_error; the caller enters
// maintenance unless an operator already did, and tells Nova when the
// state changed.
func maxRetriesExceeded(n *node.Node, actual string, count int, readErr error) Decision {
	msg := fmt.Sprintf("During sync_power_state, max retries exceeded for node %s, node state %s does not match expected state '%s'. Updating DB state to '%s' Switching node to maintenance mode.",
		n.UUID, pyStr(actual), pyStr(n.PowerState), pyStr(actual))
	if readErr != nil {
		msg += " Error: " + readErr.Error()
	}
	return Decision{Action: Maintenance, Count: count, State: actual, LastError: msg, Notify: n.PowerState != actual, Write: true}
}

// pyStr prints a state as Ironic's messages do: None for no state.
func pyStr(s string) string {
	if s == "" {
		return "None"
	}
	return s
}

// Triage is the page read's first look at a node: in sync (its counter and
// last_error are reset in bulk), a candidate for a per-node sync under its
// lock (with the reason), or neither (a node Ironic would not even address).
func Triage(n *node.Node, r Read) (inSync bool, reason string) {
	switch {
	case n.PowerState == "":
		if r.Err != nil && r.ConfigError {
			return false, ""
		}
		return false, "unknown"
	case r.Err != nil:
		return false, "unreadable"
	case r.State != n.PowerState:
		return false, "mismatch"
	}
	return true, ""
}
