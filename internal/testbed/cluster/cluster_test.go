package cluster_test

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/api/workflowservice/v1"

	"github.com/metalpower/metalpower/internal/node"
	"github.com/metalpower/metalpower/internal/testbed/cluster"
	"github.com/metalpower/metalpower/internal/testbed/itest"
	"github.com/metalpower/metalpower/internal/testbed/replay"
	"github.com/metalpower/metalpower/workflows"
)

// TestRealServerOnPostgreSQL runs metalpower on the real Temporal server
// (1.29, the four services in one process) on this machine's PostgreSQL,
// from the same server configuration docker-compose.yml uses: a power
// change through the worker; tctl v1.18.0 starts a PowerChange, queries
// its status and lists it; the server killed and restarted in the middle
// of a change loses nothing; a rolling upgrade between two builds.
func TestRealServerOnPostgreSQL(t *testing.T) {
	ctx := context.Background()
	c := startCluster(t, "mp_test_")
	s := itest.NewStack(t, itest.Attach(c.Address), itest.StackOptions{RedfishSystems: 2, TransitionDelay: time.Second})
	const instance = "7d7d7d7d-1111-4222-8333-444455556666"
	n := s.AddRedfishNode(t, "cluster-1", "1", instance)

	if res, err := s.Change(t, n.Name, node.PowerOff, 0); err != nil || res.PowerState != node.PowerOff {
		t.Fatalf("power off on the real server: %+v, %v\n%s", res, err, c.Output())
	}

	// tctl v1.18.0: start, query, list.
	tctl, err := cluster.Tctl()
	if err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(tctl, append([]string{"--address", c.Address, "--namespace", "default"}, args...)...)
		cmd.Env = append(os.Environ(), "TEMPORAL_CLI_SHOW_STACKS=0")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("tctl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	input, _ := json.Marshal(workflows.PowerChangeInput{Node: "cluster-1", Target: node.PowerOn})
	run("workflow", "start", "--taskqueue", s.Config.Temporal.TaskQueue, "--workflow_type", workflows.PowerChangeWorkflow,
		"--workflow_id", "tctl-power-on", "--input", string(input))
	var status string
	itest.WaitFor(t, 30*time.Second, "tctl to query the change's status", func() bool {
		cmd := exec.Command(tctl, "--address", c.Address, "workflow", "query", "--workflow_id", "tctl-power-on", "--query_type", "status")
		out, err := cmd.CombinedOutput()
		status = string(out)
		return err == nil && strings.Contains(status, "step")
	})
	var res workflows.PowerChangeResult
	if err := s.Client.GetWorkflow(ctx, "tctl-power-on", "").Get(ctx, &res); err != nil || res.PowerState != node.PowerOn {
		t.Fatalf("the change tctl started: %+v, %v (status was %s)", res, err, status)
	}
	if list := run("workflow", "list"); !strings.Contains(list, "tctl-power-on") || !strings.Contains(list, workflows.PowerChangeWorkflow) {
		t.Fatalf("tctl workflow list does not show the change:\n%s", list)
	}

	// The server killed in the middle of a reboot and started again: the
	// change finishes, recorded and told to Nova.
	wf, err := s.Start(ctx, t, n.Name, node.Reboot, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Restart(ctx, true); err != nil {
		t.Fatal(err)
	}
	if err := wf.Get(ctx, &res); err != nil || res.PowerState != node.PowerOn {
		t.Fatalf("reboot across a server restart: %+v, %v", res, err)
	}
	if got := s.Node(t, n.UUID); got.PowerState != node.PowerOn || got.TargetPowerState != "" {
		t.Fatalf("node after the restart: power %q, target %q", got.PowerState, got.TargetPowerState)
	}
	itest.WaitFor(t, 60*time.Second, "Nova to hear of all three changes", func() bool { return len(s.NovaTags(instance)) == 3 })

	// Every history the real server recorded replays on this code.
	replayEverything(t, s)

	// A rolling upgrade with Worker Deployment Versioning, as on the dev
	// server: in-flight changes finish on the old build, new ones run on
	// the new build, nothing fails.
	t.Run("rollout", func(t *testing.T) { itest.Rollout(t, itest.Attach(c.Address)) })
}

// replayEverything replays every closed workflow's history the server
// recorded with the worker's registered workflows.
func replayEverything(t *testing.T, s *itest.Stack) {
	t.Helper()
	ctx := context.Background()
	resp, err := s.Client.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{Query: "ExecutionStatus != 'Running'"})
	if err != nil {
		t.Fatal(err)
	}
	r := replay.NewReplayer()
	types := map[string]bool{}
	for _, e := range resp.GetExecutions() {
		var events []*historypb.HistoryEvent
		it := s.Client.GetWorkflowHistory(ctx, e.GetExecution().GetWorkflowId(), e.GetExecution().GetRunId(), false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
		for it.HasNext() {
			ev, err := it.Next()
			if err != nil {
				t.Fatal(err)
			}
			events = append(events, ev)
		}
		if err := replay.ReplayHistory(r, &historypb.History{Events: events}); err != nil {
			t.Errorf("%s (%s) recorded on the real server does not replay: %v", e.GetExecution().GetWorkflowId(), e.GetType().GetName(), err)
		}
		types[e.GetType().GetName()] = true
	}
	if !types[workflows.PowerChangeWorkflow] {
		t.Fatalf("no PowerChange history to replay (types %v)", types)
	}
}
