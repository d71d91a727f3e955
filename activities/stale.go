package activities

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.temporal.io/sdk/activity"

	"github.com/metalpower/metalpower/internal/dispatch"
	"github.com/metalpower/metalpower/internal/node"
	"github.com/metalpower/metalpower/internal/store"
)

// DefaultStaleTargetAge is how long a target_power_state must have stood,
// with no workflow holding the node's lock, before a sync pass clears it.
// Starters record the target a moment before they start the workflow;
// this leaves them ample time.
const DefaultStaleTargetAge = time.Minute

// staleTargetLimit bounds the nodes one pass looks at.
const staleTargetLimit = 1000

// StaleTargetAborted is the last_error of a node whose stale target was
// cleared, after Ironic's "Pending power operation was aborted due to
// conductor take over".
const StaleTargetAborted = "Pending power operation was aborted: no workflow holds the node's lock (%s) any more."

// ClearStaleTargets is clearStaleTargets as the first step of a sync pass,
// visible in its history. A local activity.
func (a *SyncPass) ClearStaleTargets(ctx context.Context) (int, error) {
	return a.clearStaleTargets(ctx)
}

// clearStaleTargets is Ironic's clearing of targets left by a conductor
// that died (at its restart, and by _check_orphan_nodes): a
// target_power_state whose power change no longer runs keeps the node out
// of every sync pass and recovery. That happens when the workflow was
// terminated by hand, when a worker died between a per-node sync's
// decision to force (which records the target) and the end of that
// workflow task (the retried decision then sees a change in progress and
// skips), or when the process that marked a change died before starting
// it. Nodes marked more than the stale age ago whose lock no workflow
// holds get the target cleared, with last_error (and an ERROR "takeover"
// event in the node history) saying why; the pass then syncs them. Nodes
// in maintenance are left alone, as Ironic's _check_orphan_nodes does: the
// operator's work on them comes first, and the first pass after
// maintenance ends clears them. A lock that cannot be checked (Temporal
// unreachable) leaves the node alone. It returns how many nodes it
// cleared.
func (a *SyncPass) clearStaleTargets(ctx context.Context) (int, error) {
	age := a.StaleTargetAge
	if age == 0 {
		age = DefaultStaleTargetAge
	}
	nodes, err := a.Store.List(ctx, store.Query{
		Filter: store.Filter{TargetPowerStateSet: store.Bool(true), Maintenance: store.Bool(false), UpdatedBefore: time.Now().Add(-age)},
		Limit:  staleTargetLimit,
	})
	if err != nil || len(nodes) == 0 || a.Temporal == nil {
		return 0, err
	}
	cleared := 0
	for _, n := range nodes {
		lock := dispatch.LockID(n.UUID)
		if held, err := dispatch.Held(ctx, a.Temporal, n.UUID); held || err != nil {
			continue
		}
		msg := fmt.Sprintf(StaleTargetAborted, lock)
		target := ""
		_, err = store.Modify(ctx, a.Store, n.UUID, func(m *node.Node) error {
			// Only the target as it was read: anything written since
			// (a new change was marked) is left alone.
			if m.Version != n.Version || m.TargetPowerState == "" || m.Maintenance {
				return errNoLongerStale
			}
			target, m.TargetPowerState, m.LastError = m.TargetPowerState, "", msg
			return nil
		})
		if errors.Is(err, errNoLongerStale) || errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return cleared, storeError(err)
		}
		cleared++
		if activity.IsActivity(ctx) {
			activity.GetLogger(ctx).Warn("cleared a stale target_power_state", "node", n.UUID, "target", target, "lock", lock)
		}
		if err := a.Store.AddEvent(ctx, store.Event{NodeUUID: n.UUID, Severity: "ERROR", Type: store.EventTakeover,
			Via: ViaSync, Event: msg}); err != nil && activity.IsActivity(ctx) {
			activity.GetLogger(ctx).Warn("cannot record node history", "node", n.UUID, "error", err.Error())
		}
	}
	return cleared, nil
}

var errNoLongerStale = errors.New("target changed since it was read")
