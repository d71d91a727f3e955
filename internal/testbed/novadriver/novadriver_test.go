// Package novadriver proves that Nova's own ironic virt driver
// (nova.virt.ironic.driver from Debian's python3-nova, Zed, imported by
// drive.py, never copied) works against the real `starter api` process:
//
//   - the power path: get_info, power_off (hard and soft), power_on and
//     reboot (hard and soft) of an instance, each checked afterwards
//     through the API and on the simulated hardware;
//   - the resource tracker: get_available_nodes, get_available_resource
//     and update_provider_tree for nodes whose resource_class, properties
//     and traits were set through the REST API.
//
// The resource tracker is the part that once broke: before the API stored
// resource_class and properties, Nova's driver failed for every node
// (get_available_resource on the missing properties, update_provider_tree
// with NoResourceClass), so nova-compute reported no inventory at all.
// Every call the driver makes goes over HTTP to the API process; only
// Nova's database-backed lookups are stubbed (see drive.py).
package novadriver_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/metalpower/metalpower/internal/node"
	"github.com/metalpower/metalpower/internal/testbed"
	"github.com/metalpower/metalpower/internal/testbed/devserver"
	"github.com/metalpower/metalpower/internal/testbed/itest"
)

var srv *itest.Server

func TestMain(m *testing.M) {
	os.Exit(itest.MustMain(m, &srv))
}

// Nova's power states (nova/compute/power_state.py).
const (
	novaRunning  = 1
	novaShutdown = 4
)

// The microversion the Go side speaks: Nova's driver asks for 1.46.
const apiVersion = "1.46"

func TestNovaIronicDriver(t *testing.T) {
	python := novaPython(t)
	bin := itest.BuildCommand(t, "starter")
	s := itest.NewStack(t, srv, itest.StackOptions{RedfishSystems: 2, IPMIBMCs: 1})
	inst := uuid.NewString()
	gold := s.AddRedfishNode(t, "nova-gold", "1", inst) // active, with the instance
	silver := s.AddRedfishNode(t, "nova-silver", "2", "")
	a := startAPI(t, bin, s)

	// What an operator sets for Nova's resource tracker, through the API.
	a.ok(t, http.MethodPatch, "/v1/nodes/"+gold.UUID, `[
		{"op": "add", "path": "/resource_class", "value": "baremetal.gold"},
		{"op": "add", "path": "/properties/cpu_arch", "value": "x86_64"},
		{"op": "add", "path": "/properties/memory_mb", "value": 131072},
		{"op": "add", "path": "/properties/local_gb", "value": 900},
		{"op": "add", "path": "/properties/cpus", "value": 32},
		{"op": "add", "path": "/properties/capabilities", "value": "boot_mode:uefi,raid_level:1"}]`, http.StatusOK)
	a.ok(t, http.MethodPut, "/v1/nodes/"+gold.UUID+"/traits", `{"traits": ["HW_CPU_X86_AVX2", "CUSTOM_GPU"]}`, http.StatusNoContent)
	a.ok(t, http.MethodPatch, "/v1/nodes/"+silver.UUID, `[
		{"op": "add", "path": "/resource_class", "value": "baremetal.silver"},
		{"op": "add", "path": "/properties/cpu_arch", "value": "aarch64"},
		{"op": "add", "path": "/properties/memory_mb", "value": 65536},
		{"op": "add", "path": "/properties/local_gb", "value": 400},
		{"op": "add", "path": "/properties/cpus", "value": 16}]`, http.StatusOK)
	// An unused node Nova may schedule to is available.
	a.ok(t, http.MethodPut, "/v1/nodes/"+silver.UUID+"/states/provision", `{"target": "provide"}`, http.StatusAccepted)

	d := startDriver(t, python, a.base, inst, gold.UUID)

	t.Run("resource tracker", func(t *testing.T) {
		var nodes struct {
			answer
			Nodes         []string `json:"nodes"`
			InstanceUUIDs []string `json:"instance_uuids"`
		}
		d.call(t, "nodes", &nodes)
		want := []string{gold.UUID, silver.UUID}
		slices.Sort(want)
		if !slices.Equal(nodes.Nodes, want) {
			t.Fatalf("get_available_nodes() = %v, want %v (both nodes: the instance's, and the unassigned one the hash ring gives this host)", nodes.Nodes, want)
		}
		if !slices.Equal(nodes.InstanceUUIDs, []string{inst}) {
			t.Errorf("list_instance_uuids() = %v, want [%s]", nodes.InstanceUUIDs, inst)
		}

		var res struct {
			answer
			Nodes map[string]struct {
				Resource          map[string]any `json:"resource"`
				ResourceError     string         `json:"resource_error"`
				Inventory         map[string]any `json:"inventory"`
				Traits            []string       `json:"traits"`
				ProviderTreeError string         `json:"provider_tree_error"`
				InventoryUncached map[string]any `json:"inventory_uncached"`
				UncachedError     string         `json:"uncached_error"`
			} `json:"nodes"`
		}
		d.call(t, "resources", &res)
		// Zed reports vcpus, memory_mb and local_gb as 0 (since Stein,
		// scheduling is by resource class only); the properties still
		// give the architecture and the capabilities' extra specs.
		expect := []struct {
			uuid, resource, inventory string
			traits                    []string
		}{
			{gold.UUID, `{"uuid": "` + gold.UUID + `", "hypervisor_hostname": "` + gold.UUID + `",
				"hypervisor_type": "ironic", "hypervisor_version": 1, "resource_class": "baremetal.gold",
				"cpu_info": null, "vcpus": 0, "vcpus_used": 0, "local_gb": 0, "local_gb_used": 0,
				"disk_available_least": 0, "memory_mb": 0, "memory_mb_used": 0,
				"supported_instances": [["x86_64", "baremetal", "hvm"]],
				"stats": {"cpu_arch": "x86_64", "boot_mode": "uefi", "raid_level": "1"}, "numa_topology": null}`,
				// Reserved: the node has an instance.
				`{"CUSTOM_BAREMETAL_GOLD": {"total": 1, "reserved": 1, "min_unit": 1, "max_unit": 1, "step_size": 1, "allocation_ratio": 1.0}}`,
				[]string{"CUSTOM_GPU", "HW_CPU_X86_AVX2"}},
			{silver.UUID, `{"uuid": "` + silver.UUID + `", "hypervisor_hostname": "` + silver.UUID + `",
				"hypervisor_type": "ironic", "hypervisor_version": 1, "resource_class": "baremetal.silver",
				"cpu_info": null, "vcpus": 0, "vcpus_used": 0, "local_gb": 0, "local_gb_used": 0,
				"disk_available_least": 0, "memory_mb": 0, "memory_mb_used": 0,
				"supported_instances": [["aarch64", "baremetal", "hvm"]],
				"stats": {"cpu_arch": "aarch64"}, "numa_topology": null}`,
				// Available, powered on, no instance: schedulable.
				`{"CUSTOM_BAREMETAL_SILVER": {"total": 1, "reserved": 0, "min_unit": 1, "max_unit": 1, "step_size": 1, "allocation_ratio": 1.0}}`,
				[]string{}},
		}
		for _, e := range expect {
			got, ok := res.Nodes[e.uuid]
			if !ok {
				t.Errorf("node %s: not reported by the resource tracker run: %v", e.uuid, res.Nodes)
				continue
			}
			if got.ResourceError != "" {
				t.Errorf("get_available_resource(%s) raised %s", e.uuid, got.ResourceError)
			} else if want := decode(t, e.resource); !reflect.DeepEqual(got.Resource, want) {
				t.Errorf("get_available_resource(%s):\n got %s\nwant %s", e.uuid, encode(got.Resource), encode(want))
			}
			if got.UncachedError != "" {
				t.Errorf("update_provider_tree(%s), the node not in the driver's cache, raised %s", e.uuid, got.UncachedError)
			} else if want := decode(t, e.inventory); !reflect.DeepEqual(got.InventoryUncached, want) {
				t.Errorf("update_provider_tree(%s), the node not in the driver's cache, inventory:\n got %s\nwant %s", e.uuid, encode(got.InventoryUncached), encode(want))
			}
			if got.ProviderTreeError != "" {
				t.Errorf("update_provider_tree(%s) raised %s", e.uuid, got.ProviderTreeError)
				continue
			}
			if want := decode(t, e.inventory); !reflect.DeepEqual(got.Inventory, want) {
				t.Errorf("update_provider_tree(%s) inventory:\n got %s\nwant %s", e.uuid, encode(got.Inventory), encode(want))
			}
			if !slices.Equal(got.Traits, e.traits) {
				t.Errorf("update_provider_tree(%s) traits = %v, want %v", e.uuid, got.Traits, e.traits)
			}
		}
	})

	t.Run("power", func(t *testing.T) {
		info := func(t *testing.T, want int) {
			t.Helper()
			var r struct {
				answer
				Fresh  novaState `json:"fresh"`
				Cached novaState `json:"cached"`
				Exists bool      `json:"exists"`
			}
			d.call(t, "info", &r)
			if r.Fresh.Code != want || r.Cached.Code != want || !r.Exists {
				t.Fatalf("get_info: fresh %v, cached %v, instance_exists %v; want power state %d", r.Fresh, r.Cached, r.Exists, want)
			}
		}
		info(t, novaRunning)

		steps := []struct {
			cmd    string
			nova   int    // get_info afterwards
			api    string // the node's power_state afterwards
			hw     string // the simulated system afterwards
			resets []string
		}{
			{"power_off", novaShutdown, node.PowerOff, "Off", []string{"ForceOff"}},
			{"power_on", novaRunning, node.PowerOn, "On", []string{"On"}},
			// A hard reboot is ForceOff then On, as Ironic's redfish driver.
			{"reboot", novaRunning, node.PowerOn, "On", []string{"ForceOff", "On"}},
			// Nova's stop: power_off with the clean-shutdown timeout.
			{"soft_power_off", novaShutdown, node.PowerOff, "Off", []string{"GracefulShutdown"}},
			{"power_on", novaRunning, node.PowerOn, "On", []string{"On"}},
			{"soft_reboot", novaRunning, node.PowerOn, "On", []string{"GracefulRestart"}},
		}
		for _, st := range steps {
			before := len(s.Redfish.Resets("1"))
			var r struct {
				answer
				Seconds    float64 `json:"seconds"`
				APIVersion string  `json:"api_version"`
			}
			if !d.try(t, st.cmd, &r) {
				continue
			}
			t.Logf("%s: %.1fs (ironicclient at %s)", st.cmd, r.Seconds, r.APIVersion)
			// Nova's driver returned once target_power_state was null:
			// the API must show the final state now.
			var n struct {
				PowerState       string  `json:"power_state"`
				TargetPowerState *string `json:"target_power_state"`
				LastError        *string `json:"last_error"`
			}
			a.get(t, "/v1/nodes/"+gold.UUID+"/states", &n)
			if n.PowerState != st.api || n.TargetPowerState != nil || n.LastError != nil {
				t.Errorf("after %s: API power_state %q, target_power_state %v, last_error %v; want %q, null, null",
					st.cmd, n.PowerState, deref(n.TargetPowerState), deref(n.LastError), st.api)
			}
			if got := s.Redfish.PowerState("1"); got != st.hw {
				t.Errorf("after %s: simulated system is %s, want %s", st.cmd, got, st.hw)
			}
			if got := s.Redfish.Resets("1")[before:]; !slices.Equal(got, st.resets) {
				t.Errorf("after %s: resets sent %v, want %v", st.cmd, got, st.resets)
			}
			info(t, st.nova)
		}

		// The actions went to the API process: one accepted PUT each.
		var puts []int
		for _, e := range a.requests() {
			if e.Method == http.MethodPut && e.Path == "/v1/nodes/"+gold.UUID+"/states/power" {
				puts = append(puts, e.Status)
			}
		}
		if want := slices.Repeat([]int{http.StatusAccepted}, len(steps)); !slices.Equal(puts, want) {
			t.Errorf("PUT /v1/nodes/%s/states/power answers seen by the API: %v, want %v", gold.UUID, puts, want)
		}
	})

	// Nothing the driver did may leave the silver node changed.
	var n struct {
		PowerState string `json:"power_state"`
	}
	a.get(t, "/v1/nodes/"+silver.UUID, &n)
	if n.PowerState != node.PowerOn || s.Redfish.PowerState("2") != "On" || len(s.Redfish.Resets("2")) != 0 {
		t.Errorf("the other node: power_state %s, hardware %s, resets %v", n.PowerState, s.Redfish.PowerState("2"), s.Redfish.Resets("2"))
	}
}

type novaState struct {
	Code int    `json:"code"`
	Name string `json:"name"`
}

func (s novaState) String() string { return fmt.Sprintf("%d (%s)", s.Code, s.Name) }

func deref(p *string) any {
	if p == nil {
		return nil
	}
	return *p
}

func decode(t *testing.T, s string) map[string]any {
	t.Helper()
	var v map[string]any
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatalf("bad expected JSON %s: %v", s, err)
	}
	return v
}

func encode(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// novaPython finds Debian's python3 with Nova's ironic driver importable.
func novaPython(t *testing.T) string {
	t.Helper()
	var tried []string
	for _, p := range []string{"/usr/bin/python3", "python3"} {
		path, err := exec.LookPath(p)
		if err != nil {
			tried = append(tried, p+": not found")
			continue
		}
		out, err := exec.Command(path, "-c", "import nova.virt.ironic.driver, ironicclient, openstack").CombinedOutput()
		if err == nil {
			return path
		}
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		tried = append(tried, path+": "+lines[len(lines)-1])
	}
	t.Fatalf("no python3 can import Nova's ironic driver (nova.virt.ironic.driver, python-ironicclient, openstacksdk): "+
		"run `make deps` (it installs Debian's python3-nova and python3-ironicclient).\ntried: %s", strings.Join(tried, "; "))
	return ""
}

// api is a `starter api` process.
type api struct {
	base string
	log  *itest.LogBuffer
	http *http.Client
}

// startAPI runs `starter api` on a free loopback port over the stack's
// store and task queue, and waits until GET /v1 answers.
func startAPI(t *testing.T, bin string, s *itest.Stack) *api {
	t.Helper()
	for attempt := 1; ; attempt++ {
		a, err := tryStartAPI(t, bin, s)
		if err == nil {
			return a
		}
		// The free port may have been taken in the meantime.
		if attempt == 3 || !strings.Contains(err.Error(), "address already in use") {
			t.Fatal(err)
		}
	}
}

func tryStartAPI(t *testing.T, bin string, s *itest.Stack) (*api, error) {
	port, err := devserver.FreePort()
	if err != nil {
		return nil, err
	}
	a := &api{base: "http://127.0.0.1:" + strconv.Itoa(port), log: &itest.LogBuffer{},
		http: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{Proxy: nil}}}
	cmd := exec.Command(bin, "api")
	cmd.Env = testbed.ChildEnv(append(s.Env(), "METALPOWER_API_HOST_IP=127.0.0.1", "METALPOWER_API_PORT="+strconv.Itoa(port))...)
	cmd.Stdout, cmd.Stderr = a.log, a.log
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stop := func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case err := <-exited:
			return nil, fmt.Errorf("starter api exited: %v\n%s", err, a.log)
		default:
		}
		if resp, err := a.http.Get(a.base + "/v1"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				t.Cleanup(func() {
					stop()
					if t.Failed() {
						var lines []string
						for _, e := range a.requests() {
							lines = append(lines, fmt.Sprintf("%s %s -> %d", e.Method, e.Path, e.Status))
						}
						t.Logf("requests served by starter api:\n%s", strings.Join(lines, "\n"))
					}
				})
				return a, nil
			}
		}
		if time.Now().After(deadline) {
			stop()
			return nil, fmt.Errorf("starter api did not answer GET /v1 within 30s\n%s", a.log)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// do sends a request at apiVersion and returns the status and body.
func (a *api) do(t *testing.T, method, path, body string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, a.base+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-OpenStack-Ironic-API-Version", apiVersion)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := a.http.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, b
}

func (a *api) ok(t *testing.T, method, path, body string, want int) {
	t.Helper()
	if code, b := a.do(t, method, path, body); code != want {
		t.Fatalf("%s %s: %d %s, want %d", method, path, code, b, want)
	}
}

func (a *api) get(t *testing.T, path string, v any) {
	t.Helper()
	code, b := a.do(t, http.MethodGet, path, "")
	if code != http.StatusOK {
		t.Fatalf("GET %s: %d %s", path, code, b)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("GET %s: %v\n%s", path, err, b)
	}
}

type apiRequest struct {
	Message string `json:"message"`
	Method  string `json:"method"`
	Path    string `json:"path"`
	Status  int    `json:"status"`
}

// requests lists the requests the API process logged.
func (a *api) requests() []apiRequest {
	var out []apiRequest
	for _, line := range strings.Split(a.log.String(), "\n") {
		var e apiRequest
		if json.Unmarshal([]byte(line), &e) == nil && e.Message == "api request" {
			out = append(out, e)
		}
	}
	return out
}

// driver is drive.py: Nova's ironic driver behind a line protocol.
type driver struct {
	in     io.WriteCloser
	lines  chan []byte
	stderr *itest.LogBuffer
	// dead is set once the script stopped answering.
	dead string
}

const stepTimeout = 60 // seconds, per driver call, enforced by drive.py

func startDriver(t *testing.T, python, apiURL, instance, nodeUUID string) *driver {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	script := filepath.Join(filepath.Dir(file), "drive.py")
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, python, script, "--api", apiURL, "--instance", instance, "--node", nodeUUID,
		"--host", "compute-1", "--retry-interval", "1", "--soft-timeout", "30",
		"--step-timeout", strconv.Itoa(stepTimeout), "--state-dir", t.TempDir())
	// No OpenStack settings of the machine (OS_*, clouds.yaml in HOME) and
	// no proxy between the driver and the loopback API.
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		upper := strings.ToUpper(name)
		if strings.HasPrefix(upper, "OS_") || strings.HasSuffix(upper, "_PROXY") || upper == "HOME" ||
			upper == "XDG_CONFIG_HOME" || strings.HasPrefix(upper, "PYTHON") {
			continue
		}
		env = append(env, kv)
	}
	cmd.Env = append(env, "HOME="+t.TempDir(), "NO_PROXY=127.0.0.1,localhost", "no_proxy=127.0.0.1,localhost")
	d := &driver{lines: make(chan []byte, 16), stderr: &itest.LogBuffer{}}
	cmd.Stderr = d.stderr
	var err error
	if d.in, err = cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 1<<20), 16<<20)
		for sc.Scan() {
			d.lines <- bytes.Clone(sc.Bytes())
		}
		close(d.lines)
	}()
	t.Cleanup(func() {
		d.in.Close() // EOF ends the script
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cancel()
			<-done
		}
		cancel()
		if t.Failed() {
			t.Logf("drive.py stderr (last 20000 bytes):\n%s", tail(d.stderr.String(), 20000))
		}
	})
	var ready answer
	d.call(t, "", &ready) // the script's "ready" line
	return d
}

type answer struct {
	Cmd       string `json:"cmd"`
	OK        bool   `json:"ok"`
	Error     string `json:"error"`
	Traceback string `json:"traceback"`
}

func (r answer) base() answer { return r }

// try sends cmd (none: only read the next answer) and decodes the answer
// into v, which embeds answer; a failed call fails t and returns false.
func (d *driver) try(t *testing.T, cmd string, v interface{ base() answer }) bool {
	t.Helper()
	if d.dead != "" {
		t.Errorf("%s: not run, drive.py is gone: %s", cmd, d.dead)
		return false
	}
	if cmd != "" {
		if _, err := io.WriteString(d.in, cmd+"\n"); err != nil {
			d.dead = "writing to it: " + err.Error()
			t.Errorf("%s: %s", cmd, d.dead)
			return false
		}
	}
	name := cmd
	if name == "" {
		name = "start"
	}
	select {
	case line, ok := <-d.lines:
		if !ok {
			d.dead = "it exited"
			t.Errorf("drive.py %s: it exited without an answer\nstderr:\n%s", name, tail(d.stderr.String(), 8000))
			return false
		}
		if err := json.Unmarshal(line, v); err != nil {
			t.Errorf("drive.py %s: bad answer %q: %v", name, line, err)
			return false
		}
		if r := v.base(); !r.OK {
			if strings.HasPrefix(r.Error, "timeout") {
				d.dead = r.Error
			}
			t.Errorf("Nova's driver, %s: %s\n%s", name, r.Error, r.Traceback)
			return false
		}
		return true
	case <-time.After((stepTimeout + 30) * time.Second):
		d.dead = "no answer"
		t.Errorf("drive.py %s: no answer within %ds", name, stepTimeout+30)
		return false
	}
}

// call is try that stops the test on failure.
func (d *driver) call(t *testing.T, cmd string, v interface{ base() answer }) {
	t.Helper()
	if !d.try(t, cmd, v) {
		t.FailNow()
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}
