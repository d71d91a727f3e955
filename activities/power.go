package activities

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"

	"github.com/metalpower/metalpower/internal/bmc"
	"github.com/metalpower/metalpower/internal/config"
	"github.com/metalpower/metalpower/internal/node"
	"github.com/metalpower/metalpower/internal/store"
)

// Power runs the steps of a power change (Ironic's
// change_node_power_state and node_power_action): PreparePowerChange,
// MarkPowerChange, AbortPowerChange, SetPowerState, VerifyPowerState and
// FinishPowerChange.
type Power struct {
	Store     store.Store
	BMCs      BMCs
	Conductor config.Conductor
	IPMI      config.IPMI
	// Queues routes each plan to the node's conductor group.
	Queues Queues
	// Nova tells Nova of the state a skipped change found.
	Nova *Nova
}

// PrepareInput asks to validate a power change and, with Mark, to record
// it on the node.
type PrepareInput struct {
	Node    string `json:"node"`
	Target  string `json:"target"`
	Timeout int    `json:"timeout,omitempty"`
	// Mark records target_power_state and clears last_error. Only the
	// workflow holding the node's lock marks.
	Mark bool `json:"mark,omitempty"`
	// Via says who asked (api, cli, sync), for the node history.
	Via string `json:"via,omitempty"`
}

// PowerPlan is a validated power change.
type PowerPlan struct {
	NodeUUID     string `json:"node_uuid"`
	NodeName     string `json:"node_name,omitempty"`
	Driver       string `json:"driver"`
	BMC          string `json:"bmc"`
	InstanceUUID string `json:"instance_uuid,omitempty"`
	Target       string `json:"target"`
	// Final is the state the change ends in: on for reboots.
	Final string `json:"final"`
	// Timeout in seconds to reach Final.
	Timeout int `json:"timeout"`
	// CommandRetryTimeout in seconds bounds retries of the BMC command.
	CommandRetryTimeout int `json:"command_retry_timeout"`
	// Via says who asked, for the node history.
	Via string `json:"via,omitempty"`
	// Group is the node's conductor group when the plan was made, Queue
	// that group's task queue: every activity that talks to the BMC runs
	// there, whatever queue the workflow runs on. Plans of builds before
	// routing have no Queue; their BMC activities run on the workflow's
	// own queue, as they did (so their histories replay unchanged).
	Group string `json:"group,omitempty"`
	Queue string `json:"queue,omitempty"`
	// Unserved: no live worker polled Queue when the plan was made; the
	// change fails at once with dispatch's NoWorkerError.
	Unserved bool `json:"unserved,omitempty"`
}

// defaultCommandRetryTimeout is Ironic's [ipmi] command_retry_timeout
// default, used when the option is 0 or less.
const defaultCommandRetryTimeout = 60

// NewPowerPlan is the plan for moving n to target: the state it ends in (on for
// reboots), the time to reach it (timeout, else [conductor]
// power_state_change_timeout, soft_power_off_timeout for soft actions) and
// how long the BMC command is retried ([ipmi] command_retry_timeout, 60 s
// when unset). Every power change, requested or forced by the sync, is
// planned here.
func NewPowerPlan(n *node.Node, target string, timeout int, via string, c config.Conductor, ipmi config.IPMI) PowerPlan {
	p := PowerPlan{NodeUUID: n.UUID, NodeName: n.Name, Driver: n.Driver, BMC: n.BMC(), InstanceUUID: n.InstanceUUID,
		Target: target, Final: node.FinalState(target), Timeout: timeout, CommandRetryTimeout: ipmi.CommandRetryTimeout, Via: via,
		Group: n.ConductorGroup}
	if p.CommandRetryTimeout <= 0 {
		p.CommandRetryTimeout = defaultCommandRetryTimeout
	}
	if p.Timeout <= 0 {
		p.Timeout = c.PowerStateChangeTimeout
		if target == node.SoftReboot || target == node.SoftPowerOff {
			p.Timeout = c.SoftPowerOffTimeout
		}
	}
	return p
}

// PreparePowerChange loads the node and applies Ironic's checks
// (change_node_power_state and node_power_action): a known target, not
// while cleaning, no power off with disable_power_off; soft actions default
// to soft_power_off_timeout. With Mark it then records target_power_state
// and clears last_error (a forced change keeps it in failure states). A
// local activity.
func (a *Power) PreparePowerChange(ctx context.Context, in PrepareInput) (PowerPlan, error) {
	n, err := loadNode(ctx, a.Store, in.Node)
	if err != nil {
		return PowerPlan{}, err
	}
	if err := refusal(n, in.Target, in.Timeout); err != nil {
		return PowerPlan{}, err
	}
	plan := a.Queues.route(ctx, NewPowerPlan(n, in.Target, in.Timeout, in.Via, a.Conductor, a.IPMI))
	if in.Mark {
		checkConflict(ctx, a.Store, a.Conductor, n, plan.Final, in.Via)
		if err := a.mark(ctx, n.UUID, in.Target, plan.Final, in.Via); err != nil {
			return PowerPlan{}, err
		}
	}
	return plan, nil
}

// AbortPowerChange clears the target_power_state the starter recorded, for
// a change refused before it began (no last_error, as Ironic's checks). A
// local activity.
func (a *Power) AbortPowerChange(ctx context.Context, uuid string) error {
	_, err := store.Modify(ctx, a.Store, uuid, func(n *node.Node) error {
		n.TargetPowerState = ""
		return nil
	})
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	return storeError(err)
}

// MarkPowerChange records a change in progress once the lock is held, for
// changes whose lock was only known after resolving the node. A local
// activity.
func (a *Power) MarkPowerChange(ctx context.Context, p PowerPlan) error {
	return a.mark(ctx, p.NodeUUID, p.Target, p.Final, p.Via)
}

// mark records the change: a request clears last_error, a change the
// sync forces keeps it in a failure state.
func (a *Power) mark(ctx context.Context, uuid, target, final, via string) error {
	_, err := store.Modify(ctx, a.Store, uuid, func(n *node.Node) error {
		// Re-check under the write: the node may have changed since it was read.
		if err := refusal(n, target, 0); err != nil {
			return err
		}
		if via == ViaSync {
			n.MarkTarget(final)
		} else {
			n.MarkRequest(final)
		}
		return nil
	})
	return storeError(err)
}

// refusal words node.CheckPowerRequest's verdict as a non-retryable
// application error; timeout 0 means none was given.
func refusal(n *node.Node, target string, timeout int) error {
	var msg, kind string
	switch node.CheckPowerRequest(n, target, node.OptionalTimeout(timeout)) {
	case node.Allowed:
		return nil
	case node.RefusedTimeout:
		msg, kind = fmt.Sprintf("Invalid timeout %d: must be a positive number of seconds.", timeout), InvalidParameterType
	case node.RefusedTarget:
		msg, kind = fmt.Sprintf("Invalid power target %q: use one of %q, %q, %q, %q or %q.", target, node.PowerOn, node.PowerOff, node.Reboot, node.SoftReboot, node.SoftPowerOff), InvalidTargetType
	case node.RefusedUnsupported:
		msg, kind = node.UnsupportedMessage(n, target)+".", InvalidParameterType
	case node.RefusedCleaning:
		msg, kind = fmt.Sprintf("Can not change power state because node %s is in %s provision state.", n.UUID, n.ProvisionState), InvalidStateType
	case node.RefusedPowerOff:
		msg, kind = fmt.Sprintf("Node %s does not allow power off: disable_power_off is set.", n.UUID), PowerOffDisabledType
	}
	return temporal.NewNonRetryableApplicationError(msg, kind, nil)
}

// powerManager returns the BMC client of a node of this worker's
// conductor group.
func (a *Power) powerManager(n *node.Node) (bmc.PowerManager, error) {
	if err := a.Queues.serves(n.ConductorGroup, n.Driver); err != nil {
		return nil, err
	}
	pm, err := a.BMCs.For(n)
	if err != nil {
		return nil, bmcError(err)
	}
	return pm, nil
}

// SetPowerInput names the node and the action; the activity loads the
// credentials itself.
type SetPowerInput struct {
	NodeUUID string `json:"node_uuid"`
	Target   string `json:"target"`
}

// SetPowerResult says whether the action was sent or skipped because the
// hardware was already in the requested state, and what the first read
// after the action showed.
type SetPowerResult struct {
	Skipped bool `json:"skipped,omitempty"`
	// HardwareState is what the BMC reported before acting, when read.
	HardwareState string `json:"hardware_state,omitempty"`
	// Verified: a read right after the action already showed the final
	// state (VerifiedState), so no polling is needed.
	Verified      bool   `json:"verified,omitempty"`
	VerifiedState string `json:"verified_state,omitempty"`
}

// SetPowerState reads the hardware (for on, off and soft off) and skips
// when it is already there, as Ironic's _can_skip_state_change; otherwise
// it sends the action (reboots always run) and reads once more: a BMC that
// is already there saves the workflow a polling activity and a round trip.
func (a *Power) SetPowerState(ctx context.Context, in SetPowerInput) (SetPowerResult, error) {
	n, err := loadNode(ctx, a.Store, in.NodeUUID)
	if err != nil {
		return SetPowerResult{}, err
	}
	pm, err := a.powerManager(n)
	if err != nil {
		return SetPowerResult{}, err
	}
	var res SetPowerResult
	if in.Target == node.PowerOn || in.Target == node.PowerOff || in.Target == node.SoftPowerOff {
		state, err := pm.PowerState(ctx)
		if err != nil {
			return res, bmcError(err)
		}
		res.HardwareState = state
		if state == node.FinalState(in.Target) {
			res.Skipped = true
			return res, nil
		}
	}
	if err := pm.SetPowerState(ctx, in.Target, bmc.Policy{DisablePowerOff: n.DisablePowerOff}); err != nil {
		return res, bmcError(err)
	}
	// A failed read here is not a failed action: polling takes over.
	if state, err := pm.PowerState(ctx); err == nil && state == node.FinalState(in.Target) {
		res.Verified, res.VerifiedState = true, state
	}
	return res, nil
}

// VerifyInput asks to poll the node until it reaches Want or Deadline.
type VerifyInput struct {
	NodeUUID string    `json:"node_uuid"`
	Want     string    `json:"want"`
	Deadline time.Time `json:"deadline"`
}

// VerifyPowerState polls the hardware with a growing interval (1 s, x1.5,
// at most 5 s), as Ironic's node_wait_for_power_state, until it reads
// Want or the deadline passes. Each read is a heartbeat, so the Web UI
// shows the last reading and a retried attempt resumes where it was.
// Transient read errors are tolerated until the deadline. An attempt
// that starts past the deadline reads once before it gives up.
func (a *Power) VerifyPowerState(ctx context.Context, in VerifyInput) (string, error) {
	n, err := loadNode(ctx, a.Store, in.NodeUUID)
	if err != nil {
		return "", err
	}
	pm, err := a.powerManager(n)
	if err != nil {
		return "", err
	}
	interval := time.Second
	var lastErr error
	last := ""
	for first := true; ; first = false {
		readCtx, cancel := context.WithDeadline(ctx, in.Deadline)
		if first && time.Until(in.Deadline) < time.Second {
			// An attempt that starts at or past the deadline (retried after
			// a worker crash or a node store outage) still reads once: the
			// hardware may well have got there meanwhile.
			cancel()
			readCtx, cancel = context.WithTimeout(ctx, lateReadTimeout)
		}
		state, err := pm.PowerState(readCtx)
		cancel()
		switch {
		case err == nil:
			last, lastErr = state, nil
			activity.RecordHeartbeat(ctx, state)
			if state == in.Want {
				return state, nil
			}
		case bmc.IsPermanent(err):
			return "", bmcError(err)
		case errors.Is(readCtx.Err(), context.DeadlineExceeded) && ctx.Err() == nil:
			// The read was cut short by the change's own deadline: what
			// counts is the last state read, below.
		default:
			lastErr = err
			activity.RecordHeartbeat(ctx, "read failed")
		}
		wait := min(interval, time.Until(in.Deadline))
		if wait <= 0 {
			msg := fmt.Sprintf("Failed to set node power state to %s.", in.Want)
			if lastErr != nil {
				msg += " Last read failed: " + lastErr.Error()
			} else if last != "" {
				msg += " The node is still " + last + "."
			}
			return "", temporal.NewNonRetryableApplicationError(msg, PowerStateTimeoutType, nil)
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(wait):
		}
		interval = min(interval*3/2, 5*time.Second)
	}
}

// lateReadTimeout bounds the one read of a verification that starts at
// or past its deadline.
const lateReadTimeout = 10 * time.Second

// FinishInput records a power change's outcome.
type FinishInput struct {
	NodeUUID string `json:"node_uuid"`
	Target   string `json:"target"`
	Final    string `json:"final"`
	// Skipped: the hardware already was in Final (HardwareState).
	Skipped       bool   `json:"skipped,omitempty"`
	HardwareState string `json:"hardware_state,omitempty"`
	// Failure is the error that ended the change; empty on success.
	Failure string `json:"failure,omitempty"`
	// Via says who asked, for the node history.
	Via string `json:"via,omitempty"`
}

// FinishResult is the node after the change.
type FinishResult struct {
	PowerState   string `json:"power_state"`
	InstanceUUID string `json:"instance_uuid,omitempty"`
	// Nova says what became of the notification of a skipped change that
	// corrected the recorded state ("" when none was due).
	Nova string `json:"nova,omitempty"`
}

// FinishPowerChange writes the outcome as Ironic's node_power_action does:
// on success power_state = final state; on a skip the state read and no
// last_error; on failure last_error in Ironic's wording, also recorded as
// an ERROR event in the node history, and power_state unchanged.
// target_power_state is cleared in every case. A local activity.
func (a *Power) FinishPowerChange(ctx context.Context, in FinishInput) (FinishResult, error) {
	var nova string
	if in.Skipped && in.Failure == "" {
		var err error
		if nova, err = a.notifySkipCorrection(ctx, in); err != nil {
			return FinishResult{}, err
		}
	}
	n, err := store.Modify(ctx, a.Store, in.NodeUUID, func(n *node.Node) error {
		n.TargetPowerState = ""
		switch {
		case in.Failure != "":
			n.LastError = fmt.Sprintf("Failed to change power state to '%s' by '%s': %s", in.Final, in.Target, in.Failure)
		case in.Skipped:
			n.PowerState, n.LastError = in.HardwareState, ""
		default:
			n.PowerState = in.Final
		}
		return nil
	})
	if err != nil {
		return FinishResult{}, storeError(err)
	}
	if in.Failure != "" {
		// As Ironic's node_history_record(error=True): the error is kept
		// in the node history, as the next in-sync pass clears last_error.
		// Not best effort: a failed change must leave a trace. A retry
		// after a failed write only writes the same values again.
		if err := a.Store.AddEvent(ctx, store.Event{NodeUUID: n.UUID, Severity: "ERROR", Type: store.EventPowerChange,
			Via: in.Via, Event: n.LastError}); err != nil {
			return FinishResult{}, storeError(err)
		}
	}
	if in.Failure == "" && !in.Skipped {
		recordChange(ctx, a.Store, n.UUID, in.Final, in.Target, in.Via)
	}
	return FinishResult{PowerState: n.PowerState, InstanceUUID: n.InstanceUUID, Nova: nova}, nil
}

// notifySkipCorrection tells Nova the state a skipped change found when it
// differs from the one recorded: the hardware got there behind
// metalpower's back (someone at the server), and the skip corrects the
// record, as Ironic's _can_skip_state_change. Ironic tells Nova nothing
// then (a known gap: Nova keeps the old state until its own power sync
// stops or starts the instance again); every other correction of the
// recorded state is sent to Nova, so this one is too. It is queued before
// the record is written, so a retry after a failed write (or a worker
// lost before the result was recorded) sends it again rather than never:
// Nova applies a repeated state as a no-op. "" when nothing is sent.
func (a *Power) notifySkipCorrection(ctx context.Context, in FinishInput) (string, error) {
	n, err := loadNode(ctx, a.Store, in.NodeUUID)
	if err != nil {
		return "", err
	}
	if n.InstanceUUID == "" || n.PowerState == in.HardwareState ||
		(in.HardwareState != node.PowerOn && in.HardwareState != node.PowerOff) {
		return "", nil
	}
	u := PowerUpdate{InstanceUUID: n.InstanceUUID, NodeUUID: n.UUID, PowerState: in.HardwareState, ChangedAt: time.Now()}
	if activity.IsActivity(ctx) {
		u.Source = activity.GetInfo(ctx).WorkflowExecution.ID
	}
	return a.Nova.queue(ctx, u)
}
