package itest_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"go.temporal.io/api/operatorservice/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/metalpower/metalpower/activities"
	"github.com/metalpower/metalpower/internal/bmc/ipmi"
	"github.com/metalpower/metalpower/internal/bmc/redfish"
	"github.com/metalpower/metalpower/internal/config"
	"github.com/metalpower/metalpower/internal/dispatch"
	"github.com/metalpower/metalpower/internal/node"
	"github.com/metalpower/metalpower/internal/operator"
	"github.com/metalpower/metalpower/internal/temporalconn"
	"github.com/metalpower/metalpower/internal/testbed"
	"github.com/metalpower/metalpower/internal/testbed/itest"
	"github.com/metalpower/metalpower/internal/testbed/sim/ipmisim"
	"github.com/metalpower/metalpower/internal/testbed/sim/novasim"
	"github.com/metalpower/metalpower/internal/testbed/sim/redfishsim"
	"github.com/metalpower/metalpower/workflows"
)

// Integration tests: the real worker against a Temporal dev server, the
// SQLite store, both BMC simulators and the Nova simulator.
//
// Ironic's tests (ChangeNodePowerStateTestCase, NodePowerActionTestCase,
// NodeSoftPowerActionTestCase) and their
// counterparts here:
//
//	test_change_node_power_state_power_on                   TestEveryActionOnBothDrivers (power on)
//	test_change_node_power_state_soft_power_off_timeout     TestEveryActionOnBothDrivers (soft power off, timeout given)
//	test_change_node_power_state_node_already_locked        TestSecondChangeIsRefusedAsNodeLocked
//	test_change_node_power_state_exception_in_background_task  TestBMCAuthenticationFailureFailsFast
//	test_change_node_power_state_validate_fail              TestBadRequestsChangeNothing
//	test_change_node_power_state_unsupported_state          TestBadRequestsChangeNothing (unknown target)
//	test_node_power_action_power_on                         TestEveryActionOnBothDrivers + TestSuccessClearsLastError
//	test_node_power_action_keep_last_error                  activities: TestSyncForce (failure state keeps last_error); a request clears it: TestRequestClearsLastErrorEvenInAFailureState
//	test_node_power_action_power_on_notify                  TestEveryActionOnBothDrivers (Nova events)
//	test_node_power_action_power_off                        TestEveryActionOnBothDrivers (power off)
//	test_node_power_action_power_off_already / _in_same_state_db_not_in_sync
//	                                                        TestAlreadyThereIsSkippedAndCorrectsTheRecord
//	test_node_power_action_power_reboot                     TestEveryActionOnBothDrivers (rebooting)
//	test_node_power_action_power_reboot_with_disable_power_off  TestDisablePowerOff
//	test_node_power_action_disable_power_off                TestDisablePowerOff
//	test_node_power_action_invalid_state                    TestBadRequestsChangeNothing
//	test_node_power_action_already_being_processed          TestStaleTargetDoesNotBlockAChange
//	test_node_power_action_in_same_state                    TestAlreadyThereIsSkippedAndCorrectsTheRecord
//	test_node_power_action_failed_getting_state             TestBMCTimeoutsAreRetriedThenRecorded
//	test_node_power_action_set_power_failure                TestBMCAuthenticationFailureFailsFast
//	test__calculate_target_state                            node.TestFinalState
//	test_node_power_action_power_soft_reboot(_timeout)      TestEveryActionOnBothDrivers (soft rebooting)
//	test_node_power_action_soft_power_off(_timeout)         TestEveryActionOnBothDrivers (soft power off)
//	(storage attach/detach, parent/child, agent token, notifications via oslo: not applicable)

var srv *itest.Server

// TestMain runs the tests on one dev server, then reads back the history
// of every workflow they ran: no BMC or Keystone password may be in any.
func TestMain(m *testing.M) {
	os.Exit(itest.MustMain(m, &srv, func() error {
		return itest.ScanHistoriesForSecrets(srv, testbed.IPMIPassword, testbed.RedfishPassword, testbed.KeystonePassword, "wrong-password")
	}))
}

func TestEveryActionOnBothDrivers(t *testing.T) {
	t.Parallel()
	s := itest.NewStack(t, srv, itest.StackOptions{RedfishSystems: 5, IPMIBMCs: 5})
	tests := []struct {
		target   string
		startOn  bool
		timeout  int
		wantOn   bool
		wantNova string
	}{
		{node.PowerOn, false, 0, true, "POWER_ON"},
		{node.PowerOff, true, 0, false, "POWER_OFF"},
		{node.Reboot, true, 0, true, "POWER_ON"},
		{node.SoftPowerOff, true, 20, false, "POWER_OFF"},
		{node.SoftReboot, true, 0, true, "POWER_ON"},
	}
	for i, tt := range tests {
		for _, driver := range []string{ipmi.Name, redfish.Name} {
			t.Run(driver+"/"+tt.target, func(t *testing.T) {
				inst := uuid.NewString()
				var n *node.Node
				var hwOn func() bool
				name := fmt.Sprintf("%s-%d", driver, i)
				if driver == ipmi.Name {
					n = s.AddIPMINode(t, name, i, inst)
					b := s.IPMI.BMCs()[i]
					b.SetPowerOn(tt.startOn)
					hwOn = b.PowerOn
				} else {
					id := s.Redfish.SystemIDs()[i]
					n = s.AddRedfishNode(t, name, id, inst)
					s.Redfish.SetPowerState(id, map[bool]string{true: "On", false: "Off"}[tt.startOn])
					hwOn = func() bool { return s.Redfish.PowerState(id) == "On" }
				}
				res, err := s.Change(t, n.Name, tt.target, tt.timeout)
				if err != nil {
					t.Fatalf("power change: %v", err)
				}
				want := node.FinalState(tt.target)
				if res.PowerState != want || res.Skipped || res.Nova != activities.NovaDelivered {
					t.Fatalf("result = %+v", res)
				}
				if hwOn() != tt.wantOn {
					t.Fatalf("hardware on = %v, want %v", hwOn(), tt.wantOn)
				}
				got := s.Node(t, n.UUID)
				if got.PowerState != want || got.TargetPowerState != "" || got.LastError != "" {
					t.Fatalf("node = power %q target %q last_error %q", got.PowerState, got.TargetPowerState, got.LastError)
				}
				itest.WaitFor(t, 20*time.Second, "the Nova event", func() bool { return len(s.NovaTags(inst)) > 0 })
				if tags := s.NovaTags(inst); !slices.Equal(tags, []string{tt.wantNova}) {
					t.Fatalf("Nova events = %v, want [%s]", tags, tt.wantNova)
				}
			})
		}
	}
}

func TestLegibleInTheWebUI(t *testing.T) {
	t.Parallel()
	// A BMC that takes a moment, so the change also polls.
	s := itest.NewStack(t, srv, itest.StackOptions{TransitionDelay: 1500 * time.Millisecond})
	n := s.AddRedfishNode(t, "r1-n07", "1", "")
	if _, err := s.Change(t, n.Name, node.PowerOff, 0); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	desc, err := s.Client.DescribeWorkflowExecution(ctx, dispatch.LockID(n.UUID), "")
	if err != nil {
		t.Fatal(err)
	}
	var summary string
	if p := desc.GetExecutionConfig().GetUserMetadata().GetSummary(); p != nil {
		summary = strings.Trim(string(p.GetData()), `"`)
	}
	if summary != "power off r1-n07 (requested via test)" {
		t.Fatalf("static summary = %q", summary)
	}
	attrs := desc.GetWorkflowExecutionInfo().GetSearchAttributes().GetIndexedFields()
	for key, want := range map[string]string{"NodeUUID": n.UUID, "NodeName": "r1-n07", "PowerTarget": "power off"} {
		if got := strings.Trim(string(attrs[key].GetData()), `"`); got != want {
			t.Errorf("search attribute %s = %q, want %q", key, got, want)
		}
	}
	hist := itest.History(t, s, dispatch.LockID(n.UUID))
	for _, want := range []string{"power off r1-n07 via redfish", "wait until r1-n07 is power off"} {
		if !strings.Contains(hist, want) {
			t.Errorf("no activity summary %q in the history", want)
		}
	}
	// The status query answers while the workflow runs and after it ended.
	v, err := s.Client.QueryWorkflow(ctx, dispatch.LockID(n.UUID), "", "status")
	if err != nil {
		t.Fatal(err)
	}
	var st workflows.Status
	if err := v.Get(&st); err != nil || st.Step != "done" || st.PowerState != node.PowerOff {
		t.Fatalf("status = %+v, %v", st, err)
	}
	// Visible to a Web UI query.
	itest.WaitFor(t, 10*time.Second, "the visibility query", func() bool {
		resp, err := s.Client.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{Query: `NodeName="r1-n07" AND PowerTarget="power off"`})
		return err == nil && len(resp.GetExecutions()) > 0
	})
}

func TestNoNovaEventWithoutInstanceOrWhenNotificationsAreOff(t *testing.T) {
	t.Parallel()
	s := itest.NewStack(t, srv, itest.StackOptions{})
	a := s.AddRedfishNode(t, "no-instance", "1", "")
	res, err := s.Change(t, a.Name, node.PowerOff, 0)
	if err != nil || res.Nova != activities.NovaNoInstance {
		t.Fatalf("res %+v err %v", res, err)
	}

	off := itest.NewStack(t, srv, itest.StackOptions{Configure: func(c *config.Config) { c.Nova.SendPowerNotifications = false }})
	inst := uuid.NewString()
	b := off.AddRedfishNode(t, "notify-off", "1", inst)
	res, err = off.Change(t, b.Name, node.PowerOff, 0)
	if err != nil || res.Nova != activities.NovaDisabledState {
		t.Fatalf("res %+v err %v", res, err)
	}

	noCreds := itest.NewStack(t, srv, itest.StackOptions{Configure: func(c *config.Config) { c.Nova.AuthURL = "" }})
	c := noCreds.AddRedfishNode(t, "no-creds", "1", inst)
	res, err = noCreds.Change(t, c.Name, node.PowerOff, 0)
	if err != nil || !strings.HasPrefix(res.Nova, "not sent") || !strings.Contains(res.Nova, "auth_url") {
		t.Fatalf("res %+v err %v", res, err)
	}
	if !strings.Contains(noCreds.Log.String(), "no credentials") {
		t.Fatalf("the worker did not say at start that Nova has no credentials:\n%s", noCreds.Log.String())
	}
	time.Sleep(500 * time.Millisecond)
	for _, st := range []*itest.Stack{s, off, noCreds} {
		if n := len(st.Nova.Events()); n != 0 {
			t.Fatalf("Nova got %d events", n)
		}
	}
}

func TestAlreadyThereIsSkippedAndCorrectsTheRecord(t *testing.T) {
	t.Parallel()
	s := itest.NewStack(t, srv, itest.StackOptions{})
	inst := uuid.NewString()
	n := s.AddRedfishNode(t, "already-off", "1", inst) // recorded on
	s.Redfish.SetPowerState("1", "Off")
	res, err := s.Change(t, n.Name, node.PowerOff, 0)
	if err != nil || !res.Skipped || res.PowerState != node.PowerOff {
		t.Fatalf("res %+v err %v", res, err)
	}
	if got := s.Node(t, n.UUID); got.PowerState != node.PowerOff || got.TargetPowerState != "" {
		t.Fatalf("node = %q / %q", got.PowerState, got.TargetPowerState)
	}
	if len(s.Redfish.Resets("1")) != 0 {
		t.Fatalf("a reset was sent: %v", s.Redfish.Resets("1"))
	}
	// Nova still has the instance running: it is told of the corrected
	// state, once. (Ironic tells Nova nothing here and leaves it to Nova's
	// own power sync; the chaos test found Nova left with the old state.)
	if res.Nova != activities.NovaDelivered {
		t.Fatalf("Nova: %q", res.Nova)
	}
	if tags := s.NovaTags(inst); !slices.Equal(tags, []string{"POWER_OFF"}) {
		t.Fatalf("Nova events = %v", tags)
	}
	// Asked again, the record is right: nothing more for Nova.
	if res, err := s.Change(t, n.Name, node.PowerOff, 0); err != nil || !res.Skipped || res.Nova != "not sent: no change" {
		t.Fatalf("second change: res %+v err %v", res, err)
	}
	time.Sleep(300 * time.Millisecond)
	if tags := s.NovaTags(inst); len(tags) != 1 {
		t.Fatalf("Nova events = %v, want the one POWER_OFF", tags)
	}
}

func TestSecondChangeIsRefusedAsNodeLocked(t *testing.T) {
	t.Parallel()
	s := itest.NewStack(t, srv, itest.StackOptions{TransitionDelay: 2 * time.Second})
	n := s.AddRedfishNode(t, "busy", "1", "")
	ctx := context.Background()
	run, err := s.Start(ctx, t, n.Name, node.PowerOff, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.Start(ctx, t, n.Name, node.PowerOn, 0)
	var locked *dispatch.LockedError
	if !errors.As(err, &locked) || locked.Holder != dispatch.LockID(n.UUID) || !strings.Contains(err.Error(), "locked") {
		t.Fatalf("second change: err = %v, want a node-locked error naming %s", err, dispatch.LockID(n.UUID))
	}
	// A tctl-style start under another ID is refused the same way.
	adhoc, err := s.Client.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: "adhoc-" + uuid.NewString(), TaskQueue: s.Config.Temporal.TaskQueue},
		workflows.PowerChangeWorkflow, workflows.PowerChangeInput{Node: n.Name, Target: node.PowerOn})
	if err != nil {
		t.Fatal(err)
	}
	err = adhoc.Get(ctx, nil)
	var appErr *temporal.ApplicationError
	if !errors.As(err, &appErr) || appErr.Type() != dispatch.LockedType || !strings.Contains(err.Error(), dispatch.LockID(n.UUID)) {
		t.Fatalf("tctl-style start while locked: err = %v", err)
	}
	if err := run.Get(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if got := s.Redfish.Resets("1"); !slices.Equal(got, []string{"ForceOff"}) {
		t.Fatalf("resets = %v: a refused change reached the BMC", got)
	}
}

func TestTctlStyleStartWithANameTakesTheLock(t *testing.T) {
	t.Parallel()
	s := itest.NewStack(t, srv, itest.StackOptions{})
	n := s.AddIPMINode(t, "r1-n07", 0, "")
	ctx := context.Background()
	run, err := s.Client.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: "my-own-id", TaskQueue: s.Config.Temporal.TaskQueue},
		workflows.PowerChangeWorkflow, map[string]any{"node": "r1-n07", "target": "power off"})
	if err != nil {
		t.Fatal(err)
	}
	var res workflows.PowerChangeResult
	if err := run.Get(ctx, &res); err != nil {
		t.Fatal(err)
	}
	if res.LockWorkflowID != dispatch.LockID(n.UUID) || res.PowerState != node.PowerOff {
		t.Fatalf("result = %+v", res)
	}
	desc, err := s.Client.DescribeWorkflowExecution(ctx, dispatch.LockID(n.UUID), "")
	if err != nil {
		t.Fatalf("no workflow ran under the lock ID: %v", err)
	}
	if desc.GetWorkflowExecutionInfo().GetParentExecution().GetWorkflowId() != "my-own-id" {
		t.Fatal("the lock holder is not the tctl-started workflow's child")
	}
	// Started under the lock ID but with the node's name: marks and runs itself.
	run, err = s.Client.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: dispatch.LockID(n.UUID), TaskQueue: s.Config.Temporal.TaskQueue},
		workflows.PowerChangeWorkflow, workflows.PowerChangeInput{Node: "r1-n07", Target: node.PowerOn})
	if err != nil {
		t.Fatal(err)
	}
	var res2 workflows.PowerChangeResult
	if err := run.Get(ctx, &res2); err != nil || res2.PowerState != node.PowerOn || res2.LockWorkflowID != "" {
		t.Fatalf("res %+v err %v", res2, err)
	}
}

func TestBMCAuthenticationFailureFailsFast(t *testing.T) {
	t.Parallel()
	s := itest.NewStack(t, srv, itest.StackOptions{})
	n := s.AddIPMINode(t, "bad-password", 0, "")
	n.DriverInfo["ipmi_password"] = "wrong-password"
	if err := s.Store.Update(context.Background(), n); err != nil {
		t.Fatal(err)
	}
	_, err := s.Change(t, n.Name, node.PowerOff, 0)
	var appErr *temporal.ApplicationError
	if !errors.As(err, &appErr) || appErr.Type() != activities.BMCAuthType {
		t.Fatalf("err = %v, want %s", err, activities.BMCAuthType)
	}
	// Failed fast: one attempt, no retry, as the history shows.
	if hist := itest.History(t, s, dispatch.LockID(n.UUID)); !strings.Contains(hist, "attempt:1") || strings.Contains(hist, "attempt:2") {
		t.Fatalf("an authentication failure was retried:\n%s", hist)
	}
	got := s.Node(t, n.UUID)
	if got.PowerState != node.PowerOn || got.TargetPowerState != "" ||
		!strings.HasPrefix(got.LastError, "Failed to change power state to 'power off' by 'power off': ") {
		t.Fatalf("node = power %q target %q last_error %q", got.PowerState, got.TargetPowerState, got.LastError)
	}
	if strings.Contains(got.LastError, "wrong-password") {
		t.Fatal("last_error contains the password")
	}
}

func TestBMCTimeoutsAreRetriedThenRecorded(t *testing.T) {
	t.Parallel()
	s := itest.NewStack(t, srv, itest.StackOptions{Configure: func(c *config.Config) { c.IPMI.CommandRetryTimeout = 6 }})
	n := s.AddRedfishNode(t, "hung", "1", "")
	s.Redfish.SetFault("1", redfishsim.FaultHang)
	_, err := s.Change(t, n.Name, node.PowerOff, 0)
	if err == nil {
		t.Fatal("a hung BMC did not fail the change")
	}
	got := s.Node(t, n.UUID)
	if got.TargetPowerState != "" || got.PowerState != node.PowerOn || !strings.Contains(got.LastError, "did not answer in time") {
		t.Fatalf("node = power %q target %q last_error %q", got.PowerState, got.TargetPowerState, got.LastError)
	}
	// The history shows the attempts.
	hist := itest.History(t, s, dispatch.LockID(n.UUID))
	if !strings.Contains(hist, "TIMEOUT_TYPE_START_TO_CLOSE") && !strings.Contains(hist, "ActivityTaskTimedOut") {
		t.Fatalf("history has no activity timeout")
	}
}

func TestAStateNeverReachedEndsInATimeoutError(t *testing.T) {
	t.Parallel()
	s := itest.NewStack(t, srv, itest.StackOptions{})
	n := s.AddIPMINode(t, "stuck", 0, "")
	s.IPMI.BMCs()[0].SetFault(ipmisim.FaultStuck)
	start := time.Now()
	_, err := s.Change(t, n.Name, node.PowerOff, 3)
	var appErr *temporal.ApplicationError
	if !errors.As(err, &appErr) || appErr.Type() != activities.PowerStateTimeoutType {
		t.Fatalf("err = %v, want %s", err, activities.PowerStateTimeoutType)
	}
	// It waited for the 3 s asked (a lower bound: never flaky), not for
	// the 60 s default.
	if d := time.Since(start); d < 3*time.Second || d > 45*time.Second {
		t.Fatalf("timed out after %v, want about the 3 s asked", d)
	}
	got := s.Node(t, n.UUID)
	if got.LastError != "Failed to change power state to 'power off' by 'power off': Failed to set node power state to power off. The node is still power on." || got.TargetPowerState != "" {
		t.Fatalf("node: last_error %q target %q", got.LastError, got.TargetPowerState)
	}
}

func TestBadRequestsChangeNothing(t *testing.T) {
	t.Parallel()
	s := itest.NewStack(t, srv, itest.StackOptions{})
	n := s.AddRedfishNode(t, "guarded", "1", "")
	ctx := context.Background()
	if _, err := s.Start(ctx, t, n.Name, "explode", 0); !errors.Is(err, operator.ErrInvalidRequest) {
		t.Fatalf("unknown target: err = %v", err)
	}
	if _, err := s.Start(ctx, t, n.Name, node.PowerOff, -1); !errors.Is(err, operator.ErrInvalidRequest) {
		t.Fatalf("negative timeout: err = %v", err)
	}
	// The workflow checks again, for starts that bypass the starter.
	tests := []struct {
		name  string
		input workflows.PowerChangeInput
		want  string
	}{
		{"unknown node", workflows.PowerChangeInput{Node: "no-such-node", Target: node.PowerOn}, activities.NodeNotFoundType},
		{"unknown target", workflows.PowerChangeInput{Node: n.Name, Target: "explode"}, activities.InvalidTargetType},
	}
	for _, tt := range tests {
		run, err := s.Client.ExecuteWorkflow(ctx, client.StartWorkflowOptions{TaskQueue: s.Config.Temporal.TaskQueue}, workflows.PowerChangeWorkflow, tt.input)
		if err != nil {
			t.Fatal(err)
		}
		err = run.Get(ctx, nil)
		var appErr *temporal.ApplicationError
		if !errors.As(err, &appErr) || appErr.Type() != tt.want {
			t.Errorf("%s: err = %v, want %s", tt.name, err, tt.want)
		}
	}
	n2 := s.Node(t, n.UUID)
	n2.ProvisionState = node.CleanWait
	if err := s.Store.Update(ctx, n2); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Change(t, n.Name, node.PowerOff, 0); !errors.Is(err, operator.ErrInvalidRequest) || !strings.Contains(err.Error(), "clean wait") {
		t.Fatalf("clean wait: err = %v", err)
	}
	run, err := s.Client.ExecuteWorkflow(ctx, client.StartWorkflowOptions{TaskQueue: s.Config.Temporal.TaskQueue}, workflows.PowerChangeWorkflow,
		workflows.PowerChangeInput{Node: n.Name, Target: node.PowerOff})
	if err != nil {
		t.Fatal(err)
	}
	var appErr *temporal.ApplicationError
	if err := run.Get(ctx, nil); !errors.As(err, &appErr) || appErr.Type() != activities.InvalidStateType {
		t.Fatalf("clean wait, started directly: err = %v", err)
	}
	if got := s.Node(t, n.UUID); got.PowerState != node.PowerOn || got.TargetPowerState != "" || got.LastError != "" || len(s.Redfish.Resets("1")) != 0 {
		t.Fatalf("a refused change changed the node: %+v", got)
	}
}

func TestDisablePowerOff(t *testing.T) {
	t.Parallel()
	s := itest.NewStack(t, srv, itest.StackOptions{})
	n := s.AddRedfishNode(t, "keep-on", "1", "")
	n.DisablePowerOff = true
	if err := s.Store.Update(context.Background(), n); err != nil {
		t.Fatal(err)
	}
	for _, target := range []string{node.PowerOff, node.SoftPowerOff} {
		if _, err := s.Change(t, n.Name, target, 0); !errors.Is(err, operator.ErrInvalidRequest) || !strings.Contains(err.Error(), "disable_power_off") {
			t.Fatalf("%s: err = %v", target, err)
		}
	}
	// Ironic allows a reboot of such a node.
	if res, err := s.Change(t, n.Name, node.Reboot, 0); err != nil || res.PowerState != node.PowerOn {
		t.Fatalf("reboot: %+v %v", res, err)
	}
	if got := s.Node(t, n.UUID); got.LastError != "" {
		t.Fatalf("last_error = %q", got.LastError)
	}
}

// TestRequestClearsLastErrorEvenInAFailureState: a requested change
// starts a new operation (Ironic's change_node_power_state clears
// last_error whatever the provision state); only a change the sync forces
// keeps it in a failure state (activities' TestSyncForce... tables).
func TestRequestClearsLastErrorEvenInAFailureState(t *testing.T) {
	t.Parallel()
	s := itest.NewStack(t, srv, itest.StackOptions{})
	for i, prov := range []string{node.Manageable, node.CleanFailed} {
		n := s.AddRedfishNode(t, fmt.Sprintf("last-error-%d", i), strconv.Itoa(i+1), "")
		n.ProvisionState, n.LastError = prov, "old failure"
		if err := s.Store.Update(context.Background(), n); err != nil {
			t.Fatal(err)
		}
		run, err := s.Start(context.Background(), t, n.Name, node.PowerOff, 0)
		if err != nil {
			t.Fatal(err)
		}
		if got := s.Node(t, n.UUID); got.LastError != "" {
			t.Errorf("%s: last_error = %q once the change started, want none", prov, got.LastError)
		}
		if err := run.Get(context.Background(), nil); err != nil {
			t.Fatal(err)
		}
		if got := s.Node(t, n.UUID); got.LastError != "" || got.PowerState != node.PowerOff {
			t.Errorf("%s: after the change last_error %q, power %q", prov, got.LastError, got.PowerState)
		}
	}
}

func TestStaleTargetDoesNotBlockAChange(t *testing.T) {
	t.Parallel()
	s := itest.NewStack(t, srv, itest.StackOptions{})
	n := s.AddRedfishNode(t, "stale", "1", "")
	n.TargetPowerState = node.PowerOn // left by a crashed conductor
	if err := s.Store.Update(context.Background(), n); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Change(t, n.Name, node.PowerOff, 0); err != nil {
		t.Fatal(err)
	}
	if got := s.Node(t, n.UUID); got.TargetPowerState != "" || got.PowerState != node.PowerOff {
		t.Fatalf("node = %+v", got)
	}
}

func TestNovaOutageDoesNotHoldTheLockAndLosesNothing(t *testing.T) {
	t.Parallel()
	s := itest.NewStack(t, srv, itest.StackOptions{})
	inst := uuid.NewString()
	n := s.AddRedfishNode(t, "nova-down", "1", inst)
	s.Nova.SetOutage(novasim.OutageRefuse)
	start := time.Now()
	if _, err := s.Change(t, n.Name, node.PowerOff, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Change(t, n.Name, node.PowerOn, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Change(t, n.Name, node.PowerOff, 0); err != nil {
		t.Fatal(err)
	}
	// Nova's retries run for up to an hour: three changes finishing at all
	// while it is down shows the lock does not wait for it.
	if d := time.Since(start); d > 2*time.Minute {
		t.Fatalf("three changes took %v while Nova was down: the lock waited for Nova", d)
	}
	// Nova stays down while the notifier retries: 6 s by default,
	// METALPOWER_TEST_NOVA_OUTAGE=5m for the full five minutes.
	outage := 6 * time.Second
	if v := os.Getenv("METALPOWER_TEST_NOVA_OUTAGE"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("METALPOWER_TEST_NOVA_OUTAGE: %v", err)
		}
		outage = d
	}
	time.Sleep(outage - time.Since(start))
	if len(s.NovaTags(inst)) != 0 {
		t.Fatal("Nova got events during the outage")
	}
	s.Nova.SetOutage(novasim.OutageNone)
	back := time.Now()
	itest.WaitFor(t, 90*time.Second, "Nova to learn the latest state", func() bool {
		i, _ := s.Nova.Instance(inst)
		return i.PowerState == "shutdown" && i.VMState == "stopped"
	})
	t.Logf("Nova down for %v; the latest state arrived %v after it came back", back.Sub(start).Round(time.Second), time.Since(back).Round(time.Millisecond))
	// In order: whatever was delivered is a subsequence of off, on, off
	// ending with the latest state.
	tags := s.NovaTags(inst)
	if len(tags) == 0 || tags[len(tags)-1] != "POWER_OFF" || !isSubsequence(tags, []string{"POWER_OFF", "POWER_ON", "POWER_OFF"}) {
		t.Fatalf("Nova events = %v", tags)
	}
}

func isSubsequence(sub, seq []string) bool {
	i := 0
	for _, s := range seq {
		if i < len(sub) && sub[i] == s {
			i++
		}
	}
	return i == len(sub)
}

func TestWorkerCreatesMissingSearchAttributes(t *testing.T) {
	t.Parallel()
	c := srv.Client(t)
	name := "MetalpowerTest" + strings.ReplaceAll(uuid.NewString()[:8], "-", "")
	ctx := context.Background()
	for i := 0; i < 2; i++ { // the second call finds it and does nothing
		if err := temporalconn.EnsureSearchAttributes(ctx, c, "default", name); err != nil {
			t.Fatal(err)
		}
	}
	resp, err := c.OperatorService().ListSearchAttributes(ctx, &operatorservice.ListSearchAttributesRequest{Namespace: "default"})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := resp.GetCustomAttributes()[name]; !ok {
		t.Fatalf("search attribute %s was not created", name)
	}
}

// TestSoftActionsWaitSoftPowerOffTimeout: a soft power off or soft reboot
// requested without a timeout waits [conductor] soft_power_off_timeout,
// other actions power_state_change_timeout, as Ironic's
// change_node_power_state (read back from each change's history).
func TestSoftActionsWaitSoftPowerOffTimeout(t *testing.T) {
	t.Parallel()
	s := itest.NewStack(t, srv, itest.StackOptions{Configure: func(c *config.Config) {
		c.Conductor.SoftPowerOffTimeout, c.Conductor.PowerStateChangeTimeout = 77, 45
	}})
	n := s.AddRedfishNode(t, "soft-timeouts", "1", "")
	for _, tt := range []struct {
		target  string
		timeout int
	}{{node.SoftPowerOff, 77}, {node.PowerOn, 45}, {node.SoftReboot, 77}, {node.Reboot, 45}, {node.PowerOff, 45}} {
		if _, err := s.Change(t, n.Name, tt.target, 0); err != nil {
			t.Fatalf("%s: %v", tt.target, err)
		}
		h := itest.History(t, s, dispatch.LockID(n.UUID))
		if want := fmt.Sprintf(`\"timeout\":%d,`, tt.timeout); !strings.Contains(h, want) {
			t.Fatalf("%s: the plan in the history has no %s:\n%s", tt.target, want, h)
		}
	}
}
