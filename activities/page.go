// The sync pass's page reads: which nodes a pass reads, how many at once,
// and what it hands on to the per-node syncs.

package activities

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"

	"github.com/metalpower/metalpower/internal/config"
	"github.com/metalpower/metalpower/internal/metrics"
	"github.com/metalpower/metalpower/internal/node"
	"github.com/metalpower/metalpower/internal/powersync"
	"github.com/metalpower/metalpower/internal/store"
)

// SyncPass runs a sync pass's steps (Ironic's _sync_power_states):
// ServedGroups, ClearStaleTargets, ReadPowerStates page by page, and
// RunNodeSyncs for the nodes a page found out of sync. The recovery pass
// asks ServedGroups too.
type SyncPass struct {
	Store store.Store
	BMCs  BMCs
	// Conductor's sync_power_state_workers bounds the reads in flight.
	Conductor config.Conductor
	// Temporal starts the per-node syncs and asks whether a workflow
	// holds a node's lock.
	Temporal client.Client
	Queues   Queues
	// Metrics records the domain metrics; nil records nothing.
	Metrics *metrics.Metrics
	// StaleTargetAge is how long a target_power_state with no workflow
	// holding the node's lock stands before a sync pass clears it;
	// DefaultStaleTargetAge when 0.
	StaleTargetAge time.Duration
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
func (a *SyncPass) ReadPowerStates(ctx context.Context, in SyncPageInput) (SyncPage, error) {
	if in.Group != nil {
		if err := a.Queues.serves(*in.Group, ""); err != nil {
			return SyncPage{}, err
		}
	}
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
	query := func(after *store.Position, limit int) store.Query {
		return store.Query{Filter: f, SortKey: "sync_failures", SortDir: "desc", After: after, Limit: limit}
	}
	position := func(n *node.Node) *store.Position { return &store.Position{Value: n.SyncFailures, ID: n.ID} }

	type outcome struct {
		candidate *SyncCandidate
		reset     bool
	}
	var (
		// Node i is written before it is fed to the readers.
		all      = make([]*node.Node, in.Limit)
		fed      int
		results  = make([]outcome, in.Limit)
		found    atomic.Int64 // candidates so far
		finished atomic.Int64 // nodes read so far
	)
	err := pool(ctx, a.Conductor.SyncPowerStateWorkers, in.Limit, func(feed func(i int) bool) error {
		// The next chunk is read from the store while this one is fed,
		// so the readers never wait on the store between chunks.
		type chunk struct {
			nodes []*node.Node
			asked int
			err   error
		}
		chunks, stop := make(chan chunk, 1), make(chan struct{})
		defer close(stop)
		go func() {
			defer close(chunks)
			for at, read := after, 0; read < in.Limit; {
				asked := min(syncChunk, in.Limit-read)
				c, err := a.Store.List(ctx, query(at, asked))
				select {
				case chunks <- chunk{c, asked, err}:
				case <-stop:
					return
				}
				if err != nil || len(c) < asked {
					return
				}
				read, at = read+len(c), position(c[len(c)-1])
			}
		}()
		for c := range chunks {
			if c.err != nil {
				return storeError(c.err)
			}
			// Every node not read yet may still be a candidate.
			if int(found.Load())+fed-int(finished.Load())+len(c.nodes) > pageCandidates {
				return nil
			}
			for _, nd := range c.nodes {
				all[fed] = nd
				if !feed(fed) {
					return ctx.Err()
				}
				fed++
			}
			if len(c.nodes) > 0 {
				after = position(c.nodes[len(c.nodes)-1])
			}
			if len(c.nodes) < c.asked {
				page.Done = true
				return nil
			}
		}
		// A full page: one node more says whether another page follows,
		// which saves the pass a page read that finds nothing.
		more, err := a.Store.ListVersions(ctx, query(after, 1))
		page.Done = err == nil && len(more) == 0
		return storeError(err)
	}, func(i int) {
		n := all[i]
		r := readForSync(ctx, a.BMCs, n)
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
	nodes := all[:fed]
	if len(nodes) > 0 {
		last := nodes[len(nodes)-1]
		page.After = &SyncPosition{Failures: last.SyncFailures, ID: last.ID}
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

// paced reports whether a call to n's BMC may wait for its driver's spacing
// between commands ([ipmi] min_command_interval).
func (a *SyncPass) paced(n *node.Node) bool {
	return a.BMCs.Paced(n)
}

// syncWindow is how many per-node syncs run at once: enough to keep BMCs
// busy, few enough to stay far from Temporal's 2,000 pending children.
func syncWindow(workers int) int { return min(max(workers/4, 8), 100) }

// forEach runs fn for 0..n-1 with workers (sync_power_state_workers)
// goroutines, heartbeating progress.
func forEach(ctx context.Context, workers, n int, fn func(i int)) {
	pool(ctx, workers, n, func(feed func(int) bool) error {
		for i := 0; i < n && feed(i); i++ {
		}
		return nil
	}, fn)
}

// pool runs do for every index produce feeds it (at most most), with
// workers (sync_power_state_workers) goroutines, heartbeating progress.
// feed reports false once ctx is done; produce's error is pool's.
func pool(ctx context.Context, workers, most int, produce func(feed func(i int) bool) error, do func(i int)) error {
	next := make(chan int)
	var wg sync.WaitGroup
	for range max(1, min(workers, most)) {
		wg.Go(func() {
			for i := range next {
				do(i)
			}
		})
	}
	fed := 0
	err := produce(func(i int) bool {
		if fed%256 == 0 && activity.IsActivity(ctx) {
			activity.RecordHeartbeat(ctx, fed)
		}
		fed++
		select {
		case next <- i:
			return true
		case <-ctx.Done():
			return false
		}
	})
	close(next)
	wg.Wait()
	return err
}
