package activities

import (
	"cmp"
	"context"
	"maps"
	"slices"

	"go.temporal.io/sdk/activity"

	"github.com/metalpower/metalpower/internal/dispatch"
	"github.com/metalpower/metalpower/internal/node"
	"github.com/metalpower/metalpower/internal/store"
)

// GroupsInput asks which conductor groups a pass hands work to.
type GroupsInput struct {
	// Base was the default group's task queue, where passes ran; the
	// worker's [temporal] task_queue is used now.
	Base string `json:"base"`
	// Recovery: the power-failure recovery's nodes, not the sync's.
	Recovery bool `json:"recovery,omitempty"`
}

// Groups is what a pass hands to each conductor group.
type Groups struct {
	// Served are the groups with nodes to check and a live worker, the
	// default group ("") first.
	Served []string `json:"served,omitempty"`
	// Unserved counts the nodes of each group no live worker serves: as
	// in Ironic, nobody checks them until one of the group's workers is
	// back.
	Unserved map[string]int `json:"unserved,omitempty"`
	// UnservedNodes is their sum.
	UnservedNodes int `json:"unserved_nodes,omitempty"`
	// Base is [temporal] task_queue, from which each group's queue is
	// named (dispatch.Queue), whatever queue the pass runs on.
	Base string `json:"base,omitempty"`
}

// syncFilter is Ironic's _sync_power_states query: not in maintenance, not
// in an excluded provision state, no power change in progress.
func syncFilter() store.Filter {
	return store.Filter{
		Maintenance: store.Bool(false), TargetPowerStateSet: store.Bool(false),
		ExcludeProvisionStates: node.SyncExcludedStates,
	}
}

// recoveryFilter is Ironic's _power_failure_recovery query (enroll nodes
// are counted as skipped by the recovery itself).
func recoveryFilter() store.Filter {
	return store.Filter{Maintenance: store.Bool(true), Fault: node.FaultPowerFailure, TargetPowerStateSet: store.Bool(false)}
}

// ServedGroups lists the conductor groups that have nodes for the pass,
// and whether a live worker serves each (this worker serves its own).
func (a *SyncPass) ServedGroups(ctx context.Context, in GroupsInput) (Groups, error) {
	base := cmp.Or(a.Queues.BaseQueue, in.Base)
	f := syncFilter()
	if in.Recovery {
		f = recoveryFilter()
	}
	counts, err := a.Store.Groups(ctx, f)
	if err != nil {
		return Groups{}, storeError(err)
	}
	res := Groups{Base: base}
	for _, g := range slices.Sorted(maps.Keys(counts)) {
		live := dispatch.Queue(base, g) == a.Queues.TaskQueue
		if !live {
			if live, err = dispatch.Live(ctx, a.Queues.Temporal, dispatch.Queue(base, g)); err != nil {
				return Groups{}, err
			}
		}
		if live {
			res.Served = append(res.Served, g)
			continue
		}
		if res.Unserved == nil {
			res.Unserved = map[string]int{}
		}
		res.Unserved[g] = counts[g]
		res.UnservedNodes += counts[g]
		activity.GetLogger(ctx).Warn("no live worker serves this conductor group: its nodes are not checked",
			"conductor_group", g, "nodes", counts[g], "task_queue", dispatch.Queue(base, g))
	}
	return res, nil
}
