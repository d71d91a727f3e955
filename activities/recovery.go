package activities

import (
	"context"
	"errors"

	"github.com/metalpower/metalpower/internal/config"
	"github.com/metalpower/metalpower/internal/metrics"
	"github.com/metalpower/metalpower/internal/node"
	"github.com/metalpower/metalpower/internal/store"
)

// Recovery is Ironic's _power_failure_recovery: RecoverPowerFailures,
// and RecoverGroup for one conductor group's nodes.
type Recovery struct {
	Store store.Store
	BMCs  BMCs
	// Conductor's sync_power_state_workers bounds the reads in flight.
	Conductor config.Conductor
	Queues    Queues
	// Nova hears of the states a recovery records.
	Nova *Nova
	// Metrics records the domain metrics; nil records nothing.
	Metrics *metrics.Metrics
}

// RecoveryResult is what a recovery pass did.
type RecoveryResult struct {
	Checked   int `json:"checked"`
	Recovered int `json:"recovered"`
	// StillFailing nodes stay in maintenance until a later pass reads them.
	StillFailing int `json:"still_failing"`
	Skipped      int `json:"skipped"`
}

// RecoverPowerFailures is Ironic's _power_failure_recovery: it reads
// every node in maintenance with fault "power failure" (not enroll, no
// power change in progress); one successful read clears maintenance, its
// reason and the fault, records the state and tells Nova when it changed.
// last_error stays. A failed read changes nothing. Operator maintenance
// has no fault and is never selected.
func (a *Recovery) RecoverPowerFailures(ctx context.Context) (RecoveryResult, error) {
	return a.recoverPowerFailures(ctx, nil)
}

// RecoverGroup is RecoverPowerFailures for the nodes of one conductor
// group, run on that group's workers.
func (a *Recovery) RecoverGroup(ctx context.Context, group string) (RecoveryResult, error) {
	if err := a.Queues.serves(group, ""); err != nil {
		return RecoveryResult{}, err
	}
	return a.recoverPowerFailures(ctx, &group)
}

func (a *Recovery) recoverPowerFailures(ctx context.Context, group *string) (RecoveryResult, error) {
	var res RecoveryResult
	var after *store.Position
	f := recoveryFilter()
	f.ConductorGroup = group
	for {
		nodes, err := a.Store.List(ctx, store.Query{Filter: f, After: after, Limit: SyncPageSize})
		if err != nil {
			return res, storeError(err)
		}
		states := make([]string, len(nodes))
		errs := make([]error, len(nodes))
		forEach(ctx, a.Conductor.SyncPowerStateWorkers, len(nodes), func(i int) {
			if nodes[i].ProvisionState != node.Enroll {
				states[i], errs[i] = readPower(ctx, a.BMCs, nodes[i])
			}
		})
		for i, n := range nodes {
			res.Checked++
			switch {
			case n.ProvisionState == node.Enroll:
				res.Skipped++
			case errs[i] != nil:
				res.StillFailing++
			default:
				recovered, err := a.recover(ctx, n, states[i])
				if err != nil {
					return res, err
				}
				if recovered {
					res.Recovered++
				} else {
					res.Skipped++
				}
			}
		}
		if len(nodes) < SyncPageSize {
			return res, nil
		}
		after = &store.Position{Value: nodes[len(nodes)-1].ID, ID: nodes[len(nodes)-1].ID}
	}
}

var errNoLongerFailed = errors.New("no longer in power failure")

// recover is Ironic's handle_recovery, written only if the node is still
// in power-failure maintenance with no change in progress.
func (a *Recovery) recover(ctx context.Context, n *node.Node, state string) (bool, error) {
	old := n.PowerState
	stillFailed := func(n *node.Node) bool {
		return n.Maintenance && n.Fault == node.FaultPowerFailure && n.TargetPowerState == ""
	}
	if old != state {
		// Queued first, for the reason notifyThenWrite gives; Nova hears
		// nothing of a node the write would leave alone.
		fresh, err := a.Store.Get(ctx, n.UUID)
		if errors.Is(err, store.ErrNotFound) || (err == nil && !stillFailed(fresh)) {
			return false, nil
		}
		if err != nil {
			return false, storeError(err)
		}
		if _, err := notifyFromSync(ctx, a.Nova, n, state); err != nil {
			return false, err
		}
	}
	_, err := store.Modify(ctx, a.Store, n.UUID, func(n *node.Node) error {
		if !stillFailed(n) {
			return errNoLongerFailed
		}
		n.PowerState, n.Maintenance, n.MaintenanceReason, n.Fault = state, false, "", ""
		return nil
	})
	if errors.Is(err, errNoLongerFailed) || errors.Is(err, store.ErrNotFound) {
		// Changed or deleted while its BMC was read: as Ironic, skip it.
		return false, nil
	}
	if err != nil {
		return false, storeError(err)
	}
	a.Metrics.Recovered()
	return true, nil
}
