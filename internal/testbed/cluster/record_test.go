package cluster_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/metalpower/metalpower/activities"
	"github.com/metalpower/metalpower/internal/dispatch"
	"github.com/metalpower/metalpower/internal/node"
	"github.com/metalpower/metalpower/internal/testbed/itest"
	"github.com/metalpower/metalpower/internal/testbed/replay"
	"github.com/metalpower/metalpower/workflows"
)

// TestRecordRealServerCorpus records testdata/histories/real-server on
// the real server on PostgreSQL, with workers of two conductor groups: a
// power change told to Nova, a sync pass forcing drift in both groups,
// manage through the API (NodeProvision) and a recovery pass. TestReplayCorpus
// replays them with every later build. Only with
// METALPOWER_REFRESH_REPLAY=1 (make replay-record-real).
func TestRecordRealServerCorpus(t *testing.T) {
	dir := replay.Recording(t, replay.RealServer)
	ctx := context.Background()
	c := startCluster(t, "mp_rec_")
	s := itest.NewStack(t, itest.Attach(c.Address), itest.StackOptions{RedfishSystems: 4})
	s.StartGroupWorker(t, "rack-b")
	api := s.StartAPI(t, nil)

	const instance = "5e5e5e5e-1111-4222-8333-444455556666"
	a := s.AddRedfishNode(t, "rec-a", "1", instance)
	s.AddRedfishNode(t, "rec-b", "2", "")
	s.Modify(t, "rec-b", func(n *node.Node) { n.ConductorGroup = "rack-b" })
	s.AddRedfishNode(t, "rec-enroll", "3", "")
	s.Modify(t, "rec-enroll", func(n *node.Node) { n.ConductorGroup, n.ProvisionState, n.PowerState = "rack-b", node.Enroll, "" })
	s.AddRedfishNode(t, "rec-failed", "4", "")
	s.Modify(t, "rec-failed", func(n *node.Node) { n.Maintenance, n.Fault, n.ConductorGroup = true, node.FaultPowerFailure, "rack-b" })

	if _, err := s.Change(t, a.Name, node.PowerOff, 0); err != nil {
		t.Fatal(err)
	}
	itest.WaitFor(t, 30*time.Second, "Nova to hear of the change", func() bool { return len(s.NovaTags(instance)) == 1 })
	s.Redfish.SetPowerState("1", "On")
	s.Redfish.SetPowerState("2", "Off")
	if res := s.SyncPass(t); res.Corrected != 2 {
		t.Fatalf("sync pass: %+v, want 2 corrected", res)
	}
	req, _ := http.NewRequest(http.MethodPut, api+"/v1/nodes/rec-enroll/states/provision", strings.NewReader(`{"target":"manage"}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-OpenStack-Ironic-API-Version", "1.46")
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusAccepted {
		t.Fatalf("manage: %v %v", resp, err)
	}
	if err := runRecovery(ctx, s); err != nil {
		t.Fatal(err)
	}
	if n := s.Node(t, "rec-failed"); n.Maintenance {
		t.Fatalf("rec-failed still in maintenance after a recovery pass")
	}
	replay.Export(t, s.Client, s.Config.Temporal.TaskQueue, dir, "real-server")
	replay.Export(t, s.Client, dispatch.Queue(s.Config.Temporal.TaskQueue, "rack-b"), dir, "real-server-rack-b")
}

// runRecovery runs one PowerFailureRecovery pass on the stack to its end.
func runRecovery(ctx context.Context, s *itest.Stack) error {
	run, err := s.Client.ExecuteWorkflow(ctx, client.StartWorkflowOptions{TaskQueue: s.Config.Temporal.TaskQueue}, workflows.PowerFailureRecoveryWorkflow)
	if err != nil {
		return err
	}
	var res activities.RecoveryResult
	return run.Get(ctx, &res)
}
