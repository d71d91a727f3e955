package itest_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"

	"github.com/google/uuid"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/testsuite"

	"github.com/metalpower/metalpower/activities"
	"github.com/metalpower/metalpower/internal/config"
	"github.com/metalpower/metalpower/internal/dispatch"
	"github.com/metalpower/metalpower/internal/node"
	"github.com/metalpower/metalpower/internal/operator"
	"github.com/metalpower/metalpower/internal/testbed/itest"
	"github.com/metalpower/metalpower/internal/testbed/sim/ipmisim"
	"github.com/metalpower/metalpower/internal/testbed/sim/redfishsim"
	"github.com/metalpower/metalpower/workflows"
)

func recovery(t *testing.T, s *itest.Stack) activities.RecoveryResult {
	t.Helper()
	ctx := context.Background()
	run, err := s.Client.ExecuteWorkflow(ctx, client.StartWorkflowOptions{TaskQueue: s.Config.Temporal.TaskQueue}, workflows.PowerFailureRecoveryWorkflow)
	if err != nil {
		t.Fatal(err)
	}
	var res activities.RecoveryResult
	if err := run.Get(ctx, &res); err != nil {
		t.Fatal(err)
	}
	return res
}

func TestSyncForcesRecordedStateOntoHardware(t *testing.T) {
	t.Parallel()
	s := itest.NewStack(t, srv, itest.StackOptions{})
	inst := uuid.NewString()
	drifted := s.AddRedfishNode(t, "drifted", "1", inst) // recorded on
	s.Redfish.SetPowerState("1", "Off")
	s.AddRedfishNode(t, "fine", "2", "")
	ipmi := s.AddIPMINode(t, "ipmi-drifted", 0, "")
	s.IPMI.BMCs()[0].SetPowerOn(false)

	res := s.SyncPass(t)
	if res.Checked != 3 || res.InSync != 1 || res.Corrected != 2 {
		t.Fatalf("counts = %+v", res.SyncCounts)
	}
	if s.Redfish.PowerState("1") != "On" || !s.IPMI.BMCs()[0].PowerOn() {
		t.Fatal("the recorded state was not pushed onto the hardware")
	}
	for _, n := range []*node.Node{drifted, ipmi} {
		got := s.Node(t, n.UUID)
		if got.PowerState != node.PowerOn || got.TargetPowerState != "" || got.SyncFailures != 1 {
			t.Fatalf("%s: power %q target %q failures %d", n.Name, got.PowerState, got.TargetPowerState, got.SyncFailures)
		}
	}
	// Forcing goes through the power change's steps, which tell Nova.
	itest.WaitFor(t, 20*time.Second, "the Nova event", func() bool { return len(s.NovaTags(inst)) > 0 })
	if tags := s.NovaTags(inst); !slices.Equal(tags, []string{"POWER_ON"}) {
		t.Fatalf("Nova events = %v", tags)
	}
	// The next pass finds them in sync and resets the counters.
	res = s.SyncPass(t)
	if res.InSync != 3 || res.Corrected != 0 {
		t.Fatalf("second pass = %+v", res.SyncCounts)
	}
	if got := s.Node(t, drifted.UUID); got.SyncFailures != 0 {
		t.Fatalf("counter not reset: %d", got.SyncFailures)
	}
}

func TestSyncRecordsHardwareStateWhenNotForcing(t *testing.T) {
	t.Parallel()
	s := itest.NewStack(t, srv, itest.StackOptions{Configure: func(c *config.Config) { c.Conductor.ForcePowerStateDuringSync = false }})
	inst := uuid.NewString()
	n := s.AddRedfishNode(t, "drifted", "1", inst)
	s.Redfish.SetPowerState("1", "Off")
	res := s.SyncPass(t)
	if res.Corrected != 1 {
		t.Fatalf("counts = %+v", res.SyncCounts)
	}
	if s.Redfish.PowerState("1") != "Off" || len(s.Redfish.Resets("1")) != 0 {
		t.Fatal("the hardware was changed although forcing is off")
	}
	if got := s.Node(t, n.UUID); got.PowerState != node.PowerOff {
		t.Fatalf("power_state = %q", got.PowerState)
	}
	itest.WaitFor(t, 20*time.Second, "the Nova event", func() bool { return len(s.NovaTags(inst)) > 0 })
	if tags := s.NovaTags(inst); !slices.Equal(tags, []string{"POWER_OFF"}) {
		t.Fatalf("Nova events = %v", tags)
	}
	if i, _ := s.Nova.Instance(inst); i.VMState != "stopped" {
		t.Fatalf("Nova instance = %+v", i)
	}
}

func TestUnreachableBMCEntersMaintenanceThenRecovers(t *testing.T) {
	t.Parallel()
	s := itest.NewStack(t, srv, itest.StackOptions{})
	inst := uuid.NewString()
	n := s.AddRedfishNode(t, "flaky", "1", inst)
	s.AddRedfishNode(t, "admin-maint", "2", "")
	admin := s.Node(t, "admin-maint")
	admin.Maintenance, admin.MaintenanceReason = true, "replacing a fan"
	if err := s.Store.Update(context.Background(), admin); err != nil {
		t.Fatal(err)
	}
	s.Redfish.SetFault("1", redfishsim.FaultServerError)

	for i := 1; i <= 3; i++ {
		res := s.SyncPass(t)
		if res.Unreadable != 1 {
			t.Fatalf("pass %d: %+v", i, res.SyncCounts)
		}
		if got := s.Node(t, n.UUID); got.SyncFailures != i || got.Maintenance {
			t.Fatalf("pass %d: failures %d maintenance %v", i, got.SyncFailures, got.Maintenance)
		}
	}
	res := s.SyncPass(t) // the fourth failure exceeds power_state_sync_max_retries (3)
	if res.EnteredMaintenance != 1 {
		t.Fatalf("pass 4: %+v", res.SyncCounts)
	}
	got := s.Node(t, n.UUID)
	wantMsg := "During sync_power_state, max retries exceeded for node " + n.UUID + ", node state None does not match expected state 'power on'. Updating DB state to 'None' Switching node to maintenance mode. Error: "
	if !got.Maintenance || got.Fault != node.FaultPowerFailure || got.PowerState != "" ||
		!strings.HasPrefix(got.LastError, wantMsg) || got.MaintenanceReason != got.LastError {
		t.Fatalf("node after pass 4: maint %v fault %q power %q\nlast_error %q\nreason %q", got.Maintenance, got.Fault, got.PowerState, got.LastError, got.MaintenanceReason)
	}
	// A node in maintenance is not synced.
	if res := s.SyncPass(t); res.Checked != 0 {
		t.Fatalf("pass 5 checked %d nodes", res.Checked)
	}
	// Still broken: recovery changes nothing.
	if rec := recovery(t, s); rec.Checked != 1 || rec.Recovered != 0 || rec.StillFailing != 1 {
		t.Fatalf("recovery while broken = %+v", rec)
	}
	s.Redfish.SetFault("1", redfishsim.FaultNone)
	if rec := recovery(t, s); rec.Recovered != 1 {
		t.Fatalf("recovery = %+v", rec)
	}
	got = s.Node(t, n.UUID)
	if got.Maintenance || got.Fault != "" || got.MaintenanceReason != "" || got.PowerState != node.PowerOn || got.LastError == "" {
		t.Fatalf("after recovery: maint %v fault %q reason %q power %q last_error kept %v", got.Maintenance, got.Fault, got.MaintenanceReason, got.PowerState, got.LastError != "")
	}
	// Operator maintenance is never touched.
	if a := s.Node(t, admin.UUID); !a.Maintenance || a.MaintenanceReason != "replacing a fan" {
		t.Fatalf("admin maintenance changed: %+v", a)
	}
	// The next pass reads it fine and resets the counter.
	if res := s.SyncPass(t); res.InSync != 1 {
		t.Fatalf("pass after recovery: %+v", res.SyncCounts)
	}
	if got := s.Node(t, n.UUID); got.SyncFailures != 0 || got.LastError != "" {
		t.Fatalf("after the next pass: failures %d last_error %q", got.SyncFailures, got.LastError)
	}
}

func TestSyncSkipsANodeWhoseLockIsHeld(t *testing.T) {
	t.Parallel()
	s := itest.NewStack(t, srv, itest.StackOptions{})
	n := s.AddRedfishNode(t, "busy", "1", "")
	s.Redfish.SetPowerState("1", "Off") // drifted, so the pass wants it
	// Hold the node's lock with a workflow no worker runs: a power change
	// that has not started its first step yet.
	ctx := context.Background()
	holder, err := s.Client.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: dispatch.LockID(n.UUID), TaskQueue: "nobody-polls-" + uuid.NewString()},
		workflows.PowerChangeWorkflow, workflows.PowerChangeInput{Node: n.UUID, Target: node.PowerOn})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Client.TerminateWorkflow(ctx, holder.GetID(), holder.GetRunID(), "test done")
	res := s.SyncPass(t)
	if res.SkippedLocked != 1 || res.Corrected != 0 {
		t.Fatalf("counts = %+v", res.SyncCounts)
	}
	if len(s.Redfish.Resets("1")) != 0 {
		t.Fatal("the sync acted on a locked node")
	}
	if got := s.Node(t, n.UUID); got.SyncFailures != 0 || got.PowerState != node.PowerOn {
		t.Fatalf("a skipped node changed: %+v", got)
	}
}

func TestSyncLeavesANodeWithAPowerChangeInProgressAlone(t *testing.T) {
	t.Parallel()
	s := itest.NewStack(t, srv, itest.StackOptions{TransitionDelay: 3 * time.Second})
	n := s.AddRedfishNode(t, "changing", "1", "")
	ctx := context.Background()
	run, err := s.Start(ctx, t, n.Name, node.PowerOff, 0)
	if err != nil {
		t.Fatal(err)
	}
	itest.WaitFor(t, 10*time.Second, "the change to mark the node", func() bool { return s.Node(t, n.UUID).TargetPowerState != "" })
	res := s.SyncPass(t)
	if res.Checked != 0 {
		t.Fatalf("the pass checked a node with a change in progress: %+v", res.SyncCounts)
	}
	if err := run.Get(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if got := s.Redfish.Resets("1"); len(got) != 1 {
		t.Fatalf("resets = %v", got)
	}
}

func TestFailureCounterSurvivesAWorkerRestart(t *testing.T) {
	t.Parallel()
	s := itest.NewStack(t, srv, itest.StackOptions{})
	n := s.AddIPMINode(t, "hung", 0, "")
	s.IPMI.BMCs()[0].SetFault(ipmisim.FaultError)
	s.SyncPass(t)
	s.SyncPass(t)
	s.Worker.Stop()
	s.StartWorker(t) // a new worker process: nothing kept in memory
	s.SyncPass(t)
	if got := s.Node(t, n.UUID); got.SyncFailures != 3 {
		t.Fatalf("failures = %d after three failed passes around a restart", got.SyncFailures)
	}
	res := s.SyncPass(t)
	if res.EnteredMaintenance != 1 {
		t.Fatalf("fourth pass = %+v", res.SyncCounts)
	}
}

func TestSchedulesHaveOneOwnerAndKeepAPause(t *testing.T) {
	// Schedules are namespace-wide; this is the only test that makes them.
	s := itest.NewStack(t, srv, itest.StackOptions{})
	ctx := context.Background()
	cfg := s.Config
	cfg.Conductor.SyncPowerStateInterval, cfg.Conductor.PowerFailureRecoveryInterval = 3600, 7200
	t.Cleanup(func() {
		cfg.Conductor.SyncPowerStateInterval, cfg.Conductor.PowerFailureRecoveryInterval = 0, 0
		operator.ApplySchedules(ctx, s.Client, cfg)
	})
	if err := operator.ApplySchedules(ctx, s.Client, cfg); err != nil {
		t.Fatal(err)
	}
	st, err := operator.GetSyncStatus(ctx, s.Client)
	if err != nil || st.Interval != "1h0m0s" || st.Paused || st.NextRun.IsZero() {
		t.Fatalf("status = %+v, %v", st, err)
	}
	// A worker started with other settings leaves the schedules alone and
	// says how they differ; one with the sync disabled deletes nothing.
	other := cfg
	other.Conductor.SyncPowerStateInterval = 60
	drift, err := operator.EnsureSchedules(ctx, s.Client, other)
	if err != nil || len(drift) != 1 || !strings.Contains(drift[0], "runs every 1h0m0s, this configuration says 1m0s") {
		t.Fatalf("EnsureSchedules with another interval: %q, %v", drift, err)
	}
	other.Conductor.SyncPowerStateInterval = 0
	if drift, err := operator.EnsureSchedules(ctx, s.Client, other); err != nil || len(drift) != 1 || !strings.Contains(drift[0], "disables it") {
		t.Fatalf("EnsureSchedules with the sync disabled: %q, %v", drift, err)
	}
	if st, err := operator.GetSyncStatus(ctx, s.Client); err != nil || st.Interval != "1h0m0s" {
		t.Fatalf("a worker's configuration changed the schedule: %+v, %v", st, err)
	}
	if err := operator.SyncPause(ctx, s.Client, "maintenance window"); err != nil {
		t.Fatal(err)
	}
	cfg.Conductor.SyncPowerStateInterval = 1800
	if err := operator.ApplySchedules(ctx, s.Client, cfg); err != nil {
		t.Fatal(err)
	}
	st, _ = operator.GetSyncStatus(ctx, s.Client)
	if st.Interval != "30m0s" || !st.Paused || st.Note != "maintenance window" {
		t.Fatalf("after reconcile: %+v (the interval must follow the config, the pause must stay)", st)
	}
	s.AddRedfishNode(t, "scheduled", "1", "")
	if err := operator.SyncNow(ctx, s.Client); err != nil {
		t.Fatal(err)
	}
	itest.WaitFor(t, 30*time.Second, "the triggered pass to finish", func() bool {
		st, err := operator.GetSyncStatus(ctx, s.Client)
		return err == nil && st.LastPass != nil && st.LastPass.Result != nil
	})
	st, _ = operator.GetSyncStatus(ctx, s.Client)
	if st.LastPass.Result.Checked != 1 || st.LastPass.Result.InSync != 1 {
		t.Fatalf("last pass = %+v", st.LastPass)
	}
	if err := operator.SyncResume(ctx, s.Client, "done"); err != nil {
		t.Fatal(err)
	}
	if st, _ := operator.GetSyncStatus(ctx, s.Client); st.Paused {
		t.Fatal("still paused after resume")
	}
	cfg.Conductor.SyncPowerStateInterval = 0
	if err := operator.ApplySchedules(ctx, s.Client, cfg); err != nil {
		t.Fatal(err)
	}
	if _, err := operator.GetSyncStatus(ctx, s.Client); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("disabled sync: err = %v", err)
	}
}

// TestPacedBMCsWaitOutsideWorkflowTasks: correcting an IPMI node whose
// BMC is paced ([ipmi] min_command_interval) reads and sets the BMC in
// activities of their own, so the spacing never stretches a workflow task
// (the real server warns past 5 s); every workflow task of the per-node
// sync stays shorter than the interval even though each BMC call waits it.
func TestPacedBMCsWaitOutsideWorkflowTasks(t *testing.T) {
	t.Parallel()
	s := itest.NewStack(t, srv, itest.StackOptions{Configure: func(c *config.Config) { c.IPMI.MinCommandInterval = 2 }})
	n := s.AddIPMINode(t, "paced", 0, "")
	s.IPMI.BMCs()[0].SetPowerOn(false)
	if res := s.SyncPass(t); res.Corrected != 1 {
		t.Fatalf("pass = %+v", res.SyncCounts)
	}
	if !s.IPMI.BMCs()[0].PowerOn() {
		t.Fatal("the recorded state was not pushed onto the hardware")
	}
	var scheduled []string
	var taskStarted time.Time
	it := s.Client.GetWorkflowHistory(context.Background(), dispatch.LockID(n.UUID), "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for it.HasNext() {
		e, err := it.Next()
		if err != nil {
			t.Fatal(err)
		}
		switch e.GetEventType() {
		case enumspb.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
			scheduled = append(scheduled, e.GetActivityTaskScheduledEventAttributes().GetActivityType().GetName())
		case enumspb.EVENT_TYPE_WORKFLOW_TASK_STARTED:
			taskStarted = e.GetEventTime().AsTime()
		case enumspb.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
			// A BMC call inside the task would wait the interval (2 s).
			if d := e.GetEventTime().AsTime().Sub(taskStarted); d >= 2*time.Second {
				t.Errorf("a workflow task of the per-node sync took %v", d)
			}
		}
	}
	syncNode, setPower := itest.ActivityName((*activities.NodeSync).SyncNode), itest.ActivityName((*activities.Power).SetPowerState)
	if !slices.Contains(scheduled, syncNode) || !slices.Contains(scheduled, setPower) {
		t.Fatalf("activities scheduled = %v, want %s and %s as activities", scheduled, syncNode, setPower)
	}
}

// TestRetriedNodeSyncsWaitOnTheirOwnRuns: RunNodeSyncs starts each
// per-node sync under the node's lock. An attempt retried after its
// worker died finds the syncs its first attempt started still running
// and waits for their outcome instead of counting them as locked or
// starting them twice; a per-node sync another pass started is a held
// lock.
func TestRetriedNodeSyncsWaitOnTheirOwnRuns(t *testing.T) {
	t.Parallel()
	s := itest.NewStack(t, srv, itest.StackOptions{TransitionDelay: 2 * time.Second})
	n := s.AddRedfishNode(t, "drifted", "1", "")
	s.Redfish.SetPowerState("1", "Off")
	ctx := context.Background()
	queue := s.Config.Temporal.TaskQueue
	in := activities.NodeSyncsInput{Candidates: []activities.SyncCandidate{{UUID: n.UUID, Name: n.Name, Reason: "mismatch"}},
		Window: 4, TaskQueue: queue, Pass: "pass-1"}
	pass := &activities.SyncPass{Temporal: s.Client}
	run := func(in activities.NodeSyncsInput) activities.SyncCounts {
		t.Helper()
		var env testsuite.WorkflowTestSuite
		aenv := env.NewTestActivityEnvironment()
		aenv.RegisterActivity(pass)
		v, err := aenv.ExecuteActivity(pass.RunNodeSyncs, in)
		if err != nil {
			t.Fatal(err)
		}
		var counts activities.SyncCounts
		if err := v.Get(&counts); err != nil {
			t.Fatal(err)
		}
		return counts
	}

	// The first attempt started the node's sync, then died; the forced
	// change takes the simulator's 2 s.
	first, err := s.Client.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: dispatch.LockID(n.UUID), TaskQueue: queue,
		Memo: map[string]any{"pass": "pass-1"}}, activities.NodePowerSyncWorkflow, activities.NodeSyncInput{NodeUUID: n.UUID, NodeName: n.Name})
	if err != nil {
		t.Fatal(err)
	}
	// Another pass's attempt meets it as a held lock.
	other := in
	other.Pass = "pass-0"
	if got := run(other); got != (activities.SyncCounts{SkippedLocked: 1}) {
		t.Fatalf("another pass: %+v, want one skipped locked", got)
	}
	if got := run(in); got != (activities.SyncCounts{Corrected: 1}) {
		t.Fatalf("the retried attempt: %+v, want one corrected", got)
	}
	desc, err := s.Client.DescribeWorkflowExecution(ctx, first.GetID(), "")
	if err != nil {
		t.Fatal(err)
	}
	if got := desc.GetWorkflowExecutionInfo().GetExecution().GetRunId(); got != first.GetRunID() {
		t.Fatalf("the node's sync ran again (run %s, first %s)", got, first.GetRunID())
	}
	if s.Redfish.PowerState("1") != "On" {
		t.Fatal("the recorded state was not forced")
	}
}
