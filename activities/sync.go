package activities

import (
	"context"
	"errors"
	"time"

	"go.temporal.io/sdk/activity"

	"github.com/metalpower/metalpower/internal/config"
	"github.com/metalpower/metalpower/internal/metrics"
	"github.com/metalpower/metalpower/internal/node"
	"github.com/metalpower/metalpower/internal/powersync"
	"github.com/metalpower/metalpower/internal/store"
)

// NodeSync is Ironic's do_sync_power_state for one node, under the
// node's lock: SyncNode, and SyncFailedRead for a node its pass could not
// read.
type NodeSync struct {
	Store     store.Store
	BMCs      BMCs
	Conductor config.Conductor
	// IPMI and Queues make the plan of a change that forces the recorded
	// state onto the hardware.
	IPMI   config.IPMI
	Queues Queues
	// Nova hears of the states the sync records.
	Nova *Nova
	// Metrics records the domain metrics; nil records nothing.
	Metrics *metrics.Metrics
}

// readTimeout bounds one power read from a BMC, whoever asks (the sync,
// recovery, manage, a power request's check).
const readTimeout = 15 * time.Second

// ViaSync names the sync as the source of a change or an event.
const ViaSync = "sync"

// ReadPower reads n's power state from its BMC, within readTimeout.
func ReadPower(ctx context.Context, bmcs BMCs, n *node.Node) (string, error) {
	pm, err := bmcs.For(n)
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(ctx, readTimeout)
	defer cancel()
	return pm.PowerState(ctx)
}

// readPower reads a node's hardware state; a driver answering "error"
// counts as a failed read, as in Ironic.
func readPower(ctx context.Context, bmcs BMCs, n *node.Node) (string, error) {
	state, err := ReadPower(ctx, bmcs, n)
	if err != nil {
		return "", err
	}
	if state == node.PowerError {
		return state, errDriverError
	}
	return state, nil
}

var errDriverError = errors.New("Power driver returned ERROR state while trying to sync power state.")

// Per-node sync outcomes (NodeSyncDecision.Action), as powersync names them.
const (
	SyncInSync      = string(powersync.InSync)
	SyncSkipped     = string(powersync.Skipped)
	SyncRecorded    = string(powersync.Recorded)
	SyncUnreadable  = string(powersync.Unreadable)
	SyncMaintenance = string(powersync.Maintenance)
	SyncForce       = string(powersync.Force)
	SyncForceFailed = string(powersync.ForceFailed)
)

// NodeSyncDecision is what do_sync_power_state decided for one node.
type NodeSyncDecision struct {
	Action string `json:"action"`
	// Count is the node's failure counter after the decision.
	Count int `json:"count"`
	// PowerState is the state read (or recorded).
	PowerState string `json:"power_state,omitempty"`
	// Plan is the power change that pushes the recorded state onto the
	// hardware, for Action "force".
	Plan *PowerPlan `json:"plan,omitempty"`
	// Nova says what became of a notification the decision queued.
	Nova string `json:"nova,omitempty"`
	// Error is why the read failed, for Action "unreadable" and
	// "entered maintenance".
	Error string `json:"error,omitempty"`
}

// SyncNode is Ironic's do_sync_power_state for one node, run under the
// node's lock: load, read, decide (powersync.Decide), apply. The failure
// counter lives with the node, so it survives restarts. A local activity;
// forcing the recorded state onto the hardware is left to the workflow,
// through PowerChange's steps.
func (a *NodeSync) SyncNode(ctx context.Context, uuid string) (NodeSyncDecision, error) {
	n, err := loadNode(ctx, a.Store, uuid)
	if err != nil {
		return NodeSyncDecision{}, err
	}
	if err := a.Queues.serves(n.ConductorGroup, n.Driver); err != nil {
		// Not a failed read: nothing is counted against the node.
		return NodeSyncDecision{}, err
	}
	if powersync.Skip(n) {
		return NodeSyncDecision{Action: SyncSkipped, Count: n.SyncFailures}, nil
	}
	return a.decide(ctx, n, readForSync(ctx, a.BMCs, n))
}

// FailedRead is a BMC read of the pass's page that failed.
type FailedRead struct {
	NodeUUID    string `json:"node_uuid"`
	Error       string `json:"error"`
	DriverError bool   `json:"driver_error,omitempty"`
}

// SyncFailedRead is SyncNode for a node whose BMC the pass's page could
// not read: Ironic reads a node once a pass, so that failure is the
// pass's one failure, counted under the lock without reading again. A
// local activity.
func (a *NodeSync) SyncFailedRead(ctx context.Context, in FailedRead) (NodeSyncDecision, error) {
	n, err := loadNode(ctx, a.Store, in.NodeUUID)
	if err != nil {
		return NodeSyncDecision{}, err
	}
	if powersync.Skip(n) {
		return NodeSyncDecision{Action: SyncSkipped, Count: n.SyncFailures}, nil
	}
	return a.decide(ctx, n, powersync.Read{Err: errors.New(in.Error), DriverError: in.DriverError})
}

func (a *NodeSync) decide(ctx context.Context, n *node.Node, r powersync.Read) (NodeSyncDecision, error) {
	d := powersync.Decide(n, r, powersync.Rules{Force: a.Conductor.ForcePowerStateDuringSync, MaxRetries: a.Conductor.PowerStateSyncMaxRetries})
	return a.applySync(ctx, n, r, d)
}

// applySync carries out a decision: the node's record, Nova, the force's
// plan, maintenance.
func (a *NodeSync) applySync(ctx context.Context, n *node.Node, r powersync.Read, d powersync.Decision) (NodeSyncDecision, error) {
	out := NodeSyncDecision{Action: string(d.Action), Count: d.Count, PowerState: d.State}
	if r.Err != nil && (d.Action == powersync.Unreadable || d.Action == powersync.Maintenance) {
		out.Error = r.Err.Error()
	}
	if !d.Write {
		return out, nil
	}
	if d.Moved {
		// The hardware moved behind metalpower's back: record it if that
		// follows a change metalpower just made.
		checkConflict(ctx, a.Store, a.Conductor, n, r.State, "hardware")
	}
	entered := false
	change := func(m *node.Node) {
		m.SyncFailures = d.Count
		if d.LastError != n.LastError {
			m.LastError = d.LastError
		}
		switch d.Action {
		case powersync.Recorded, powersync.Maintenance:
			m.PowerState = d.State
		case powersync.Force:
			m.MarkTarget(d.Target)
		}
		// Maintenance for power failure, unless an operator already put
		// the node in maintenance.
		if d.Action == powersync.Maintenance {
			entered = !m.Maintenance
			if entered {
				m.Maintenance, m.MaintenanceReason, m.Fault = true, d.LastError, node.FaultPowerFailure
			}
		}
	}
	switch d.Action {
	case powersync.Unreadable:
		activity.GetLogger(ctx).Warn("could not get power state during sync", "node", n.UUID, "attempt", d.Count,
			"max", a.Conductor.PowerStateSyncMaxRetries, "error", r.Err.Error())
	case powersync.Force:
		plan := a.Queues.route(ctx, NewPowerPlan(n, d.Target, 0, ViaSync, a.Conductor, a.IPMI))
		out.Plan = &plan
	}
	var err error
	if d.Notify {
		out, err = a.notifyThenWrite(ctx, n, out, d.State, change)
	} else {
		out, err = a.syncWrite(ctx, n, out, change)
	}
	if err != nil || d.Action != powersync.Maintenance || out.Action == SyncSkipped {
		return out, err
	}
	if entered {
		a.Metrics.MaintenanceEntered(metrics.MaintenancePowerFailure)
	}
	// As Ironic's node_history_record(event_type=MONITORING, error=True):
	// the reason outlives last_error, which the next power change clears.
	if err := a.Store.AddEvent(ctx, store.Event{NodeUUID: n.UUID, Severity: "ERROR", Type: store.EventMonitoring,
		Via: ViaSync, Event: d.LastError}); err != nil {
		activity.GetLogger(ctx).Warn("could not record the node history event", "node", n.UUID, "error", err.Error())
	}
	activity.GetLogger(ctx).Error(d.LastError)
	return out, nil
}

// readForSync reads a node's hardware state for the sync's rules: a
// driver that cannot address the BMC and one that answers "error" are
// told apart.
func readForSync(ctx context.Context, bmcs BMCs, n *node.Node) powersync.Read {
	state, err := readPower(ctx, bmcs, n)
	return powersync.Read{State: state, Err: err, ConfigError: node.InvalidDriverInfo(err), DriverError: errors.Is(err, errDriverError)}
}

// syncWrite applies a decision's change to the node.
// The write re-checks what the decision assumed, as do_sync_power_state re-checks under the lock: an
// operator may have put the node in maintenance, or a provision action
// moved it, while its BMC was being read; then the sync leaves it alone.
func (a *NodeSync) syncWrite(ctx context.Context, n *node.Node, d NodeSyncDecision, change func(*node.Node)) (NodeSyncDecision, error) {
	_, err := store.Modify(ctx, a.Store, n.UUID, func(n *node.Node) error {
		if changedDuringRead(n, d) {
			return errChangedDuringRead
		}
		change(n)
		return nil
	})
	if errors.Is(err, errChangedDuringRead) {
		return NodeSyncDecision{Action: SyncSkipped, Count: n.SyncFailures}, nil
	}
	return d, storeError(err)
}

var errChangedDuringRead = errors.New("node changed while its BMC was read")

// changedDuringRead: the node no longer is what the decision assumed.
func changedDuringRead(n *node.Node, d NodeSyncDecision) bool {
	return d.Action != SyncMaintenance && (n.SyncExcluded() || n.Maintenance || n.TargetPowerState != "")
}

// notifyThenWrite records a state the sync read and tells Nova of it,
// queueing the notification first: when Temporal cannot be reached the
// attempt fails with nothing written, and its retry decides again.
// Written first, the retry would find the node in sync and Nova would
// never hear of the change. When the write then finds the node changed
// meanwhile, Nova has been told the state the hardware really had.
func (a *NodeSync) notifyThenWrite(ctx context.Context, n *node.Node, d NodeSyncDecision, state string, change func(*node.Node)) (NodeSyncDecision, error) {
	// Nova hears nothing of a node the write would leave alone.
	fresh, err := a.Store.Get(ctx, n.UUID)
	if errors.Is(err, store.ErrNotFound) || (err == nil && changedDuringRead(fresh, d)) {
		return NodeSyncDecision{Action: SyncSkipped, Count: n.SyncFailures}, nil
	}
	if err != nil {
		return d, storeError(err)
	}
	nova, err := notifyFromSync(ctx, a.Nova, n, state)
	if err != nil {
		return d, err
	}
	d, err = a.syncWrite(ctx, n, d, change)
	if err == nil && d.Action != SyncSkipped {
		d.Nova = nova
	}
	return d, err
}

// notifyFromSync queues a Nova notification of a state the sync or the
// recovery found (Ironic's nova.power_update calls in do_sync_power_state
// and _power_failure_recovery) on the same durable, ordered notifier as
// power changes. It fails only when the notifier cannot be reached.
func notifyFromSync(ctx context.Context, nova *Nova, n *node.Node, state string) (string, error) {
	if n.InstanceUUID == "" {
		return NovaNoInstance, nil
	}
	info := activity.GetInfo(ctx)
	return nova.queue(ctx, PowerUpdate{InstanceUUID: n.InstanceUUID, NodeUUID: n.UUID, PowerState: state,
		ChangedAt: time.Now(), Source: info.WorkflowExecution.ID})
}
