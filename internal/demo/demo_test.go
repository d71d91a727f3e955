//go:build unix

package demo_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"
	"github.com/metalpower/metalpower/internal/demo"

	"github.com/metalpower/metalpower/internal/testbed/cluster"
	"github.com/metalpower/metalpower/internal/testbed/devserver"
	"github.com/metalpower/metalpower/workflows"
)

// TestDemo does what CI does with `make demo`: runs `starter demo` in the
// background, waits until it is ready, powers a node off through the
// temporal CLI and another through the REST API, sees the Nova simulator
// notified of both, stops it with SIGINT and finds no process left behind.
// A second run on the same data directory reuses the nodes.
func TestDemo(t *testing.T) {
	root := repoRoot(t)
	temporalCLI := filepath.Join(root, "tools", "bin", "temporal")
	if _, err := os.Stat(temporalCLI); err != nil {
		t.Fatalf("the temporal CLI is missing at %s: run `make deps` (it builds it from tools/)", temporalCLI)
	}
	tmp := t.TempDir()
	bin := buildBinaries(t, root, tmp)
	data := filepath.Join(tmp, "data")
	ports := freePorts(t, 4)
	d := &demoRun{
		t: t, data: data, temporalCLI: temporalCLI,
		apiURL: fmt.Sprintf("http://127.0.0.1:%d", ports[0]), temporalAddr: fmt.Sprintf("127.0.0.1:%d", ports[1]),
	}
	args := []string{"demo", "-data", data, "-temporal-cli", temporalCLI,
		"-api-port", strconv.Itoa(ports[0]), "-temporal-port", strconv.Itoa(ports[1]),
		"-ui-port", strconv.Itoa(ports[2]), "-redfish-addr", fmt.Sprintf("127.0.0.1:%d", ports[3])}

	// First run: a fresh fleet.
	d.start(filepath.Join(bin, "starter"), args)
	d.waitReady()
	if !strings.Contains(d.output(), "enrolled 48 new nodes") {
		t.Fatalf("first run did not enroll the fleet:\n%s", d.output())
	}
	if n := d.nodeCount(); n != 48 {
		t.Fatalf("%d nodes, want 48", n)
	}

	// Through the temporal CLI, as the demo's example shows.
	wfID := "demo-test-rf-04"
	d.temporal("workflow", "start", "--task-queue", "metalpower", "--type", workflows.PowerChangeWorkflow, "--workflow-id", wfID,
		"--input", `{"node":"rf-04","target":"power off"}`)
	out := d.temporal("workflow", "result", "--workflow-id", wfID)
	if !strings.Contains(out, "COMPLETED") {
		t.Fatalf("workflow %s did not complete:\n%s", wfID, out)
	}
	d.waitPower("rf-04", "power off")

	// Through the REST API (retrying while the sync holds the node's lock).
	d.apiPowerOff("rf-12")
	d.waitPower("rf-12", "power off")

	// Nova heard about both: they host instances.
	d.waitNovaEvent("rf-04", "POWER_OFF")
	d.waitNovaEvent("rf-12", "POWER_OFF")

	d.interrupt()

	// Second run on the same data: nothing enrolled twice, states kept.
	d.start(filepath.Join(bin, "starter"), args)
	d.waitReady()
	if !strings.Contains(d.output(), "enrolled 0 new nodes through the API; 48 reused") {
		t.Fatalf("second run did not reuse the nodes:\n%s", d.output())
	}
	if n := d.nodeCount(); n != 48 {
		t.Fatalf("%d nodes after the second run, want 48", n)
	}
	if got := d.power("rf-04"); got != "power off" {
		t.Fatalf("rf-04 is %q after the restart, want power off", got)
	}
	// The IPMI nodes point at this run's simulators (new ports): powering
	// one off works.
	d.apiPowerOff("ipmi-4")
	d.waitPower("ipmi-4", "power off")
	d.waitNovaEvent("ipmi-4", "POWER_OFF")
	d.interrupt()
}

// TestCluster runs `starter cluster` (make cluster) on databases of its
// own: the real Temporal server on PostgreSQL, its Web UI, three workers
// in two conductor groups and two API processes come up; a node of
// segment-b is powered off through the second API and seen off through
// the first; SIGINT stops every process; a second run reuses the
// databases.
func TestCluster(t *testing.T) {
	root := repoRoot(t)
	tmp := t.TempDir()
	bin := buildBinaries(t, root, tmp)
	dbs := fmt.Sprintf("mp_cluster_%d", os.Getpid())
	t.Cleanup(func() {
		cluster.DropDatabases(context.Background(), cluster.Options{DB: dbs + "_temporal"})
		cluster.DropDatabase(context.Background(), dbs)
	})
	data := filepath.Join(tmp, "data")
	api := pairedPort(t) // the second API listens on the next port
	ports := freePorts(t, 4, api, api+1)
	d := &demoRun{
		t: t, data: data, temporalCLI: filepath.Join(root, "tools", "bin", "temporal"), children: 6,
		apiURL: fmt.Sprintf("http://127.0.0.1:%d", api), temporalAddr: fmt.Sprintf("127.0.0.1:%d", ports[0]),
	}
	args := []string{"cluster", "-data", data, "-databases", dbs, "-temporal-cli", d.temporalCLI, "-redfish", "8", "-ipmi", "2", "-segment", "4",
		"-api-port", strconv.Itoa(api), "-temporal-port", strconv.Itoa(ports[0]), "-ui-port", strconv.Itoa(ports[1]),
		"-redfish-addr", fmt.Sprintf("127.0.0.1:%d", ports[2]), "-segment-addr", fmt.Sprintf("127.0.0.1:%d", ports[3])}

	d.start(filepath.Join(bin, "starter"), args)
	d.waitReady()
	if !strings.Contains(d.output(), "enrolled 14 new nodes") {
		t.Fatalf("first run did not enroll the fleet:\n%s", d.output())
	}
	if resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/namespaces/default/workflows", ports[1])); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("the Web UI: %v %v", resp, err)
	}
	second := &demoRun{t: t, apiURL: fmt.Sprintf("http://127.0.0.1:%d", api+1)}
	second.apiPowerOff("seg-02")
	d.waitPower("seg-02", "power off")
	d.interrupt()

	d.start(filepath.Join(bin, "starter"), args)
	d.waitReady()
	if !strings.Contains(d.output(), "enrolled 0 new nodes through the API; 14 reused") {
		t.Fatalf("second run did not reuse the nodes:\n%s", d.output())
	}
	if got := d.power("seg-02"); got != "power off" {
		t.Fatalf("seg-02 is %q after the restart, want power off", got)
	}
	d.interrupt()
}

// buildBinaries builds the worker and starter into dir/bin and returns it.
func buildBinaries(t *testing.T, root, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "bin")
	build := exec.Command("go", "build", "-o", bin+"/", "./worker", "./starter")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// pairedPort returns a free port whose successor is free too.
func pairedPort(t *testing.T) int {
	t.Helper()
	p, err := devserver.FreePorts(2)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// demoRun drives one `starter demo` process at a time.
type demoRun struct {
	t                    *testing.T
	data, temporalCLI    string
	apiURL, temporalAddr string
	// children is how many processes the run starts (3 for the demo).
	children int

	cmd   *exec.Cmd
	mu    sync.Mutex
	out   bytes.Buffer
	ready chan struct{}
	done  chan error
}

func (d *demoRun) output() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.out.String()
}

func (d *demoRun) start(starter string, args []string) {
	d.t.Helper()
	d.mu.Lock()
	d.out.Reset()
	d.mu.Unlock()
	d.cmd = exec.Command(starter, args...)
	pr, pw := io.Pipe()
	d.cmd.Stdout, d.cmd.Stderr = pw, pw
	if err := d.cmd.Start(); err != nil {
		d.t.Fatal(err)
	}
	d.ready, d.done = make(chan struct{}), make(chan error, 1)
	ready, scanned := d.ready, make(chan struct{})
	go func() {
		defer close(scanned)
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			d.mu.Lock()
			d.out.WriteString(sc.Text() + "\n")
			d.mu.Unlock()
			if sc.Text() == demo.ReadyLine {
				close(ready)
			}
		}
	}()
	cmd, done, exited := d.cmd, d.done, make(chan struct{})
	// Wait returns once the scanner has read the last line, maybe before
	// it is in d.out: done is sent when the scanner is through, so that
	// interrupt finds "stopped" at the end.
	go func() { err := cmd.Wait(); pw.Close(); <-scanned; close(exited); done <- err }()
	d.t.Cleanup(func() {
		select {
		case <-exited:
		default: // a failed test: do not leave the demo running
			cmd.Process.Signal(os.Interrupt)
			select {
			case <-exited:
			case <-time.After(30 * time.Second):
				cmd.Process.Kill()
			}
		}
	})
}

func (d *demoRun) waitReady() {
	d.t.Helper()
	select {
	case <-d.ready:
	case err := <-d.done:
		d.t.Fatalf("the demo exited before it was ready (%v):\n%s", err, d.output())
	case <-time.After(3 * time.Minute):
		d.t.Fatalf("the demo was not ready after 3 minutes:\n%s", d.output())
	}
}

var pidRE = regexp.MustCompile(`started .* \(pid (\d+),`)

// interrupt stops the demo with SIGINT, as Ctrl-C does, and checks that
// every process it started is gone.
func (d *demoRun) interrupt() {
	d.t.Helper()
	var pids []int
	for _, m := range pidRE.FindAllStringSubmatch(d.output(), -1) {
		pid, _ := strconv.Atoi(m[1])
		pids = append(pids, pid)
	}
	if want := max(d.children, 3); len(pids) != want {
		d.t.Fatalf("want %d child processes, found %v in:\n%s", want, pids, d.output())
	}
	d.cmd.Process.Signal(os.Interrupt)
	select {
	case err := <-d.done:
		if err != nil {
			d.t.Fatalf("the demo exited with %v after SIGINT:\n%s", err, d.output())
		}
	case <-time.After(time.Minute):
		d.t.Fatalf("the demo did not stop within a minute of SIGINT:\n%s", d.output())
	}
	if !strings.HasSuffix(d.output(), "stopped\n") {
		d.t.Fatalf("the demo did not say it stopped:\n%s", d.output())
	}
	for _, pid := range pids {
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			d.t.Errorf("process %d is still there after the demo stopped (kill 0: %v)", pid, err)
		}
	}
	// Nor anything else running from the test's directories.
	dir := filepath.Dir(d.data)
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err == nil && bytes.Contains(b, []byte(dir)) {
			d.t.Errorf("process %s is left behind: %s", filepath.Base(filepath.Dir(p)), bytes.ReplaceAll(b, []byte{0}, []byte{' '}))
		}
	}
}

func (d *demoRun) temporal(args ...string) string {
	d.t.Helper()
	args = append(args, "--address", d.temporalAddr)
	cmd := exec.Command(d.temporalCLI, args...)
	cmd.Env = append(os.Environ(), "TEMPORAL_CLI_SHOW_STACKS=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		d.t.Fatalf("temporal %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func (d *demoRun) request(method, path, body string) (int, []byte) {
	d.t.Helper()
	req, err := http.NewRequest(method, d.apiURL+path, strings.NewReader(body))
	if err != nil {
		d.t.Fatal(err)
	}
	req.Header.Set("X-OpenStack-Ironic-API-Version", "latest")
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		d.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func (d *demoRun) apiPowerOff(name string) {
	d.t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		status, body := d.request(http.MethodPut, "/v1/nodes/"+name+"/states/power", `{"target":"power off"}`)
		if status == http.StatusAccepted {
			return
		}
		if status != http.StatusConflict || time.Now().After(deadline) {
			d.t.Fatalf("PUT /v1/nodes/%s/states/power: %d %s", name, status, body)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func (d *demoRun) power(name string) string {
	d.t.Helper()
	status, body := d.request(http.MethodGet, "/v1/nodes/"+name, "")
	if status != http.StatusOK {
		d.t.Fatalf("GET /v1/nodes/%s: %d %s", name, status, body)
	}
	var n struct {
		PowerState       *string `json:"power_state"`
		TargetPowerState *string `json:"target_power_state"`
	}
	if err := json.Unmarshal(body, &n); err != nil {
		d.t.Fatal(err)
	}
	if n.PowerState == nil || n.TargetPowerState != nil {
		return ""
	}
	return *n.PowerState
}

func (d *demoRun) waitPower(name, want string) {
	d.t.Helper()
	deadline := time.Now().Add(time.Minute)
	for got := d.power(name); got != want; got = d.power(name) {
		if time.Now().After(deadline) {
			d.t.Fatalf("%s is %q, want %q", name, got, want)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func (d *demoRun) nodeCount() int {
	d.t.Helper()
	status, body := d.request(http.MethodGet, "/v1/nodes?limit=1000", "")
	if status != http.StatusOK {
		d.t.Fatalf("GET /v1/nodes: %d %s", status, body)
	}
	var list struct {
		Nodes []json.RawMessage `json:"nodes"`
	}
	if err := json.Unmarshal(body, &list); err != nil {
		d.t.Fatal(err)
	}
	return len(list.Nodes)
}

// waitNovaEvent waits for the demo's log of what the Nova simulator
// received to show a successful power-update for the node's instance.
func (d *demoRun) waitNovaEvent(nodeName, tag string) {
	d.t.Helper()
	path := filepath.Join(d.data, "nova-events.log")
	deadline := time.Now().Add(time.Minute)
	for {
		b, _ := os.ReadFile(path)
		for _, line := range strings.Split(string(b), "\n") {
			var e struct {
				Name, Node, Tag string
				Code            int
			}
			if json.Unmarshal([]byte(line), &e) == nil && e.Name == "power-update" && e.Node == nodeName && e.Tag == tag && e.Code == 200 {
				return
			}
		}
		if time.Now().After(deadline) {
			d.t.Fatalf("Nova was not told %s of %s; %s has:\n%s", tag, nodeName, path, b)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func repoRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for ; dir != filepath.Dir(dir); dir = filepath.Dir(dir) {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
	}
	t.Fatal("go.mod not found above the working directory")
	return ""
}

// freePorts returns n distinct TCP ports free on 127.0.0.1, none next to
// one of taken (ports picked already but not bound yet).
func freePorts(t *testing.T, n int, taken ...int) []int {
	t.Helper()
	ports, err := devserver.SpacedPorts(n, taken...)
	if err != nil {
		t.Fatal(err)
	}
	return ports
}
