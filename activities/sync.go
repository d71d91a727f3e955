package activities

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"go.temporal.io/sdk/activity"

	"github.com/metalpower/metalpower/internal/metrics"
	"github.com/metalpower/metalpower/internal/node"
	"github.com/metalpower/metalpower/internal/powersync"
	"github.com/metalpower/metalpower/internal/store"
)

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

// SyncPageInput asks for the next page of a sync pass.
type SyncPageInput struct {
	// After is where the previous page ended.
	After *SyncPosition `json:"after,omitempty"`
	// PassStart is set by the first page: nodes written after it are left
	// for the next pass (they were just changed, or already synced here).
	PassStart time.Time `json:"pass_start,omitempty"`
	Limit     int       `json:"limit,omitempty"`
	// StaleTargetsCleared: the pass ran ClearStaleTargets as a step of its
	// own. Passes started by older builds leave it to the first page.
	StaleTargetsCleared bool `json:"stale_targets_cleared,omitempty"`
	// Group keeps the nodes of one conductor group, read on that group's
	// worker; nil (passes of builds before groups) reads every node.
	Group *string `json:"group,omitempty"`
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
	// ReadError is why the page could not read the BMC: that read is the
	// pass's one read of the node, counted as its failure.
	ReadError   string `json:"read_error,omitempty"`
	DriverError bool   `json:"driver_error,omitempty"`
	// Paced: the node's BMC is an IPMI one with [ipmi]
	// min_command_interval, so reading or setting it may wait seconds for
	// its pace: the per-node sync does that in activities of its own, not
	// inside a workflow task.
	Paced bool `json:"paced,omitempty"`
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

// SyncPageSize bounds the candidates one page returns: they must fit in
// one payload (2 MB) even when every node drifted.
const SyncPageSize = 5000

// SyncPageNodes bounds the nodes one page reads. A page reads them from
// the store syncChunk at a time, feeding one pool of readers, so the
// reads of a chunk overlap those of the one before instead of waiting for
// its slowest BMC; a fleet in sync is read in few pages, each one
// activity and a few history events.
const SyncPageNodes = 20000

// The store chunk a page reads at a time, and the candidates it may
// return; variables for the tests.
var (
	syncChunk      = 1000
	pageCandidates = SyncPageSize
)

// ReadPowerStates reads one page of sync-eligible nodes (Ironic's
// _sync_power_states query and _sync_power_state_nodes_task's checks: not
// in maintenance, not in an excluded provision state, no power change in
// progress), most failures first, with sync_power_state_workers
// reads in flight. Nodes that match their record need no further work:
// their counters and last_error are reset here in one batch. The rest are
// returned as candidates for a per-node sync under the node's lock; a
// page ends early rather than return more than SyncPageSize of them.
func (a *Activities) ReadPowerStates(ctx context.Context, in SyncPageInput) (SyncPage, error) {
	cleared := 0
	if in.After == nil && in.PassStart.IsZero() && !in.StaleTargetsCleared {
		// First page of a pass from an older build: targets left by
		// changes that no longer run are cleared first, so this pass syncs
		// those nodes.
		var err error
		if cleared, err = a.clearStaleTargets(ctx); err != nil {
			return SyncPage{}, err
		}
	}
	first := in.PassStart.IsZero()
	if first {
		in.PassStart = time.Now()
	}
	if in.Limit <= 0 || in.Limit > SyncPageNodes {
		in.Limit = SyncPageNodes
	}
	page := SyncPage{PassStart: in.PassStart, Window: syncWindow(a.Conductor.SyncPowerStateWorkers), ClearedTargets: cleared}
	var after *store.Position
	if in.After != nil {
		after = &store.Position{Value: in.After.Failures, ID: in.After.ID}
	}
	f := syncFilter()
	f.UpdatedBefore, f.ConductorGroup = in.PassStart, in.Group
	nextChunk := func(limit int) ([]*node.Node, error) {
		nodes, err := a.Store.List(ctx, store.Query{Filter: f, SortKey: "sync_failures", SortDir: "desc", After: after, Limit: limit})
		if err != nil {
			return nil, storeError(err)
		}
		if len(nodes) > 0 {
			last := nodes[len(nodes)-1]
			after = &store.Position{Value: last.SyncFailures, ID: last.ID}
			page.After = &SyncPosition{Failures: last.SyncFailures, ID: last.ID}
		}
		return nodes, nil
	}

	type outcome struct {
		candidate *SyncCandidate
		reset     bool
	}
	var (
		nodes    []*node.Node
		results  = make([]outcome, in.Limit)
		found    atomic.Int64 // candidates so far
		finished atomic.Int64 // nodes read so far
	)
	err := a.pool(ctx, in.Limit, func(feed func(i int, n *node.Node) bool) error {
		for len(nodes) < in.Limit {
			n := min(syncChunk, in.Limit-len(nodes))
			// Every node not read yet may still be a candidate.
			if int(found.Load())+len(nodes)-int(finished.Load())+n > pageCandidates {
				return nil
			}
			chunk, err := nextChunk(n)
			if err != nil {
				return err
			}
			for _, nd := range chunk {
				nodes = append(nodes, nd)
				if !feed(len(nodes)-1, nd) {
					return ctx.Err()
				}
			}
			if len(chunk) < n {
				page.Done = true
				return nil
			}
		}
		// A full page: one node more says whether another page follows,
		// which saves the pass a page read that finds nothing.
		more, err := a.Store.ListVersions(ctx, store.Query{Filter: f, SortKey: "sync_failures", SortDir: "desc", After: after, Limit: 1})
		page.Done = err == nil && len(more) == 0
		return storeError(err)
	}, func(i int, n *node.Node) {
		r := a.read(ctx, n)
		inSync, reason := powersync.Triage(n, r)
		switch {
		case reason != "":
			results[i].candidate = &SyncCandidate{UUID: n.UUID, Name: n.Name, Reason: reason, Paced: a.paced(n)}
			if r.Err != nil {
				results[i].candidate.ReadError, results[i].candidate.DriverError = r.Err.Error(), r.DriverError
			}
			found.Add(1)
		case inSync:
			results[i].reset = n.SyncFailures > 0 || n.LastError != ""
		}
		finished.Add(1)
	})
	if err != nil {
		return page, err
	}
	var resets []store.Versioned
	for i, r := range results[:len(nodes)] {
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
	if first {
		a.Metrics.NodesOutOfSync(len(page.Candidates))
	} else {
		a.Metrics.AddNodesOutOfSync(len(page.Candidates))
	}
	return page, nil
}

// paced reports whether a call to n's BMC may wait for the IPMI spacing.
func (a *Activities) paced(n *node.Node) bool {
	return n.Driver == node.DriverIPMI && a.IPMI.MinCommandInterval > 0
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

// pool runs read for every node produce feeds it (at most most), with
// sync_power_state_workers goroutines, heartbeating progress. feed
// reports false once ctx is done; produce's error is pool's.
func (a *Activities) pool(ctx context.Context, most int, produce func(feed func(i int, n *node.Node) bool) error, read func(i int, n *node.Node)) error {
	type item struct {
		i int
		n *node.Node
	}
	next := make(chan item)
	var wg sync.WaitGroup
	for range max(1, min(a.Conductor.SyncPowerStateWorkers, most)) {
		wg.Go(func() {
			for it := range next {
				read(it.i, it.n)
			}
		})
	}
	fed := 0
	err := produce(func(i int, n *node.Node) bool {
		if fed%256 == 0 && activity.IsActivity(ctx) {
			activity.RecordHeartbeat(ctx, fed)
		}
		fed++
		select {
		case next <- item{i, n}:
			return true
		case <-ctx.Done():
			return false
		}
	})
	close(next)
	wg.Wait()
	return err
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
	Plan *Plan `json:"plan,omitempty"`
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
func (a *Activities) SyncNode(ctx context.Context, uuid string) (NodeSyncDecision, error) {
	n, err := a.loadNode(ctx, uuid)
	if err != nil {
		return NodeSyncDecision{}, err
	}
	if powersync.Skip(n) {
		return NodeSyncDecision{Action: SyncSkipped, Count: n.SyncFailures}, nil
	}
	return a.decide(ctx, n, a.read(ctx, n))
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
func (a *Activities) SyncFailedRead(ctx context.Context, in FailedRead) (NodeSyncDecision, error) {
	n, err := a.loadNode(ctx, in.NodeUUID)
	if err != nil {
		return NodeSyncDecision{}, err
	}
	if powersync.Skip(n) {
		return NodeSyncDecision{Action: SyncSkipped, Count: n.SyncFailures}, nil
	}
	return a.decide(ctx, n, powersync.Read{Err: errors.New(in.Error), DriverError: in.DriverError})
}

func (a *Activities) decide(ctx context.Context, n *node.Node, r powersync.Read) (NodeSyncDecision, error) {
	d := powersync.Decide(n, r, powersync.Rules{Force: a.Conductor.ForcePowerStateDuringSync, MaxRetries: a.Conductor.PowerStateSyncMaxRetries})
	return a.applySync(ctx, n, r, d)
}

// applySync carries out a decision: the node's record, Nova, the force's
// plan, maintenance.
func (a *Activities) applySync(ctx context.Context, n *node.Node, r powersync.Read, d powersync.Decision) (NodeSyncDecision, error) {
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
		a.checkConflict(ctx, n, r.State, "hardware")
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
		plan := NewPlan(n, d.Target, 0, ViaSync, a.Conductor, a.IPMI)
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
		Source: ViaSync, Event: d.LastError}); err != nil {
		activity.GetLogger(ctx).Warn("could not record the node history event", "node", n.UUID, "error", err.Error())
	}
	activity.GetLogger(ctx).Error(d.LastError)
	return out, nil
}

// read reads a node's hardware state for the sync's rules: a driver that
// cannot address the BMC and one that answers "error" are told apart.
func (a *Activities) read(ctx context.Context, n *node.Node) powersync.Read {
	state, err := a.readPower(ctx, n)
	return powersync.Read{State: state, Err: err, ConfigError: node.InvalidDriverInfo(err), DriverError: errors.Is(err, errDriverError)}
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
