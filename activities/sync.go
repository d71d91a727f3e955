package activities

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.temporal.io/sdk/activity"

	"github.com/metalpower/metalpower/internal/bmc"
	"github.com/metalpower/metalpower/internal/metrics"
	"github.com/metalpower/metalpower/internal/node"
	"github.com/metalpower/metalpower/internal/store"
)

// ReadTimeout bounds one power read from a BMC, whoever asks (the sync,
// recovery, manage, a power request's check).
const ReadTimeout = 15 * time.Second

// ReadPower reads n's power state from its BMC, within ReadTimeout.
func ReadPower(ctx context.Context, bmcs BMCs, n *node.Node) (string, error) {
	pm, err := bmcs.For(n)
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(ctx, ReadTimeout)
	defer cancel()
	return pm.PowerState(ctx)
}

// SyncPageInput asks for the next page of a sync pass.
type SyncPageInput struct {
	// After is where the previous page ended.
	After *SyncPosition `json:"after,omitempty"`
	// PassStart is set by the first page: nodes written after it are left
	// for the next pass (they were just changed, or already synced here).
	PassStart time.Time `json:"pass_start,omitempty"`
	Limit     int       `json:"limit,omitempty"`
}

// SyncPosition is a node's place in a pass's order (most failures first);
// typed so it survives a JSON round trip through the history.
type SyncPosition struct {
	Failures int   `json:"failures"`
	ID       int64 `json:"id"`
}

// SyncCandidate is a node whose hardware did not match its record, could
// not be read, or whose state is unknown: it gets a NodePowerSync.
type SyncCandidate struct {
	UUID   string `json:"uuid"`
	Name   string `json:"name,omitempty"`
	Reason string `json:"reason"`
}

// SyncPage is what one page of a pass found.
type SyncPage struct {
	PassStart  time.Time       `json:"pass_start"`
	After      *SyncPosition   `json:"after,omitempty"`
	Done       bool            `json:"done"`
	Checked    int             `json:"checked"`
	InSync     int             `json:"in_sync"`
	Reset      int             `json:"reset"`
	Candidates []SyncCandidate `json:"candidates,omitempty"`
	// Window is how many NodePowerSync children may run at once.
	Window int `json:"window"`
	// ClearedTargets counts stale target_power_states cleared before the
	// first page was read.
	ClearedTargets int `json:"cleared_targets,omitempty"`
}

// SyncPageSize bounds one page: its candidates must fit in one payload
// (2 MB) even when every node drifted.
const SyncPageSize = 5000

// ReadPowerStates reads one page of sync-eligible nodes (Ironic's
// _sync_power_states query and _sync_power_state_nodes_task's checks: not
// in maintenance, not in an excluded provision state, no power change in
// progress), most failures first, with sync_power_state_workers
// reads in flight. The first page of a pass clears stale targets first
// (clearStaleTargets). Nodes that match their record need no further work:
// their counters and last_error are reset here in one batch. The rest are
// returned as candidates for a per-node sync under the node's lock.
func (a *Activities) ReadPowerStates(ctx context.Context, in SyncPageInput) (SyncPage, error) {
	cleared := 0
	if in.After == nil && in.PassStart.IsZero() {
		// First page: targets left by changes that no longer run are
		// cleared first, so this pass syncs those nodes.
		var err error
		if cleared, err = a.clearStaleTargets(ctx); err != nil {
			return SyncPage{}, err
		}
	}
	if in.PassStart.IsZero() {
		in.PassStart = time.Now()
	}
	if in.Limit <= 0 || in.Limit > SyncPageSize {
		in.Limit = SyncPageSize
	}
	page := SyncPage{PassStart: in.PassStart, Window: syncWindow(a.Conductor.SyncPowerStateWorkers), ClearedTargets: cleared}
	var after *store.Position
	if in.After != nil {
		after = &store.Position{Value: in.After.Failures, ID: in.After.ID}
	}
	nodes, err := a.Store.List(ctx, store.Query{
		Filter: store.Filter{
			Maintenance: store.Bool(false), TargetPowerStateSet: store.Bool(false),
			ExcludeProvisionStates: node.SyncExcludedStates, UpdatedBefore: in.PassStart,
		},
		SortKey: "sync_failures", SortDir: "desc", After: after, Limit: in.Limit,
	})
	if err != nil {
		return page, storeError(err)
	}
	page.Done = len(nodes) < in.Limit
	if len(nodes) > 0 {
		last := nodes[len(nodes)-1]
		page.After = &SyncPosition{Failures: last.SyncFailures, ID: last.ID}
	}

	type outcome struct {
		candidate *SyncCandidate
		reset     bool
	}
	results := make([]outcome, len(nodes))
	a.forEach(ctx, len(nodes), func(i int) {
		n := nodes[i]
		state, err := a.readPower(ctx, n)
		switch {
		case n.PowerState == "":
			// Ironic validates driver_info first and leaves a node it
			// cannot even address alone, without counting a failure.
			if !isConfigError(err) {
				results[i].candidate = &SyncCandidate{UUID: n.UUID, Name: n.Name, Reason: "unknown"}
			}
		case err != nil:
			results[i].candidate = &SyncCandidate{UUID: n.UUID, Name: n.Name, Reason: "unreadable"}
		case state != n.PowerState:
			results[i].candidate = &SyncCandidate{UUID: n.UUID, Name: n.Name, Reason: "mismatch"}
		default:
			results[i].reset = n.SyncFailures > 0 || n.LastError != ""
		}
	})
	var resets []store.Versioned
	for i, r := range results {
		page.Checked++
		switch {
		case r.candidate != nil:
			page.Candidates = append(page.Candidates, *r.candidate)
		default:
			page.InSync++
			if r.reset {
				resets = append(resets, store.Versioned{UUID: nodes[i].UUID, Version: nodes[i].Version})
			}
		}
	}
	if page.Reset, err = a.Store.ResetSyncFailures(ctx, resets); err != nil {
		return page, storeError(err)
	}
	// The first page of a pass starts the count; later ones add to it.
	if in.After == nil {
		a.Metrics.NodesOutOfSync(len(page.Candidates))
	} else {
		a.Metrics.AddNodesOutOfSync(len(page.Candidates))
	}
	return page, nil
}

// syncWindow is how many per-node syncs run at once: enough to keep BMCs
// busy, few enough to stay far from Temporal's 2,000 pending children.
func syncWindow(workers int) int { return min(max(workers/4, 8), 100) }

// forEach runs fn for 0..n-1 with sync_power_state_workers goroutines,
// heartbeating progress.
func (a *Activities) forEach(ctx context.Context, n int, fn func(i int)) {
	workers := max(1, min(a.Conductor.SyncPowerStateWorkers, n))
	next := make(chan int)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				fn(i)
			}
		}()
	}
	for i := 0; i < n; i++ {
		if i%256 == 0 && activity.IsActivity(ctx) {
			activity.RecordHeartbeat(ctx, i)
		}
		select {
		case next <- i:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
	}
	close(next)
	wg.Wait()
}

// readPower reads a node's hardware state; a driver answering "error"
// counts as a failed read, as in Ironic.
func (a *Activities) readPower(ctx context.Context, n *node.Node) (string, error) {
	state, err := ReadPower(ctx, a.BMCs, n)
	if err != nil {
		return "", err
	}
	if state == node.PowerError {
		return state, errDriverError
	}
	return state, nil
}

var errDriverError = errors.New("Power driver returned ERROR state while trying to sync power state.")

func isConfigError(err error) bool {
	k, ok := bmc.KindOf(err)
	return ok && k == bmc.Config
}

// Per-node sync outcomes (NodeSyncDecision.Action).
const (
	SyncInSync      = "in sync"
	SyncSkipped     = "skipped"
	SyncRecorded    = "recorded hardware state"
	SyncUnreadable  = "unreadable"
	SyncMaintenance = "entered maintenance"
	SyncForce       = "force"
	SyncForceFailed = "force failed"
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
	Plan *Plan `json:"plan,omitempty"`
	// Nova says what became of a notification the decision queued.
	Nova string `json:"nova,omitempty"`
	// Error is why the read failed, for Action "unreadable" and
	// "entered maintenance".
	Error string `json:"error,omitempty"`
}

// SyncNode is Ironic's do_sync_power_state for one node, run under the
// node's lock (do_sync_power_state and
// handle_sync_power_state_max_retries_exceeded): it re-checks the node, re-reads the hardware and
// decides, rule for rule. The failure counter lives with the node, so it
// survives restarts. A local activity; forcing the recorded state onto
// the hardware is left to the workflow, through PowerChange's steps.
func (a *Activities) SyncNode(ctx context.Context, uuid string) (NodeSyncDecision, error) {
	n, err := a.loadNode(ctx, uuid)
	if err != nil {
		return NodeSyncDecision{}, err
	}
	// As _sync_power_state_nodes_task and do_sync_power_state re-check under
	// the lock: what changed since the page was read wins.
	if n.SyncExcluded() || n.Maintenance || n.TargetPowerState != "" {
		return NodeSyncDecision{Action: SyncSkipped, Count: n.SyncFailures}, nil
	}
	old, count, maxRetries := n.PowerState, n.SyncFailures+1, a.Conductor.PowerStateSyncMaxRetries
	state, readErr := a.readPower(ctx, n)
	if old == "" && isConfigError(readErr) {
		// Ironic's validate failure: nothing read, nothing counted.
		return a.syncWrite(ctx, n, NodeSyncDecision{Action: SyncSkipped}, func(n *node.Node) { n.SyncFailures = 0 })
	}
	if readErr != nil {
		if count > maxRetries {
			actual := ""
			if errors.Is(readErr, errDriverError) {
				actual = node.PowerError
			}
			return a.maxRetriesExceeded(ctx, n, actual, count, readErr)
		}
		activity.GetLogger(ctx).Warn("could not get power state during sync", "node", n.UUID, "attempt", count, "max", maxRetries, "error", readErr.Error())
		return a.syncWrite(ctx, n, NodeSyncDecision{Action: SyncUnreadable, Count: count, Error: readErr.Error()},
			func(n *node.Node) { n.SyncFailures = count })
	}
	if old != "" && old != state && old != node.PowerError {
		// The hardware moved behind metalpower's back: record it if that
		// follows a change metalpower just made.
		a.checkConflict(ctx, n, state, "hardware")
	}
	d := NodeSyncDecision{PowerState: state}
	switch {
	case old != "" && old == state:
		d.Action = SyncInSync
		return a.syncWrite(ctx, n, d, func(n *node.Node) { n.SyncFailures, n.LastError = 0, "" })
	case old == "":
		// No previous state: take the hardware's and tell Nova.
		d.Action = SyncRecorded
		return a.notifyThenWrite(ctx, n, d, state, func(n *node.Node) { n.PowerState, n.LastError, n.SyncFailures = state, "", 0 })
	case count > maxRetries:
		return a.maxRetriesExceeded(ctx, n, state, count, nil)
	case a.Conductor.ForcePowerStateDuringSync && !n.DisablePowerOff && old == node.PowerError:
		// A recorded "error" cannot be pushed onto hardware: as Ironic's
		// node_power_action with no target, the force fails, is recorded
		// and counted, on the way to maintenance.
		d.Action, d.Count = SyncForceFailed, count
		msg := fmt.Sprintf("Failed to change power state to 'None' by '%s': the recorded power state can not be forced onto the hardware", old)
		return a.syncWrite(ctx, n, d, func(n *node.Node) { n.SyncFailures, n.LastError = count, msg })
	case a.Conductor.ForcePowerStateDuringSync && !n.DisablePowerOff:
		// Push the recorded state onto the hardware. A successful force
		// keeps the counter: only a later matching read resets it.
		d.Action, d.Count = SyncForce, count
		plan := NewPlan(n, old, 0, "sync", a.Conductor, a.IPMI)
		d.Plan = &plan
		return a.syncWrite(ctx, n, d, func(n *node.Node) {
			n.SyncFailures = count
			n.MarkTarget(old)
		})
	default:
		// Not forcing (or disable_power_off, which blocks forcing either
		// way): the hardware is right. last_error stays, as Ironic.
		d.Action, d.Count = SyncRecorded, count
		return a.notifyThenWrite(ctx, n, d, state, func(n *node.Node) { n.PowerState, n.SyncFailures = state, count })
	}
}

// maxRetriesExceeded is Ironic's handle_sync_power_state_max_retries_exceeded:
// record the state read, set last_error, enter maintenance with
// fault "power failure" unless an operator already put the node in
// maintenance, and tell Nova when the state changed.
func (a *Activities) maxRetriesExceeded(ctx context.Context, n *node.Node, actual string, count int, readErr error) (NodeSyncDecision, error) {
	old := n.PowerState
	msg := fmt.Sprintf("During sync_power_state, max retries exceeded for node %s, node state %s does not match expected state '%s'. Updating DB state to '%s' Switching node to maintenance mode.",
		n.UUID, pyStr(actual), pyStr(old), pyStr(actual))
	if readErr != nil {
		msg += " Error: " + readErr.Error()
	}
	d := NodeSyncDecision{Action: SyncMaintenance, Count: count, PowerState: actual}
	if readErr != nil {
		d.Error = readErr.Error()
	}
	entered := false
	change := func(n *node.Node) {
		n.PowerState, n.LastError, n.SyncFailures = actual, msg, count
		entered = !n.Maintenance
		if entered {
			n.Maintenance, n.MaintenanceReason, n.Fault = true, msg, node.FaultPowerFailure
		}
	}
	var err error
	if old != actual {
		d, err = a.notifyThenWrite(ctx, n, d, actual, change)
	} else {
		d, err = a.syncWrite(ctx, n, d, change)
	}
	if err != nil {
		return d, err
	}
	if entered {
		a.Metrics.MaintenanceEntered(metrics.MaintenancePowerFailure)
	}
	activity.GetLogger(ctx).Error(msg)
	return d, nil
}

// pyStr prints a state as Ironic's messages do: None for no state.
func pyStr(s string) string {
	if s == "" {
		return "None"
	}
	return s
}

// syncWrite applies a decision's change to the node.
// The write re-checks what the decision assumed, as do_sync_power_state re-checks under the lock: an
// operator may have put the node in maintenance, or a provision action
// moved it, while its BMC was being read; then the sync leaves it alone.
func (a *Activities) syncWrite(ctx context.Context, n *node.Node, d NodeSyncDecision, change func(*node.Node)) (NodeSyncDecision, error) {
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
func (a *Activities) notifyThenWrite(ctx context.Context, n *node.Node, d NodeSyncDecision, state string, change func(*node.Node)) (NodeSyncDecision, error) {
	// Nova hears nothing of a node the write would leave alone.
	fresh, err := a.Store.Get(ctx, n.UUID)
	if errors.Is(err, store.ErrNotFound) || (err == nil && changedDuringRead(fresh, d)) {
		return NodeSyncDecision{Action: SyncSkipped, Count: n.SyncFailures}, nil
	}
	if err != nil {
		return d, storeError(err)
	}
	nova, err := a.notifyFromSync(ctx, n, state)
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
func (a *Activities) notifyFromSync(ctx context.Context, n *node.Node, state string) (string, error) {
	if n.InstanceUUID == "" {
		return NovaNoInstance, nil
	}
	info := activity.GetInfo(ctx)
	return a.queueNova(ctx, PowerUpdate{InstanceUUID: n.InstanceUUID, NodeUUID: n.UUID, PowerState: state,
		ChangedAt: time.Now(), Source: info.WorkflowExecution.ID})
}
