package cluster_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	enumspb "go.temporal.io/api/enums/v1"

	"github.com/metalpower/metalpower/internal/bmc/redfish"
	"github.com/metalpower/metalpower/internal/dispatch"
	"github.com/metalpower/metalpower/internal/node"
	"github.com/metalpower/metalpower/internal/testbed"
	"github.com/metalpower/metalpower/internal/testbed/cluster"
	"github.com/metalpower/metalpower/internal/testbed/devserver"
	"github.com/metalpower/metalpower/internal/testbed/itest"
	"github.com/metalpower/metalpower/workflows"
)

// TestEveryStartPathRunsOnTheNodesGroup (issue 22) runs the production
// topology on the real server, with each conductor group's BMCs on a
// network segment of their own: iptables lets only the group's workers
// (processes under the group's GID) reach its BMCs and refuses everyone
// else, the APIs and command-line clients included. For a Redfish and an
// IPMI node of each of two groups, a power change started through every
// path an operator or a tool has (tctl, the temporal CLI with any ID and
// with the lock ID, a schedule, the starter, the REST API, the baremetal
// and openstack CLIs, the periodic sync) completes and changes the
// hardware; a change for a group with no worker ends with Ironic's
// NoValidHost, recorded in last_error, and succeeds once a worker of the
// group starts; and the firewall's counters show every BMC reached by
// its own group's workers only, with no refused attempt.
func TestEveryStartPathRunsOnTheNodesGroup(t *testing.T) {
	ctx := context.Background()
	suffix := strings.ReplaceAll(uuid.NewString()[:8], "-", "")
	tctl, err := cluster.Tctl()
	if err != nil {
		t.Fatal(err)
	}
	temporalCLI, err := devserver.Binary()
	if err != nil {
		t.Fatal(err)
	}
	baremetal, errB := exec.LookPath("baremetal")
	openstack, errO := exec.LookPath("openstack")
	if errB != nil || errO != nil {
		t.Fatalf("the OpenStack baremetal and openstack CLIs are required: `make deps` installs them (Debian packages python3-ironicclient and python3-openstackclient): %v %v", errB, errO)
	}

	c := startCluster(t, "mp_test_")
	if err := c.EnsureSearchAttributes(ctx); err != nil {
		t.Fatal(err)
	}
	s := itest.NewStack(t, itest.Attach(c.Address), itest.StackOptions{NoWorker: true, Database: createDatabase(t, "mp_store_"+suffix),
		RedfishSystems: 1, IPMIBMCs: 1})
	base := s.Config.Temporal.TaskQueue

	segA := startSegment(t, "", gidDefault, true, time.Second)
	segB := startSegment(t, "segment-b", gidSegmentB, true, time.Second)
	segC := startSegment(t, "segment-c", gidSegmentC, false, time.Second)
	fw := confine(t, "MPSEG-"+suffix, segA, segB, segC)
	probeConfinement(t, fw, segA, segB)
	probeConfinement(t, fw, segB, segA)
	probeConfinement(t, fw, segA, segC)

	workerBin, starterBin := itest.BuildCommand(t, "worker"), itest.BuildCommand(t, "starter")
	env := testbed.ChildEnv(s.Env()...)
	startWorker := func(t *testing.T, seg *bmcSegment) {
		startAs(t, seg.gid, workerBin, slices.Concat(env, []string{"METALPOWER_CONDUCTOR_CONDUCTOR_GROUP=" + seg.group}), "-metrics-addr=")
	}
	startWorker(t, segA)
	startWorker(t, segB)
	startWorker(t, segB)
	var apis []string
	for range 2 {
		port, err := devserver.FreePort()
		if err != nil {
			t.Fatal(err)
		}
		startAs(t, gidControl, starterBin, slices.Concat(env, []string{"METALPOWER_API_HOST_IP=127.0.0.1", "METALPOWER_API_PORT=" + strconv.Itoa(port)}), "api")
		apis = append(apis, "http://127.0.0.1:"+strconv.Itoa(port))
	}
	waitForWorkers(t, s, base, segA.group, 1)
	waitForWorkers(t, s, base, segB.group, 2)
	for _, api := range apis {
		itest.WaitFor(t, 60*time.Second, "the API at "+api, func() bool { code, _ := get(api + "/v1"); return code == http.StatusOK })
	}

	nodes := []*testNode{
		addRedfishNode(t, s, segA, "sp-a-redfish"), addIPMINode(t, s, segA, "sp-a-ipmi"),
		addRedfishNode(t, s, segB, "sp-b-redfish"), addIPMINode(t, s, segB, "sp-b-ipmi"),
	}
	nodeC := addRedfishNode(t, s, segC, "sp-c-redfish")

	p := &starters{s: s, address: c.Address, base: base, tctl: tctl, temporal: temporalCLI, starter: starterBin,
		baremetal: baremetal, openstack: openstack, env: env, tools: toolEnv(t), apis: apis}
	for _, path := range []struct {
		name   string
		change func(n *testNode, target string) error
	}{
		{"tctl workflow start", p.viaTctl},
		{"temporal workflow start", p.viaTemporal},
		{"temporal workflow start under the lock ID", p.viaTemporalUnderLock},
		{"temporal schedule", p.viaSchedule},
		{"starter power --wait", p.viaStarter},
		{"REST API", p.viaREST},
		{"baremetal node power", p.viaBaremetal},
		{"openstack baremetal node power", p.viaOpenstack},
	} {
		t.Run(path.name, func(t *testing.T) {
			for _, n := range nodes {
				t.Run(n.Name, func(t *testing.T) {
					t.Parallel()
					changeThrough(t, s, n, path.change)
				})
			}
		})
	}

	// The periodic sync: each server switched behind metalpower's back is
	// forced back to its recorded state by its own group's workers; the
	// node of the group with no worker is left alone.
	t.Run("periodic sync", func(t *testing.T) {
		want := map[*testNode]string{}
		for _, n := range nodes {
			drift := readyForChange(t, s, n)
			want[n] = s.Node(t, n.UUID).PowerState
			n.setHardware(drift)
		}
		pass, err := itest.RunSyncPass(ctx, s.Client, base)
		if err != nil {
			t.Fatalf("sync pass: %v", err)
		}
		for _, n := range nodes {
			if got := n.hardware(); got != want[n] {
				t.Errorf("%s (group %q) is %s after the pass, want %s forced back", n.Name, n.ConductorGroup, got, want[n])
			} else {
				n.changes++
			}
		}
		if pass.Corrected != len(nodes) || pass.NoWorker != 1 {
			t.Errorf("sync pass: %+v; want %d corrected and 1 node (%s) left to a group with no worker", pass, len(nodes), nodeC.Name)
		}
	})

	// A group with no worker: the change ends, refused as Ironic refuses
	// it, and changes nothing; once a worker of the group runs, it works.
	t.Run("group with no worker", func(t *testing.T) {
		refusal := noValidHost(redfish.Name, segC.group)
		for _, start := range []struct {
			name  string
			start func(n *testNode, target string) (string, error)
		}{
			{"tctl", p.startTctl},
			{"temporal under the lock ID", func(n *testNode, target string) (string, error) {
				return dispatch.LockID(n.UUID), p.startTemporal(dispatch.LockID(n.UUID), n, target)
			}},
		} {
			target := readyForChange(t, s, nodeC)
			before := nodeC.hardware()
			began := time.Now()
			id, err := start.start(nodeC, target)
			if err != nil {
				t.Errorf("%s: %v", start.name, err)
				continue
			}
			_, err = p.wait(id, 3*time.Minute+30*time.Second)
			switch {
			case err == nil:
				t.Errorf("%s: the change of %s succeeded though no worker serves %s", start.name, nodeC.Name, segC.group)
			case !strings.Contains(err.Error(), refusal):
				t.Errorf("%s: the change ended after %v with: %v\nwant Ironic's NoValidHost: %s", start.name, time.Since(began).Round(time.Second), err, refusal)
			}
			if got := s.Node(t, nodeC.UUID); !strings.Contains(got.LastError, refusal) || got.TargetPowerState != "" {
				t.Errorf("%s: %s after the refused change: last_error %q, target_power_state %q; want the NoValidHost text and no target",
					start.name, nodeC.Name, got.LastError, got.TargetPowerState)
			}
			if got := nodeC.hardware(); got != before {
				t.Errorf("%s: %s's BMC went from %s to %s though no worker serves its group", start.name, nodeC.Name, before, got)
			}
		}

		startWorker(t, segC)
		waitForWorkers(t, s, base, segC.group, 1)
		t.Run("REST API", func(t *testing.T) { changeThrough(t, s, nodeC, p.viaREST) })
		t.Run("tctl", func(t *testing.T) { changeThrough(t, s, nodeC, p.viaTctl) })
	})

	t.Run("each BMC reached only by its group's workers", func(t *testing.T) {
		rules, err := fw.Counters()
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range append(slices.Clone(nodes), nodeC) {
			proto, port := n.endpoint()
			var own int64
			var seen []string
			for _, r := range rules {
				if r.Proto != proto || r.Port != port {
					continue
				}
				seen = append(seen, fmt.Sprintf("%s %d", who(r), r.Packets))
				switch {
				case r.Allowed:
					own = r.Packets
				case r.Packets > 0:
					t.Errorf("%s (group %q, %s/%d) was tried by %s: %d packets refused", n.Name, n.ConductorGroup, proto, port, who(r), r.Packets)
				}
			}
			t.Logf("%s (group %q, %s/%d): packets from %s; %d power actions on the BMC for %d changes",
				n.Name, n.ConductorGroup, proto, port, strings.Join(seen, ", "), len(n.actions()), n.changes)
			if n.changes > 0 && own == 0 {
				t.Errorf("%s (group %q) changed %d times, yet no packet of its group's workers (GID %d) reached its BMC", n.Name, n.ConductorGroup, n.changes, n.seg.gid)
			}
			if len(n.actions()) < n.changes {
				t.Errorf("%s: the BMC carried out %d power actions, fewer than the %d changes seen on it", n.Name, len(n.actions()), n.changes)
			}
			if n.ipmi == nil {
				callers := n.seg.redfish.Callers("1")
				if want := redfish.UserAgent(n.ConductorGroup); len(callers) > 0 && !slices.Equal(callers, []string{want}) {
					t.Errorf("%s (group %q) was called by %q, want only %q", n.Name, n.ConductorGroup, callers, want)
				}
			}
		}
	})
}

// who names the processes a firewall rule counts.
func who(r cluster.Rule) string {
	if r.Anyone {
		return "anyone else (new connections)"
	}
	name := map[int]string{gidDefault: "default-group workers", gidSegmentB: "segment-b workers", gidSegmentC: "segment-c workers",
		gidControl: "the APIs and CLIs"}[r.GID]
	return fmt.Sprintf("%s (GID %d)", name, r.GID)
}

// waitForWorkers waits until want worker processes of group poll its
// queue for workflow and activity tasks.
func waitForWorkers(t *testing.T, s *itest.Stack, base, group string, want int) {
	t.Helper()
	queue := dispatch.Queue(base, group)
	itest.WaitFor(t, 90*time.Second, fmt.Sprintf("%d workers to poll %s", want, queue), func() bool {
		for _, kind := range []enumspb.TaskQueueType{enumspb.TASK_QUEUE_TYPE_WORKFLOW, enumspb.TASK_QUEUE_TYPE_ACTIVITY} {
			d, err := s.Client.DescribeTaskQueue(context.Background(), queue, kind)
			if err != nil || len(d.GetPollers()) < want {
				return false
			}
		}
		return true
	})
}

// changeThrough changes n's power to the opposite of its recorded state
// through change, and checks the record and the hardware.
func changeThrough(t *testing.T, s *itest.Stack, n *testNode, change func(n *testNode, target string) error) {
	t.Helper()
	target := readyForChange(t, s, n)
	err := change(n, target)
	hw := n.hardware()
	if hw == target {
		n.changes++
	}
	if err != nil {
		t.Fatalf("%s of %s (group %q): %v", target, n.Name, n.ConductorGroup, err)
	}
	if got := s.Node(t, n.UUID); got.PowerState != target || got.TargetPowerState != "" || hw != target {
		t.Fatalf("%s of %s (group %q) reported success, but the record says power_state %q, target_power_state %q, last_error %q, and the BMC is %s",
			target, n.Name, n.ConductorGroup, got.PowerState, got.TargetPowerState, got.LastError, hw)
	}
}

// readyForChange waits until no change holds n's lock (terminating one
// still running after 2 minutes: a change an earlier step left behind),
// makes the hardware agree with the record, and returns the target that
// changes it.
func readyForChange(t *testing.T, s *itest.Stack, n *testNode) string {
	t.Helper()
	ctx := context.Background()
	lock := dispatch.LockID(n.UUID)
	running := func() bool {
		d, err := s.Client.DescribeWorkflowExecution(ctx, lock, "")
		return err == nil && d.GetWorkflowExecutionInfo().GetStatus() == enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING
	}
	if !within(2*time.Minute, func() bool { return !running() }) {
		t.Logf("%s still held after 2 minutes: terminated", lock)
		s.Client.TerminateWorkflow(ctx, lock, "", "the test needs the node for its next step")
	}
	rec, current := s.Node(t, n.UUID), node.PowerOn
	if rec.PowerState == node.PowerOff {
		current = node.PowerOff
	}
	if rec.PowerState != current || rec.TargetPowerState != "" {
		// A change an earlier step failed or terminated left this behind.
		s.Modify(t, n.UUID, func(m *node.Node) { m.PowerState, m.TargetPowerState = current, "" })
	}
	n.setHardware(current)
	if current == node.PowerOn {
		return node.PowerOff
	}
	return node.PowerOn
}

// starters are the ways a power change can be asked for.
type starters struct {
	s                                             *itest.Stack
	address, base                                 string
	tctl, temporal, starter, baremetal, openstack string
	env, tools                                    []string // the starter's; the other clients'
	apis                                          []string
}

// changeResult is the part of PowerChange's result the test reads.
type changeResult struct {
	PowerState string `json:"power_state"`
}

func changeInput(n *testNode, target string) string {
	b, _ := json.Marshal(map[string]string{"node": n.Name, "target": target})
	return string(b)
}

// wait waits for workflow id to end (terminating it after timeout, so no
// change outlives its step) and returns its result.
func (p *starters) wait(id string, timeout time.Duration) (changeResult, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var res changeResult
	err := p.s.Client.GetWorkflow(ctx, id, "").Get(ctx, &res)
	if ctx.Err() != nil {
		p.s.Client.TerminateWorkflow(context.Background(), id, "", "the test's wait for it ended")
		return res, fmt.Errorf("workflow %s did not end within %v (terminated): %v", id, timeout, err)
	}
	return res, err
}

// result waits for the change run as workflow id and checks its result.
func (p *starters) result(id, target string) error {
	res, err := p.wait(id, 3*time.Minute)
	if err != nil {
		return fmt.Errorf("workflow %s: %w", id, err)
	}
	if res.PowerState != target {
		return fmt.Errorf("workflow %s ended with power_state %q, want %q", id, res.PowerState, target)
	}
	return nil
}

func (p *starters) startTctl(n *testNode, target string) (string, error) {
	id := "tctl-" + n.Name + "-" + uuid.NewString()[:8]
	out, err := runAs(gidControl, p.tools, p.tctl, "--address", p.address, "--namespace", "default", "workflow", "start",
		"--taskqueue", p.base, "--workflow_type", workflows.PowerChangeWorkflow, "--workflow_id", id, "--input", changeInput(n, target))
	if err != nil {
		return id, fmt.Errorf("tctl workflow start: %v\n%s", err, out)
	}
	return id, nil
}

func (p *starters) viaTctl(n *testNode, target string) error {
	id, err := p.startTctl(n, target)
	if err != nil {
		return err
	}
	return p.result(id, target)
}

func (p *starters) startTemporal(id string, n *testNode, target string) error {
	out, err := runAs(gidControl, p.tools, p.temporal, "workflow", "start", "--address", p.address, "--namespace", "default",
		"--task-queue", p.base, "--type", workflows.PowerChangeWorkflow, "--workflow-id", id, "--input", changeInput(n, target))
	if err != nil {
		return fmt.Errorf("temporal workflow start: %v\n%s", err, out)
	}
	return nil
}

func (p *starters) viaTemporal(n *testNode, target string) error {
	id := "cli-" + n.Name + "-" + uuid.NewString()[:8]
	if err := p.startTemporal(id, n, target); err != nil {
		return err
	}
	return p.result(id, target)
}

// viaTemporalUnderLock starts the change under the node's lock ID, with
// the node's name (not its UUID) in the input.
func (p *starters) viaTemporalUnderLock(n *testNode, target string) error {
	if err := p.startTemporal(dispatch.LockID(n.UUID), n, target); err != nil {
		return err
	}
	return p.result(dispatch.LockID(n.UUID), target)
}

// viaSchedule creates a schedule whose action is the change, triggers it,
// waits for the workflow it started and deletes the schedule.
func (p *starters) viaSchedule(n *testNode, target string) error {
	id := "sched-" + n.Name + "-" + uuid.NewString()[:8]
	cli := func(args ...string) error {
		out, err := runAs(gidControl, p.tools, p.temporal, append(args, "--address", p.address, "--namespace", "default")...)
		if err != nil {
			return fmt.Errorf("temporal %s: %v\n%s", strings.Join(args[:2], " "), err, out)
		}
		return nil
	}
	// Hourly from tomorrow: nothing starts by itself during the test, the
	// trigger starts the change now.
	if err := cli("schedule", "create", "--schedule-id", id, "--interval", "1h",
		"--start-time", time.Now().Add(24*time.Hour).UTC().Format(time.RFC3339),
		"--task-queue", p.base, "--type", workflows.PowerChangeWorkflow, "--workflow-id", id, "--input", changeInput(n, target)); err != nil {
		return err
	}
	handle := p.s.Client.ScheduleClient().GetHandle(context.Background(), id)
	defer handle.Delete(context.Background()) // when a step below failed
	if err := cli("schedule", "trigger", "--schedule-id", id); err != nil {
		return err
	}
	var workflowID string
	if !within(time.Minute, func() bool {
		d, err := handle.Describe(context.Background())
		if err != nil {
			return false
		}
		for _, a := range d.Info.RecentActions {
			if a.StartWorkflowResult != nil {
				workflowID = a.StartWorkflowResult.WorkflowID
				return true
			}
		}
		return false
	}) {
		return fmt.Errorf("schedule %s started no workflow within a minute of its trigger", id)
	}
	if err := p.result(workflowID, target); err != nil {
		return fmt.Errorf("schedule %s: %w", id, err)
	}
	return cli("schedule", "delete", "--schedule-id", id)
}

// verb is the CLIs' word for target: "on", "off".
func verb(target string) string { return strings.TrimPrefix(target, "power ") }

func (p *starters) viaStarter(n *testNode, target string) error {
	out, err := runAs(gidControl, p.env, p.starter, "power", verb(target), n.Name, "--wait")
	if err != nil {
		return fmt.Errorf("starter power %s %s --wait: %v\n%s", verb(target), n.Name, err, out)
	}
	if !strings.Contains(out, `"power_state": "`+target+`"`) {
		return fmt.Errorf("starter power %s %s --wait printed:\n%s", verb(target), n.Name, out)
	}
	return nil
}

// viaREST asks one API for the change and watches it end through the
// other.
func (p *starters) viaREST(n *testNode, target string) error {
	req, _ := http.NewRequest(http.MethodPut, p.apis[0]+"/v1/nodes/"+n.Name+"/states/power", strings.NewReader(fmt.Sprintf(`{"target": %q}`, target)))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-OpenStack-Ironic-API-Version", "1.76")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		return fmt.Errorf("PUT /v1/nodes/%s/states/power: %s", n.Name, resp.Status)
	}
	return p.waitAPI(p.apis[1], n, target)
}

func (p *starters) viaBaremetal(n *testNode, target string) error {
	out, err := runAs(gidControl, p.tools, p.baremetal, "--os-endpoint", p.apis[1], "--os-auth-type", "none", "node", "power", verb(target), n.Name)
	if err != nil {
		return fmt.Errorf("baremetal node power %s %s: %v\n%s", verb(target), n.Name, err, out)
	}
	return p.waitAPI(p.apis[0], n, target)
}

func (p *starters) viaOpenstack(n *testNode, target string) error {
	out, err := runAs(gidControl, p.tools, p.openstack, "--os-endpoint", p.apis[0], "--os-auth-type", "none", "baremetal", "node", "power", verb(target), n.Name)
	if err != nil {
		return fmt.Errorf("openstack baremetal node power %s %s: %v\n%s", verb(target), n.Name, err, out)
	}
	return p.waitAPI(p.apis[1], n, target)
}

// waitAPI polls the node through api until no change is under way
// (target_power_state null), and checks it reached target.
func (p *starters) waitAPI(api string, n *testNode, target string) error {
	var v struct {
		PowerState       *string `json:"power_state"`
		TargetPowerState *string `json:"target_power_state"`
		LastError        *string `json:"last_error"`
	}
	var body string
	if !within(3*time.Minute, func() bool {
		var code int
		code, body = get(api + "/v1/nodes/" + n.Name)
		return code == http.StatusOK && json.Unmarshal([]byte(body), &v) == nil && v.TargetPowerState == nil
	}) {
		return fmt.Errorf("%s still has a target_power_state after 3 minutes: %s", n.Name, body)
	}
	if v.PowerState == nil || *v.PowerState != target {
		return fmt.Errorf("the change of %s ended, but the API shows it as: %s", n.Name, body)
	}
	return nil
}
