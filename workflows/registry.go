package workflows

import (
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/metalpower/metalpower/activities"
)

// The schedules that start PowerSync and PowerFailureRecovery.
const (
	SyncScheduleID     = "power-sync"
	RecoveryScheduleID = "power-failure-recovery"
)

// WorkflowType is a workflow the worker runs, under its registered name,
// with the behaviour it has under Worker Deployment Versioning.
type WorkflowType struct {
	Name     string
	Fn       any
	Behavior workflow.VersioningBehavior
}

// Types lists every workflow type. The versioning behaviour of each
// follows from how long it lives (docs/operating.md, "Upgrading"):
//
//   - Pinned types finish on the build that started them, so changing them
//     never needs a GetVersion patch; the old build keeps running until its
//     pinned workflows are done (drained). Power changes last seconds to
//     minutes; a sync pass minutes (its pages continue as new on the same
//     build and its per-node children inherit the pin, so one pass never
//     mixes builds); recovery and provision moves seconds. The schedules start every new pass
//     on the current build.
//   - NovaNotify is AutoUpgrade: one notifier per instance lives as long
//     as Nova is unreachable (up to an hour of retries) and takes signals
//     from power changes of every build. Pinned, it would hold the old
//     build for that hour; it moves to the new build at its next workflow
//     task instead, so a change to it goes behind workflow.GetVersion.
func Types() []WorkflowType {
	const pinned, autoUpgrade = workflow.VersioningBehaviorPinned, workflow.VersioningBehaviorAutoUpgrade
	return []WorkflowType{
		{PowerChangeWorkflow, PowerChange, pinned},
		{activities.NovaNotifyWorkflow, NovaNotify, autoUpgrade},
		{PowerSyncWorkflow, PowerSync, pinned},
		{activities.NodePowerSyncWorkflow, NodePowerSync, pinned},
		{PowerFailureRecoveryWorkflow, PowerFailureRecovery, pinned},
		{NodeProvisionWorkflow, NodeProvision, pinned},
	}
}

// Handles only: workflows name activities by method, and the worker runs
// them on the values it registered (Register).
var (
	powerActs     *activities.Power
	novaActs      *activities.Nova
	passActs      *activities.SyncPass
	nodeSyncActs  *activities.NodeSync
	recoveryActs  *activities.Recovery
	provisionActs *activities.Provision
)

// Register adds types (Types() when nil) and the activity structs
// (activities.Power, Nova, SyncPass, NodeSync, Recovery, Provision) to a
// worker, or to a replayer. Each activity is registered under its method's
// name, the name the workflows' histories record.
func Register(r worker.Registry, types []WorkflowType, acts ...any) {
	if types == nil {
		types = Types()
	}
	for _, t := range types {
		r.RegisterWorkflowWithOptions(t.Fn, workflow.RegisterOptions{Name: t.Name, VersioningBehavior: t.Behavior})
	}
	for _, a := range acts {
		r.RegisterActivity(a)
	}
}
