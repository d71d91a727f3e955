package itest

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/rs/zerolog"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/workflow"

	"github.com/metalpower/metalpower/activities"
	"github.com/metalpower/metalpower/internal/conductor"
	"github.com/metalpower/metalpower/internal/config"
	"github.com/metalpower/metalpower/internal/dispatch"
	"github.com/metalpower/metalpower/internal/node"
	"github.com/metalpower/metalpower/internal/operator"
	"github.com/metalpower/metalpower/internal/testbed/sim/novasim"
	"github.com/metalpower/metalpower/workflows"
)

// The new build's changes, one per versioning behaviour.
//
// powerChangeV2 adds a first step with no GetVersion guard. That is safe
// only because power changes are pinned: no history begun on the old
// build ever replays on this code (it would fail as nondeterministic).
func powerChangeV2(ctx workflow.Context, in workflows.PowerChangeInput) (workflows.PowerChangeResult, error) {
	if err := workflow.UpsertMemo(ctx, map[string]any{"build": "v2"}); err != nil {
		return workflows.PowerChangeResult{}, err
	}
	return workflows.PowerChange(ctx, in)
}

// novaNotifyV2 adds a last step behind GetVersion: a notifier begun on the
// old build that moves here (it auto-upgrades) replays its history without
// the marker, then takes the new step when it gets there.
func novaNotifyV2(ctx workflow.Context, in activities.NovaNotifyInput) (workflows.NovaNotifyResult, error) {
	res, err := workflows.NovaNotify(ctx, in)
	if err != nil {
		return res, err
	}
	if workflow.GetVersion(ctx, "record-finishing-build", workflow.DefaultVersion, 1) == 1 {
		err = workflow.UpsertMemo(ctx, map[string]any{"finished_on": "v2"})
	}
	return res, err
}

func newBuildTypes() []workflows.WorkflowType {
	types := workflows.Types()
	for i, wt := range types {
		switch wt.Name {
		case workflows.PowerChangeWorkflow:
			types[i].Fn = powerChangeV2
		case activities.NovaNotifyWorkflow:
			types[i].Fn = novaNotifyV2
		}
	}
	return types
}

// Rollout rolls a worker deployment from build v1 to
// a build v2 with changed workflows while work is in flight, the worst way
// round: v1 stops before v2 starts. New power changes run on v2; the
// pinned changes begun on v1 wait for it, untouched by v2, and finish when
// v1 comes back to drain; the Nova notifier begun on v1 moves to v2 mid-
// flight, replays, and takes v2's patched step. Nothing fails.
func Rollout(t *testing.T, srv *Server) {
	t.Helper()
	ctx := context.Background()
	dep := "metalpower-test-" + uuid.NewString()[:8]
	s := NewStack(t, srv, StackOptions{NoWorker: true, TransitionDelay: 3 * time.Second,
		Configure: func(c *config.Config) { c.Temporal.DeploymentName = dep }})
	startBuild := func(build string, types []workflows.WorkflowType) *conductor.Worker {
		t.Helper()
		cfg := s.Config
		cfg.Temporal.BuildID = build
		w, err := conductor.NewWorker(ctx, cfg, zerolog.New(s.Log).With().Str("build", build).Logger(), conductor.WorkerOptions{Client: s.Client, Store: s.Store, NoSchedules: true, Workflows: types})
		if err != nil {
			t.Fatal(err)
		}
		if err := w.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { w.Stop(); w.Pool.Close() })
		return w
	}
	status := func() operator.DeploymentStatus {
		st, _ := operator.GetDeploymentStatus(ctx, s.Client, dep)
		return st
	}

	v1 := startBuild("v1", nil)
	WaitFor(t, 30*time.Second, "the first build to make itself current", func() bool { return status().CurrentBuildID == "v1" })

	inst := uuid.NewString()
	notified := s.AddRedfishNode(t, "notified", "1", inst)
	b := s.AddRedfishNode(t, "pinned-b", "2", "")
	c := s.AddRedfishNode(t, "pinned-c", "3", "")
	d := s.AddRedfishNode(t, "new-d", "4", "")

	// In flight on v1: a Nova notifier retrying through an outage, and two
	// changes waiting for slow hardware.
	s.Nova.SetOutage(novasim.OutageRefuse)
	if _, err := s.Change(t, notified.Name, node.PowerOff, 0); err != nil {
		t.Fatal(err)
	}
	notifierID := "nova-notify/" + inst
	WaitFor(t, 30*time.Second, "the Nova notifier to run", func() bool {
		desc, err := s.Client.DescribeWorkflowExecution(ctx, notifierID, "")
		return err == nil && desc.GetWorkflowExecutionInfo().GetStatus() == enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING
	})
	var pinned []string
	for _, n := range []*node.Node{b, c} {
		if _, err := s.Start(ctx, t, n.Name, node.PowerOff, 120); err != nil {
			t.Fatal(err)
		}
		pinned = append(pinned, dispatch.LockID(n.UUID))
	}
	for _, id := range pinned {
		WaitFor(t, 30*time.Second, id+" to be verifying", func() bool {
			v, err := s.Client.QueryWorkflow(ctx, id, "", "status")
			var st workflows.Status
			return err == nil && v.Get(&st) == nil && strings.HasPrefix(st.Step, "verifying")
		})
	}

	// v1 goes away mid-flight; v2 starts and is promoted.
	v1.Stop()
	for _, id := range pinned {
		if st := workflowStatus(t, s, id); st != enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING {
			t.Fatalf("%s is %v after v1 stopped: want it still in flight", id, st)
		}
	}
	startBuild("v2", newBuildTypes())
	if err := operator.Promote(ctx, s.Client, dep, "v0-typo", 0); err == nil || !strings.Contains(err.Error(), "has no workers yet") {
		t.Fatalf("promoting an unknown build: %v", err)
	}
	WaitFor(t, 30*time.Second, "v2 to be promoted", func() bool {
		return operator.Promote(ctx, s.Client, dep, "v2", 0) == nil && status().CurrentBuildID == "v2"
	})
	s.Nova.SetOutage(novasim.OutageNone)

	// New work runs v2's code.
	if res, err := s.Change(t, d.Name, node.PowerOff, 60); err != nil || res.PowerState != node.PowerOff {
		t.Fatalf("change on v2: %+v, %v", res, err)
	}
	if got := memo(t, s, dispatch.LockID(d.UUID), "build"); got != "v2" {
		t.Fatalf("new change's memo build = %q, want v2 (it did not run the new build)", got)
	}
	if got := builds(t, s, dispatch.LockID(d.UUID)); got != "v2" {
		t.Fatalf("new change ran on builds %q", got)
	}

	// The notifier moved to v2 and finished through the patched step.
	WaitFor(t, 90*time.Second, "the notifier to finish", func() bool {
		return workflowStatus(t, s, notifierID) == enumspb.WORKFLOW_EXECUTION_STATUS_COMPLETED
	})
	if i, _ := s.Nova.Instance(inst); i.PowerState != "shutdown" {
		t.Fatalf("Nova instance power state = %q, want shutdown", i.PowerState)
	}
	if got := memo(t, s, notifierID, "finished_on"); got != "v2" {
		t.Fatalf("notifier memo finished_on = %q: it did not take v2's new step", got)
	}
	if got := builds(t, s, notifierID); got != "v1,v2" {
		t.Fatalf("notifier ran on builds %q, want v1,v2", got)
	}

	// The pinned changes waited for v1: v2 never ran them.
	for _, id := range pinned {
		if st := workflowStatus(t, s, id); st != enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING {
			t.Fatalf("%s is %v while v1 is away: want it waiting for v1", id, st)
		}
	}
	WaitFor(t, 30*time.Second, "status to count v1's two waiting changes", func() bool {
		for _, v := range status().Versions {
			if v.BuildID == "v1" {
				return v.Running == 2
			}
		}
		return false
	})
	// v1 comes back to drain them, as the procedure keeps it until drained.
	v1 = startBuild("v1", nil)
	for i, n := range []*node.Node{b, c} {
		var res workflows.PowerChangeResult
		if err := s.Client.GetWorkflow(ctx, pinned[i], "").Get(ctx, &res); err != nil || res.PowerState != node.PowerOff {
			t.Fatalf("%s: %+v, %v", pinned[i], res, err)
		}
		if got := s.Node(t, n.UUID); got.PowerState != node.PowerOff || got.TargetPowerState != "" || got.LastError != "" {
			t.Fatalf("node %s: power %q target %q last_error %q", n.Name, got.PowerState, got.TargetPowerState, got.LastError)
		}
		if got := builds(t, s, pinned[i]); got != "v1" {
			t.Fatalf("%s ran on builds %q, want v1 only", pinned[i], got)
		}
		if memo(t, s, pinned[i], "build") != "" {
			t.Fatalf("%s ran v2's code", pinned[i])
		}
	}
	WaitFor(t, 60*time.Second, "v1 to have no open workflows", func() bool {
		for _, v := range status().Versions {
			if v.BuildID == "v1" {
				return v.Running == 0
			}
		}
		return false
	})
	for _, id := range append(pinned, notifierID, dispatch.LockID(d.UUID)) {
		if h := History(t, s, id); strings.Contains(h, "WorkflowTaskFailed") {
			t.Fatalf("%s had a failed workflow task:\n%s", id, h)
		}
	}
}

func workflowStatus(t testing.TB, s *Stack, id string) enumspb.WorkflowExecutionStatus {
	t.Helper()
	desc, err := s.Client.DescribeWorkflowExecution(context.Background(), id, "")
	if err != nil {
		t.Fatal(err)
	}
	return desc.GetWorkflowExecutionInfo().GetStatus()
}

func memo(t testing.TB, s *Stack, id, key string) string {
	t.Helper()
	desc, err := s.Client.DescribeWorkflowExecution(context.Background(), id, "")
	if err != nil {
		t.Fatal(err)
	}
	p, ok := desc.GetWorkflowExecutionInfo().GetMemo().GetFields()[key]
	if !ok {
		return ""
	}
	var v string
	if err := converter.GetDefaultDataConverter().FromPayload(p, &v); err != nil {
		t.Fatal(err)
	}
	return v
}

// builds lists, in order, the builds that completed the workflow's tasks.
func builds(t testing.TB, s *Stack, id string) string {
	t.Helper()
	var out []string
	it := s.Client.GetWorkflowHistory(context.Background(), id, "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for it.HasNext() {
		e, err := it.Next()
		if err != nil {
			t.Fatal(err)
		}
		if a := e.GetWorkflowTaskCompletedEventAttributes(); a != nil {
			b := a.GetDeploymentVersion().GetBuildId()
			if len(out) == 0 || out[len(out)-1] != b {
				out = append(out, b)
			}
		}
	}
	return strings.Join(out, ",")
}
