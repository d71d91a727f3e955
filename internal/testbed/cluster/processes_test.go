package cluster_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"

	"github.com/google/uuid"
	_ "github.com/jackc/pgx/v5/stdlib"

	"github.com/metalpower/metalpower/internal/bmc/redfish"
	"github.com/metalpower/metalpower/internal/dispatch"
	"github.com/metalpower/metalpower/internal/node"
	"github.com/metalpower/metalpower/internal/testbed"
	"github.com/metalpower/metalpower/internal/testbed/cluster"
	"github.com/metalpower/metalpower/internal/testbed/devserver"
	"github.com/metalpower/metalpower/internal/testbed/itest"
	"github.com/metalpower/metalpower/workflows"
)

// TestSeveralWorkersAndAPIs runs the production shape on the real server:
// the node store on PostgreSQL, three worker processes in two conductor
// groups (one of the default group, two of segment-b) and two API
// processes. A change requested through one API is seen through the
// other, in both groups; a segment-b worker killed with SIGKILL while it
// runs a change's activity leaves the change to the other segment-b
// worker, which finishes it; a sync pass corrects drift in both groups;
// and the Redfish systems, which record who called, were reached only by
// workers of their node's group.
func TestSeveralWorkersAndAPIs(t *testing.T) {
	ctx := context.Background()
	suffix := strings.ReplaceAll(uuid.NewString()[:8], "-", "")
	c := startCluster(t, "mp_test_")
	if err := c.EnsureSearchAttributes(ctx); err != nil {
		t.Fatal(err)
	}
	storeURL := createDatabase(t, "mp_store_"+suffix)
	s := itest.NewStack(t, itest.Attach(c.Address), itest.StackOptions{NoWorker: true, Database: storeURL, TransitionDelay: 4 * time.Second})
	workerBin, starterBin := itest.BuildCommand(t, "worker"), itest.BuildCommand(t, "starter")
	env := testbed.ChildEnv(s.Env()...)

	const segment = "segment-b"
	group := map[int]string{} // worker pid -> conductor group
	workers := map[int]*exec.Cmd{}
	for _, g := range []string{"", segment, segment} {
		cmd := start(t, workerBin, append(env, "METALPOWER_CONDUCTOR_CONDUCTOR_GROUP="+g), "-metrics-addr=")
		workers[cmd.Process.Pid], group[cmd.Process.Pid] = cmd, g
	}
	var apis []string
	for range 2 {
		port, err := devserver.FreePort()
		if err != nil {
			t.Fatal(err)
		}
		start(t, starterBin, append(env, "METALPOWER_API_HOST_IP=127.0.0.1", "METALPOWER_API_PORT="+strconv.Itoa(port)), "api")
		apis = append(apis, "http://127.0.0.1:"+strconv.Itoa(port))
	}
	for queue, want := range map[string]int{s.Config.Temporal.TaskQueue: 1, dispatch.Queue(s.Config.Temporal.TaskQueue, segment): 2} {
		itest.WaitFor(t, 60*time.Second, fmt.Sprintf("%d workers to poll %s", want, queue), func() bool {
			d, err := s.Client.DescribeTaskQueue(ctx, queue, enumspb.TASK_QUEUE_TYPE_ACTIVITY)
			return err == nil && len(d.GetPollers()) >= want
		})
	}
	for _, api := range apis {
		itest.WaitFor(t, 30*time.Second, "the API at "+api, func() bool { code, _ := get(api + "/v1"); return code == http.StatusOK })
	}
	nodes := []*node.Node{s.AddRedfishNode(t, "multi-1", "1", ""), s.AddRedfishNode(t, "multi-2", "2", ""), s.AddRedfishNode(t, "multi-3", "3", "")}
	for _, n := range nodes[1:] {
		n.ConductorGroup = segment
		s.Modify(t, n.UUID, func(m *node.Node) { m.ConductorGroup = segment })
	}

	// Requested through one API, seen through the other, in each group.
	for i, n := range nodes[:2] {
		req, _ := http.NewRequest(http.MethodPut, apis[i]+"/v1/nodes/"+n.Name+"/states/power", strings.NewReader(`{"target": "power off"}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-OpenStack-Ironic-API-Version", "1.76")
		resp, err := http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode != http.StatusAccepted {
			t.Fatalf("PUT %s through API %d: %v %v", n.Name, i, resp, err)
		}
		resp.Body.Close()
		itest.WaitFor(t, 60*time.Second, "the other API to show "+n.Name+" off", func() bool {
			_, body := get(apis[1-i] + "/v1/nodes/" + n.Name + "/states")
			return strings.Contains(body, `"power_state":"power off"`) && strings.Contains(body, `"target_power_state":null`)
		})
	}

	// A segment-b worker killed with SIGKILL while it runs the change's
	// activity: the other segment-b worker finishes the change.
	n := nodes[2]
	run, err := s.Start(ctx, t, n.Name, node.PowerOff, 0)
	if err != nil {
		t.Fatal(err)
	}
	var victim int
	itest.WaitFor(t, 30*time.Second, "a worker to run the change's activity", func() bool {
		d, err := s.Client.DescribeWorkflowExecution(ctx, dispatch.LockID(n.UUID), "")
		if err != nil {
			return false
		}
		for _, a := range d.GetPendingActivities() {
			pid, _, _ := strings.Cut(a.GetLastWorkerIdentity(), "@")
			victim, _ = strconv.Atoi(pid)
			return workers[victim] != nil
		}
		return false
	})
	if group[victim] != segment {
		t.Fatalf("the change of a %s node ran on worker %d of group %q", segment, victim, group[victim])
	}
	if err := workers[victim].Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	var res workflows.PowerChangeResult
	rctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	if err := run.Get(rctx, &res); err != nil || res.PowerState != node.PowerOff {
		t.Fatalf("the change after its worker was killed: %+v, %v", res, err)
	}
	if got := s.Node(t, n.UUID); got.PowerState != node.PowerOff || got.TargetPowerState != "" {
		t.Fatalf("node: power %q, target %q", got.PowerState, got.TargetPowerState)
	}

	// A sync pass across both groups corrects drift in each.
	s.Redfish.SetPowerState("1", "On")
	s.Redfish.SetPowerState("2", "On")
	pass, err := itest.RunSyncPass(ctx, s.Client, s.Config.Temporal.TaskQueue)
	if err != nil || pass.Checked != 3 || pass.Corrected != 2 || pass.NoWorker != 0 {
		t.Fatalf("sync pass: %+v, %v; want 3 checked, 2 corrected", pass, err)
	}
	for _, id := range []string{"1", "2", "3"} {
		if got := s.Redfish.PowerState(id); got != "Off" {
			t.Errorf("system %s is %s after the pass, want Off", id, got)
		}
	}

	// Each BMC was touched only by workers of its node's group.
	for i, n := range nodes {
		id := strconv.Itoa(i + 1)
		if got, want := s.Redfish.Callers(id), []string{redfish.UserAgent(n.ConductorGroup)}; !slices.Equal(got, want) {
			t.Errorf("system %s (node %s, group %q) was called by %q, want only %q", id, n.Name, n.ConductorGroup, got, want)
		}
	}
}

// createDatabase creates a PostgreSQL database of the test's own on the
// machine's server, dropped when the test ends, and returns its URL.
func createDatabase(t *testing.T, name string) string {
	t.Helper()
	url, err := cluster.EnsureDatabase(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cluster.DropDatabase(context.Background(), name) })
	return url
}

// startCluster runs a real server on databases of the test's own
// (prefix_<random>), stopped and dropped when the test ends.
func startCluster(t *testing.T, prefix string) *cluster.Cluster {
	t.Helper()
	opts := cluster.Options{DB: prefix + strings.ReplaceAll(uuid.NewString()[:8], "-", "")}
	c, err := cluster.Start(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Stop()
		if err := cluster.DropDatabases(context.Background(), opts); err != nil {
			t.Error(err)
		}
	})
	return c
}

// start runs a process until the test ends; its output goes to the test
// log when the test fails.
func start(t *testing.T, bin string, env []string, args ...string) *exec.Cmd {
	t.Helper()
	return startAs(t, noGID, bin, env, args...)
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

func get(url string) (int, string) {
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req.Header.Set("X-OpenStack-Ironic-API-Version", "1.76")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}
