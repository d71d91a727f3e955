package replay_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"go.temporal.io/sdk/client"

	"github.com/metalpower/metalpower/activities"
	"github.com/metalpower/metalpower/internal/config"
	"github.com/metalpower/metalpower/internal/node"
	"github.com/metalpower/metalpower/internal/testbed/itest"
	"github.com/metalpower/metalpower/internal/testbed/replay"
	"github.com/metalpower/metalpower/internal/testbed/sim/ipmisim"
	"github.com/metalpower/metalpower/internal/testbed/sim/novasim"
	"github.com/metalpower/metalpower/internal/testbed/sim/redfishsim"
	"github.com/metalpower/metalpower/workflows"
)

// TestGenerateCorpus refreshes testdata/histories from real runs: each
// scenario runs on a dev server through the integration harness, then
// every workflow run on the scenario's task queue is exported as
// <workflow type>-<scenario>[-n].json, in the format of
// `temporal workflow show --output json`. Only with
// METALPOWER_REFRESH_REPLAY=1 (make replay-refresh).
func TestGenerateCorpus(t *testing.T) {
	dir := replay.Recording(t, "")
	srv := startServer(t)
	ctx := context.Background()

	scenario := func(name string, opts itest.StackOptions, run func(t *testing.T, s *itest.Stack)) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			s := itest.NewStack(t, srv, opts)
			run(t, s)
			replay.Export(t, s.Client, s.Config.Temporal.TaskQueue, dir, name)
		})
	}

	scenario("success", itest.StackOptions{}, func(t *testing.T, s *itest.Stack) {
		inst := uuid.NewString()
		n := s.AddRedfishNode(t, "r1-n01", "1", inst)
		if res, err := s.Change(t, n.Name, node.PowerOff, 0); err != nil || res.Skipped {
			t.Fatalf("res %+v err %v", res, err)
		}
		itest.WaitFor(t, 20*time.Second, "the Nova event", func() bool { return len(s.NovaTags(inst)) > 0 })
	})
	scenario("verify-polling", itest.StackOptions{TransitionDelay: 2 * time.Second}, func(t *testing.T, s *itest.Stack) {
		n := s.AddIPMINode(t, "r1-n02", 0, "")
		if _, err := s.Change(t, n.Name, node.PowerOff, 30); err != nil {
			t.Fatal(err)
		}
	})
	scenario("skip", itest.StackOptions{}, func(t *testing.T, s *itest.Stack) {
		n := s.AddRedfishNode(t, "r1-n03", "1", uuid.NewString())
		s.Redfish.SetPowerState("1", "Off")
		if res, err := s.Change(t, n.Name, node.PowerOff, 0); err != nil || !res.Skipped {
			t.Fatalf("res %+v err %v", res, err)
		}
	})
	scenario("bmc-auth-failure", itest.StackOptions{}, func(t *testing.T, s *itest.Stack) {
		n := s.AddIPMINode(t, "r1-n04", 0, "")
		n.DriverInfo["ipmi_password"] = "wrong-password"
		if err := s.Store.Update(ctx, n); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Change(t, n.Name, node.PowerOff, 0); err == nil {
			t.Fatal("a wrong password did not fail the change")
		}
	})
	scenario("verify-timeout", itest.StackOptions{}, func(t *testing.T, s *itest.Stack) {
		n := s.AddIPMINode(t, "r1-n05", 0, "")
		s.IPMI.BMCs()[0].SetFault(ipmisim.FaultStuck)
		if _, err := s.Change(t, n.Name, node.PowerOff, 3); err == nil {
			t.Fatal("a stuck BMC did not time out")
		}
	})
	scenario("lock-conflict", itest.StackOptions{TransitionDelay: 2 * time.Second}, func(t *testing.T, s *itest.Stack) {
		n := s.AddRedfishNode(t, "r1-n06", "1", "")
		run, err := s.Start(ctx, t, n.Name, node.PowerOff, 0)
		if err != nil {
			t.Fatal(err)
		}
		// A tctl-style start under another ID while the node is locked.
		adhoc, err := s.Client.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: "adhoc-" + uuid.NewString(), TaskQueue: s.Config.Temporal.TaskQueue},
			workflows.PowerChangeWorkflow, workflows.PowerChangeInput{Node: n.Name, Target: node.PowerOn})
		if err != nil {
			t.Fatal(err)
		}
		if err := adhoc.Get(ctx, nil); err == nil || !strings.Contains(err.Error(), "locked") {
			t.Fatalf("tctl-style start while locked: %v", err)
		}
		if err := run.Get(ctx, nil); err != nil {
			t.Fatal(err)
		}
	})
	scenario("tctl-child", itest.StackOptions{}, func(t *testing.T, s *itest.Stack) {
		s.AddIPMINode(t, "r1-n07", 0, "")
		run, err := s.Client.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: "my-own-id-" + uuid.NewString()[:8], TaskQueue: s.Config.Temporal.TaskQueue},
			workflows.PowerChangeWorkflow, map[string]any{"node": "r1-n07", "target": "power off"})
		if err != nil {
			t.Fatal(err)
		}
		var res workflows.PowerChangeResult
		if err := run.Get(ctx, &res); err != nil || res.LockWorkflowID == "" {
			t.Fatalf("res %+v err %v", res, err)
		}
	})
	scenario("nova-outage", itest.StackOptions{}, func(t *testing.T, s *itest.Stack) {
		inst := uuid.NewString()
		n := s.AddRedfishNode(t, "r1-n08", "1", inst)
		s.Nova.SetOutage(novasim.OutageRefuse)
		if _, err := s.Change(t, n.Name, node.PowerOff, 0); err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Second) // the notifier retries
		if len(s.NovaTags(inst)) != 0 {
			t.Fatal("Nova got an event during the outage")
		}
		s.Nova.SetOutage(novasim.OutageNone)
		itest.WaitFor(t, 90*time.Second, "the delivery", func() bool { return len(s.NovaTags(inst)) > 0 })
	})
	scenario("sync-force", itest.StackOptions{}, func(t *testing.T, s *itest.Stack) {
		inst := uuid.NewString()
		s.AddRedfishNode(t, "drifted", "1", inst) // recorded on
		s.Redfish.SetPowerState("1", "Off")
		s.AddRedfishNode(t, "fine", "2", "")
		if res := s.SyncPass(t); res.Corrected != 1 || res.InSync != 1 {
			t.Fatalf("counts = %+v", res.SyncCounts)
		}
		itest.WaitFor(t, 20*time.Second, "the Nova event", func() bool { return len(s.NovaTags(inst)) > 0 })
	})
	scenario("sync-record", itest.StackOptions{Configure: func(c *config.Config) { c.Conductor.ForcePowerStateDuringSync = false }}, func(t *testing.T, s *itest.Stack) {
		inst := uuid.NewString()
		s.AddRedfishNode(t, "drifted", "1", inst)
		s.Redfish.SetPowerState("1", "Off")
		if res := s.SyncPass(t); res.Corrected != 1 {
			t.Fatalf("counts = %+v", res.SyncCounts)
		}
		itest.WaitFor(t, 20*time.Second, "the Nova event", func() bool { return len(s.NovaTags(inst)) > 0 })
	})
	// max retries 0: the first failed read puts the node into maintenance,
	// then recovery brings it back once the BMC answers.
	scenario("maintenance-recovery", itest.StackOptions{Configure: func(c *config.Config) { c.Conductor.PowerStateSyncMaxRetries = 0 }}, func(t *testing.T, s *itest.Stack) {
		n := s.AddRedfishNode(t, "flaky", "1", "")
		s.Redfish.SetFault("1", redfishsim.FaultServerError)
		if res := s.SyncPass(t); res.EnteredMaintenance != 1 {
			t.Fatalf("counts = %+v", res.SyncCounts)
		}
		s.Redfish.SetFault("1", redfishsim.FaultNone)
		run, err := s.Client.ExecuteWorkflow(ctx, client.StartWorkflowOptions{TaskQueue: s.Config.Temporal.TaskQueue}, workflows.PowerFailureRecoveryWorkflow)
		if err != nil {
			t.Fatal(err)
		}
		var rec activities.RecoveryResult
		if err := run.Get(ctx, &rec); err != nil || rec.Recovered != 1 {
			t.Fatalf("recovery %+v err %v", rec, err)
		}
		if s.Node(t, n.UUID).Maintenance {
			t.Fatal("still in maintenance")
		}
	})
	// More sync-eligible nodes than one page holds: the server (whose
	// suggest-continue-as-new threshold startServer lowers) suggests
	// continuing as new after the first page.
	scenario("continue-as-new", itest.StackOptions{RedfishSystems: 1, IPMIBMCs: 1, Configure: func(c *config.Config) { c.Conductor.SyncPowerStateWorkers = 64 }}, func(t *testing.T, s *itest.Stack) {
		for i := 0; i <= activities.SyncPageNodes; i++ {
			s.AddRedfishNode(t, fmt.Sprintf("bulk-%05d", i), "1", "")
		}
		res := s.SyncPass(t)
		if res.Pages != 2 || res.Checked != activities.SyncPageNodes+1 {
			t.Fatalf("pass = %+v", res)
		}
	})
}

// startServer runs a dev server of its own with a low
// suggest-continue-as-new threshold, so that a long sync pass continues as
// new as it would on a large fleet.
func startServer(t *testing.T) *itest.Server {
	t.Helper()
	srv, err := itest.StartServer(itest.ServerOptions{DynamicConfig: []string{"limit.historyCount.suggestContinueAsNew=4"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	return srv
}
