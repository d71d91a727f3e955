package workflows

import (
	"errors"
	"fmt"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/metalpower/metalpower/activities"
	"github.com/metalpower/metalpower/internal/dispatch"
)

// Registered type names of the sync workflows; NodePowerSync's,
// activities.NodePowerSyncWorkflow, is named where RunNodeSyncs starts it.
const (
	PowerSyncWorkflow            = "PowerSync"
	PowerFailureRecoveryWorkflow = "PowerFailureRecovery"
)

// PowerSyncInput carries a pass across continue-as-new.
type PowerSyncInput struct {
	After     *activities.SyncPosition `json:"after,omitempty"`
	PassStart time.Time                `json:"pass_start,omitempty"`
	Counts    activities.SyncCounts    `json:"counts"`
	Pages     int                      `json:"pages"`
	// StartedAt is when the pass began (its first run).
	StartedAt time.Time `json:"started_at,omitempty"`
	// Routed passes read each conductor group on its own workers, Groups
	// holding those still to read, the current one first. Passes of
	// builds before groups are not routed.
	Routed bool     `json:"routed,omitempty"`
	Groups []string `json:"groups,omitempty"`
	// Base is [temporal] task_queue, from which each group's queue is
	// named; passes of builds before it named them from their own queue.
	Base string `json:"base,omitempty"`
}

// PowerSyncResult is a finished pass.
type PowerSyncResult struct {
	activities.SyncCounts
	Pages    int     `json:"pages"`
	Duration float64 `json:"duration_seconds"`
}

// SyncProgress answers the "progress" query.
type SyncProgress struct {
	activities.SyncCounts
	Pages    int  `json:"pages"`
	InFlight int  `json:"node_syncs_in_flight"`
	Done     bool `json:"done"`
}

// PowerSync is one pass of the periodic power sync (Ironic's
// _sync_power_states): it reads every eligible node's hardware page by
// page, most failures first, with bounded concurrency in one activity per
// page. Matching nodes cost nothing more; each other node gets a
// NodePowerSync under its lock ID, a sliding window of them at a time,
// started by one activity per page (runNodeSyncs); a node whose lock is
// held (a power change is running) is skipped this pass. Long passes
// continue as new between pages.
func PowerSync(ctx workflow.Context, in PowerSyncInput) (PowerSyncResult, error) {
	if in.StartedAt.IsZero() {
		in.StartedAt = workflow.Now(ctx)
	}
	counts, pages := in.Counts, in.Pages
	inFlight, done := 0, false
	if err := workflow.SetQueryHandler(ctx, "progress", func() (SyncProgress, error) {
		return SyncProgress{SyncCounts: counts, Pages: pages, InFlight: inFlight, Done: done}, nil
	}); err != nil {
		return PowerSyncResult{}, err
	}
	after, passStart := in.After, in.PassStart
	routed, groups, base := in.Routed, in.Groups, in.Base
	staleCleared := false
	if after == nil && passStart.IsZero() && !routed {
		if workflow.GetVersion(ctx, staleTargetsStep, workflow.DefaultVersion, 1) == 1 {
			// Targets left by changes that no longer run are cleared
			// first, as a step of its own, so this pass syncs those nodes.
			if err := workflow.ExecuteLocalActivity(localCtx(ctx), passActs.ClearStaleTargets).Get(ctx, nil); err != nil {
				return PowerSyncResult{}, err
			}
			staleCleared = true
		}
		if workflow.GetVersion(ctx, conductorGroupsStep, workflow.DefaultVersion, 1) == 1 {
			served, err := servedGroups(ctx, false, &counts.NoWorker)
			if err != nil {
				return PowerSyncResult{}, err
			}
			routed, groups, base = true, served.Served, served.Base
		}
	}
	if base == "" {
		base = workflow.GetInfo(ctx).TaskQueueName
	}
	for !routed || len(groups) > 0 {
		req := activities.SyncPageInput{After: after, PassStart: passStart, StaleTargetsCleared: staleCleared}
		opts := workflow.ActivityOptions{
			Summary:             fmt.Sprintf("read power states, page %d", pages+1),
			StartToCloseTimeout: 10 * time.Minute, HeartbeatTimeout: time.Minute,
			RetryPolicy: &temporal.RetryPolicy{InitialInterval: time.Second, MaximumAttempts: 3},
		}
		queue := ""
		if routed {
			req.Group, queue = &groups[0], dispatch.Queue(base, groups[0])
			opts.TaskQueue, opts.ScheduleToStartTimeout = queue, dispatch.Pickup
			opts.Summary = fmt.Sprintf("read power states, page %d (conductor group %q)", pages+1, groups[0])
		}
		var page activities.SyncPage
		err := workflow.ExecuteActivity(workflow.WithActivityOptions(ctx, opts), passActs.ReadPowerStates, req).Get(ctx, &page)
		switch {
		case routed && dispatch.NoPickup(err):
			// Its workers went away since the pass began: the group is
			// skipped, as a group nobody serves.
			workflow.GetLogger(ctx).Warn("no worker of the conductor group took its page: the group is skipped this pass",
				"conductor_group", groups[0], "task_queue", queue)
			page.Done = true
		case err != nil:
			return PowerSyncResult{}, err
		default:
			pages++
			passStart = page.PassStart
			counts.Checked += page.Checked
			counts.InSync += page.InSync
			if err := runNodeSyncs(ctx, page, &counts, &inFlight, queue); err != nil {
				return PowerSyncResult{}, err
			}
		}
		after = page.After
		if page.Done {
			if !routed {
				break
			}
			groups, after = groups[1:], nil
			continue
		}
		if workflow.GetInfo(ctx).GetContinueAsNewSuggested() || workflow.GetInfo(ctx).GetCurrentHistoryLength() > 10000 {
			return PowerSyncResult{}, workflow.NewContinueAsNewError(ctx, PowerSyncWorkflow,
				PowerSyncInput{After: after, PassStart: passStart, Counts: counts, Pages: pages, StartedAt: in.StartedAt, Routed: routed, Groups: groups, Base: base})
		}
	}
	done = true
	return PowerSyncResult{SyncCounts: counts, Pages: pages, Duration: workflow.Now(ctx).Sub(in.StartedAt).Seconds()}, nil
}

// staleTargetsStep versions PowerSync's first step: passes started before
// it cleared stale targets inside their first page read.
const staleTargetsStep = "stale-targets-step"

// conductorGroupsStep versions the routing of passes by conductor group:
// passes started before it read every node on the pass's own worker.
const conductorGroupsStep = "conductor-groups"

// servedGroups asks which conductor groups have nodes for the pass and a
// live worker, and adds the nodes of the others to noWorker.
func servedGroups(ctx workflow.Context, recovery bool, noWorker *int) (activities.Groups, error) {
	var g activities.Groups
	err := workflow.ExecuteLocalActivity(localCtx(ctx), passActs.ServedGroups,
		activities.GroupsInput{Base: workflow.GetInfo(ctx).TaskQueueName, Recovery: recovery}).Get(ctx, &g)
	*noWorker += g.UnservedNodes
	if g.Base == "" {
		// Recorded by a build before Base.
		g.Base = workflow.GetInfo(ctx).TaskQueueName
	}
	return g, err
}

// nodeSyncsStep versions how a pass runs its per-node syncs: passes
// started before it run them as children, about 4 events each in the
// pass's history.
const nodeSyncsStep = "node-syncs-activity"

// runNodeSyncs runs a page's per-node syncs: in one activity (on a worker
// of the nodes' group) that starts them under their locks and waits for
// them, or as children in passes started before that.
func runNodeSyncs(ctx workflow.Context, page activities.SyncPage, counts *activities.SyncCounts, inFlight *int, queue string) error {
	if len(page.Candidates) == 0 {
		return nil
	}
	if workflow.GetVersion(ctx, nodeSyncsStep, workflow.DefaultVersion, 1) == workflow.DefaultVersion {
		syncNodes(ctx, page.Candidates, page.Window, counts, inFlight, queue)
		return nil
	}
	opts := workflow.ActivityOptions{
		Summary: fmt.Sprintf("sync %d nodes under their locks", len(page.Candidates)),
		// Each per-node sync is bounded by its own timeouts; the
		// heartbeat tells a lost worker, whose retry resumes.
		StartToCloseTimeout: 6 * time.Hour, HeartbeatTimeout: time.Minute,
		RetryPolicy: &temporal.RetryPolicy{InitialInterval: time.Second, MaximumInterval: time.Minute},
	}
	nodesQueue := workflow.GetInfo(ctx).TaskQueueName
	if queue != "" {
		opts.TaskQueue, opts.ScheduleToStartTimeout, nodesQueue = queue, dispatch.Pickup, queue
	}
	*inFlight = len(page.Candidates)
	var part activities.SyncCounts
	err := workflow.ExecuteActivity(workflow.WithActivityOptions(ctx, opts), passActs.RunNodeSyncs, activities.NodeSyncsInput{
		Candidates: page.Candidates, Window: page.Window, TaskQueue: nodesQueue, Pass: workflow.GetInfo(ctx).WorkflowExecution.ID,
	}).Get(ctx, &part)
	*inFlight = 0
	if dispatch.NoPickup(err) {
		// The group's workers went away since its page was read.
		workflow.GetLogger(ctx).Warn("no worker of the conductor group took its node syncs: they are skipped this pass", "task_queue", queue)
		counts.Skipped += len(page.Candidates)
		return nil
	}
	if err != nil {
		return err
	}
	counts.Merge(part)
	return nil
}

// syncNodes runs a NodePowerSync child for each candidate, at most window
// at a time, and adds up their outcomes.
func syncNodes(ctx workflow.Context, candidates []activities.SyncCandidate, window int, counts *activities.SyncCounts, inFlight *int, queue string) {
	if window <= 0 {
		window = 8
	}
	sel := workflow.NewSelector(ctx)
	pending := 0
	collect := func(f workflow.Future) {
		pending--
		*inFlight = pending
		var res activities.NodeSyncResult
		err := f.Get(ctx, &res)
		var started *temporal.ChildWorkflowExecutionAlreadyStartedError
		switch {
		case errors.As(err, &started):
			counts.Add(activities.SyncLocked)
		case err != nil:
			workflow.GetLogger(ctx).Error("node sync failed", "error", err)
			counts.Add(activities.SyncFailed)
		default:
			counts.Add(res.Action)
		}
	}
	for _, c := range candidates {
		for pending >= window {
			sel.Select(ctx)
		}
		cctx := workflow.WithChildOptions(ctx, dispatch.ChildOptions(dispatch.Work{
			NodeUUID: c.UUID, NodeName: c.Name, Target: "sync", Queue: queue,
			Summary: activities.NodeSyncSummary(c),
		}, enumspb.PARENT_CLOSE_POLICY_ABANDON))
		f := workflow.ExecuteChildWorkflow(cctx, activities.NodePowerSyncWorkflow,
			activities.NodeSyncInput{NodeUUID: c.UUID, NodeName: c.Name, ReadError: c.ReadError, DriverError: c.DriverError, Paced: c.Paced})
		pending++
		*inFlight = pending
		sel.AddFuture(f, collect)
	}
	for pending > 0 {
		sel.Select(ctx)
	}
}

// NodePowerSync is Ironic's do_sync_power_state for one node, run under
// the node's lock (workflow ID node-power/<uuid>). The decision is one
// local activity; forcing the recorded state onto the hardware goes
// through PowerChange's own steps, which verify, persist and notify Nova.
func NodePowerSync(ctx workflow.Context, in activities.NodeSyncInput) (activities.NodeSyncResult, error) {
	status := &Status{Step: "deciding", NodeUUID: in.NodeUUID, Target: "sync"}
	if err := workflow.SetQueryHandler(ctx, "status", func() (Status, error) { return *status, nil }); err != nil {
		return activities.NodeSyncResult{}, err
	}
	lctx := workflow.WithLocalActivityOptions(ctx, workflow.LocalActivityOptions{
		StartToCloseTimeout: 30 * time.Second,
		RetryPolicy: &temporal.RetryPolicy{InitialInterval: 200 * time.Millisecond, MaximumAttempts: 3,
			NonRetryableErrorTypes: activities.NonRetryable},
	})
	var d activities.NodeSyncDecision
	// Only passes of this build set ReadError and Paced, so histories of
	// older ones replay down the local SyncNode branch: no GetVersion is
	// needed.
	readOpts := workflow.ActivityOptions{
		Summary:             "read the power state under the node's lock",
		StartToCloseTimeout: 2 * time.Minute,
		RetryPolicy: &temporal.RetryPolicy{InitialInterval: 200 * time.Millisecond, MaximumAttempts: 3,
			NonRetryableErrorTypes: activities.NonRetryable},
	}
	var decide workflow.Future
	switch {
	case in.ReadError != "":
		decide = workflow.ExecuteLocalActivity(lctx, nodeSyncActs.SyncFailedRead,
			activities.FailedRead{NodeUUID: in.NodeUUID, Error: in.ReadError, DriverError: in.DriverError})
	case in.Paced:
		decide = workflow.ExecuteActivity(workflow.WithActivityOptions(ctx, readOpts), nodeSyncActs.SyncNode, in.NodeUUID)
	default:
		decide = workflow.ExecuteLocalActivity(lctx, nodeSyncActs.SyncNode, in.NodeUUID)
	}
	// A pass starts each per-node sync on the node's group's queue; one
	// started elsewhere (by hand) reads on the node's group.
	if err := onNodeGroup(ctx, decide.Get(ctx, &d), readOpts, &d, nodeSyncActs.SyncNode, in.NodeUUID); err != nil {
		return activities.NodeSyncResult{}, err
	}
	res := activities.NodeSyncResult{Action: d.Action, Count: d.Count, PowerState: d.PowerState, Nova: d.Nova, Error: d.Error}
	if d.Action != activities.SyncForce || d.Plan == nil {
		status.Step = "done: " + d.Action
		return res, nil
	}
	status.Target = d.Plan.Target
	out, err := change(ctx, *d.Plan, status, !in.Paced)
	if err != nil {
		// As Ironic: a failed force is logged and recorded in last_error by
		// the change itself; the pass goes on.
		workflow.GetLogger(ctx).Warn("failed to force the recorded power state", "node", in.NodeUUID, "attempt", d.Count, "error", err)
		res.Action, res.Error = activities.SyncForceFailed, err.Error()
		return res, nil
	}
	res.PowerState, res.Nova = out.PowerState, out.Nova
	return res, nil
}

// PowerFailureRecovery is Ironic's _power_failure_recovery: nodes in
// maintenance with fault "power failure" leave maintenance after one
// successful read. Operator-set maintenance is never touched.
func PowerFailureRecovery(ctx workflow.Context) (activities.RecoveryResult, error) {
	actx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		Summary:             "read nodes in maintenance for power failure",
		StartToCloseTimeout: 30 * time.Minute, HeartbeatTimeout: time.Minute,
		RetryPolicy: &temporal.RetryPolicy{InitialInterval: time.Second, MaximumAttempts: 3},
	})
	var res activities.RecoveryResult
	if workflow.GetVersion(ctx, conductorGroupsStep, workflow.DefaultVersion, 1) == workflow.DefaultVersion {
		err := workflow.ExecuteActivity(actx, recoveryActs.RecoverPowerFailures).Get(ctx, &res)
		return res, err
	}
	// Each group's nodes are read on its own workers, one group after
	// another; a group nobody serves is counted as skipped.
	served, err := servedGroups(ctx, true, &res.Skipped)
	if err != nil {
		return res, err
	}
	for _, g := range served.Served {
		gctx := workflow.WithActivityOptions(actx, workflow.ActivityOptions{
			Summary:                fmt.Sprintf("read nodes in maintenance for power failure (conductor group %q)", g),
			TaskQueue:              dispatch.Queue(served.Base, g),
			ScheduleToStartTimeout: dispatch.Pickup,
			StartToCloseTimeout:    30 * time.Minute, HeartbeatTimeout: time.Minute,
			RetryPolicy: &temporal.RetryPolicy{InitialInterval: time.Second, MaximumAttempts: 3},
		})
		var part activities.RecoveryResult
		err := workflow.ExecuteActivity(gctx, recoveryActs.RecoverGroup, g).Get(ctx, &part)
		switch {
		case dispatch.NoPickup(err):
			workflow.GetLogger(ctx).Warn("no worker of the conductor group took its recovery: the group is skipped this pass", "conductor_group", g)
		case err != nil:
			return res, err
		}
		res.Checked += part.Checked
		res.Recovered += part.Recovered
		res.StillFailing += part.StillFailing
		res.Skipped += part.Skipped
	}
	return res, nil
}
