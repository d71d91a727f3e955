package novasim

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

const node1 = "a1b2c3d4-0000-4000-8000-000000000001"

// fakeIronic is just enough of Ironic's API for the compute sync: the node
// list filtered by instance, a node's states, and power changes. A change
// to another state shows target_power_state on the next read and is done
// on the one after, so the sync's wait is exercised.
type fakeIronic struct {
	fakeOptions
	mu       sync.Mutex
	nodes    []*fakeNode
	requests []string // "METHOD path?query"
	versions []string // X-OpenStack-Ironic-API-Version of each request
	bodies   []string // PUT bodies
	// onPut runs (without the fake's lock) when a power change is accepted.
	onPut func()
}

// fakeOptions are the misbehaviours of a fakeIronic.
type fakeOptions struct {
	// listStatus and putStatus replace the answer with an error when set.
	listStatus, putStatus int
	// failChange makes a change end in its old state with last_error set.
	failChange bool
	// neverFinish leaves a change in progress forever.
	neverFinish bool
}

type fakeNode struct {
	uuid, instance string
	power          *string // nil is Ironic's None
	target         *string
	lastError      *string
}

func ptr(s string) *string { return &s }

func (f *fakeIronic) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.requests = append(f.requests, r.Method+" "+r.URL.RequestURI())
	f.versions = append(f.versions, r.Header.Get("X-OpenStack-Ironic-API-Version"))
	var onPut func()
	defer func() {
		f.mu.Unlock()
		if onPut != nil {
			onPut()
		}
	}()

	switch {
	case r.Method == http.MethodGet && r.URL.Path == "/v1/nodes":
		if f.listStatus != 0 {
			http.Error(w, `{"error_message":"boom"}`, f.listStatus)
			return
		}
		nodes := []any{}
		for _, n := range f.nodes {
			if n.instance == r.URL.Query().Get("instance_uuid") {
				nodes = append(nodes, map[string]any{"uuid": n.uuid, "instance_uuid": n.instance, "power_state": n.power})
			}
		}
		writeJSON(w, http.StatusOK, object{"nodes": nodes})
	case r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/states"):
		n := f.node(strings.TrimSuffix(strings.TrimPrefix(r.URL.Path, "/v1/nodes/"), "/states"))
		writeJSON(w, http.StatusOK, object{"power_state": n.power, "target_power_state": n.target, "last_error": n.lastError})
		if n.target != nil && !f.neverFinish { // done by the next read
			if f.failChange {
				n.lastError = ptr("Failed to change power state to '" + *n.target + "'")
			} else {
				n.power = n.target
			}
			n.target = nil
		}
	case r.Method == http.MethodPut && strings.HasSuffix(r.URL.Path, "/states/power"):
		var body struct{ Target string }
		json.NewDecoder(r.Body).Decode(&body)
		b, _ := json.Marshal(body)
		f.bodies = append(f.bodies, string(b))
		if f.putStatus != 0 {
			http.Error(w, `{"error_message":"node locked"}`, f.putStatus)
			return
		}
		n := f.node(strings.TrimSuffix(strings.TrimPrefix(r.URL.Path, "/v1/nodes/"), "/states/power"))
		// As Ironic: a change to the state the node is in is skipped.
		if n.power == nil || *n.power != body.Target {
			n.target = ptr(body.Target)
		}
		onPut = f.onPut
		w.WriteHeader(http.StatusAccepted)
	default:
		http.Error(w, "not found", http.StatusNotFound)
	}
}

func (f *fakeIronic) node(uuid string) *fakeNode {
	for _, n := range f.nodes {
		if n.uuid == uuid {
			return n
		}
	}
	panic("fakeIronic: no node " + uuid)
}

func (f *fakeIronic) Requests() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.requests)
}

// start serves the fake; it stops when the test ends.
func (f *fakeIronic) start(t *testing.T) string {
	ts := httptest.NewServer(f)
	t.Cleanup(ts.Close)
	return ts.URL
}

// The requests of a sync of uuid1 on node1.
const (
	listNode1 = "GET /v1/nodes?fields=uuid%2Cinstance_uuid%2Cpower_state%2Ctarget_power_state%2Cprovision_state%2Cmaintenance%2Clast_error&instance_uuid=" + uuid1
	putPower1 = "PUT /v1/nodes/" + node1 + "/states/power"
	states1   = "GET /v1/nodes/" + node1 + "/states"
)

// instState is the part of an Instance a compute sync test checks.
type instState struct {
	vm, power, task string
	actions         []string
}

func stateOf(t *testing.T, s *Sim, uuid string) instState {
	t.Helper()
	inst, ok := s.Instance(uuid)
	if !ok {
		t.Fatalf("instance %s is gone", uuid)
	}
	return instState{inst.VMState, inst.PowerState, inst.TaskState, inst.Actions}
}

func TestComputeSyncNow(t *testing.T) {
	tests := []struct {
		name string
		// The instance uuid1 before the cycle; no host means "" below.
		host, vm, power, task string
		// node1, backing uuid1 unless noNode; nodePower nil is None.
		noNode    bool
		nodePower *string
		ironic    fakeOptions

		want          instState
		wantForced    []ForcedAction // At is not compared; Err by substring
		wantRequests  []string
		wantErrors    int
		wantNodePower string
	}{
		{
			name: "active and on: nothing to do", host: "compute-1", vm: "active", power: "running", nodePower: ptr("power on"),
			want:         instState{"active", "running", "", nil},
			wantRequests: []string{listNode1}, wantNodePower: "power on",
		},
		{
			name: "stopped and off: nothing to do", host: "compute-1", vm: "stopped", power: "shutdown", nodePower: ptr("power off"),
			want:         instState{"stopped", "shutdown", "", nil},
			wantRequests: []string{listNode1}, wantNodePower: "power off",
		},
		{
			// Nova accepts a shutdown behind its back: its stop API sends a
			// power off, which Ironic skips, and the instance ends stopped.
			name: "active but off: stop", host: "compute-1", vm: "active", power: "running", nodePower: ptr("power off"),
			want:          instState{"stopped", "shutdown", "", []string{"stop"}},
			wantForced:    []ForcedAction{{InstanceUUID: uuid1, NodeUUID: node1, Action: "stop", Target: "power off"}},
			wantRequests:  []string{listNode1, putPower1, states1},
			wantNodePower: "power off",
		},
		{
			// Nova's stale record wins: the node is powered off again.
			name: "stopped but on: force_stop powers the node off", host: "compute-1", vm: "stopped", power: "shutdown", nodePower: ptr("power on"),
			want:          instState{"stopped", "shutdown", "", []string{"stop"}},
			wantForced:    []ForcedAction{{InstanceUUID: uuid1, NodeUUID: node1, Action: "force_stop", Target: "power off"}},
			wantRequests:  []string{listNode1, putPower1, states1, states1},
			wantNodePower: "power off",
		},
		{
			name: "task in progress: skipped without asking Ironic", host: "compute-1", vm: "stopped", power: "shutdown", task: "powering-on", nodePower: ptr("power on"),
			want:          instState{"stopped", "shutdown", "powering-on", nil},
			wantNodePower: "power on",
		},
		{
			name: "no host: not this compute's instance", vm: "stopped", power: "shutdown", nodePower: ptr("power on"),
			want:          instState{"stopped", "shutdown", "", nil},
			wantNodePower: "power on",
		},
		{
			// Nova's InstanceNotFound: NOSTATE is recorded, nothing is done.
			name: "no node for the instance: NOSTATE", host: "compute-1", vm: "active", power: "running", noNode: true,
			want:         instState{"active", "pending", "", nil},
			wantRequests: []string{listNode1},
		},
		{
			name: "node power state None: NOSTATE", host: "compute-1", vm: "stopped", power: "shutdown",
			want:         instState{"stopped", "pending", "", nil},
			wantRequests: []string{listNode1},
		},
		{
			name: "node power state error: NOSTATE", host: "compute-1", vm: "active", power: "running", nodePower: ptr("error"),
			want:         instState{"active", "pending", "", nil},
			wantRequests: []string{listNode1}, wantNodePower: "error",
		},
		{
			name: "list fails: error kept, instance unchanged", host: "compute-1", vm: "active", power: "running", nodePower: ptr("power off"),
			ironic:       fakeOptions{listStatus: http.StatusInternalServerError},
			want:         instState{"active", "running", "", nil},
			wantRequests: []string{listNode1}, wantErrors: 1, wantNodePower: "power off",
		},
		{
			// reverts_task_state: the power state read stays, the task goes.
			name: "power change refused: task reverted, retried next cycle", host: "compute-1", vm: "stopped", power: "shutdown", nodePower: ptr("power on"),
			ironic:        fakeOptions{putStatus: http.StatusConflict},
			want:          instState{"stopped", "running", "", []string{"stop"}},
			wantForced:    []ForcedAction{{InstanceUUID: uuid1, NodeUUID: node1, Action: "force_stop", Target: "power off", Err: "409 Conflict"}},
			wantRequests:  []string{listNode1, putPower1},
			wantNodePower: "power on",
		},
		{
			name: "power change fails: node stays on", host: "compute-1", vm: "stopped", power: "shutdown", nodePower: ptr("power on"),
			ironic:        fakeOptions{failChange: true},
			want:          instState{"stopped", "running", "", []string{"stop"}},
			wantForced:    []ForcedAction{{InstanceUUID: uuid1, NodeUUID: node1, Action: "force_stop", Target: "power off", Err: "Failed to change power state"}},
			wantRequests:  []string{listNode1, putPower1, states1, states1},
			wantNodePower: "power on",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := New(Options{})
			s.AddInstance(uuid1, tt.host, tt.vm, tt.power)
			s.SetTaskState(uuid1, tt.task)
			f := &fakeIronic{fakeOptions: tt.ironic}
			n := &fakeNode{uuid: node1, instance: uuid1, power: tt.nodePower}
			if tt.noNode {
				n.instance = ""
			}
			f.nodes = []*fakeNode{n}
			c := s.StartComputeSync(f.start(t), 0)
			defer c.Stop()

			c.SyncNow()

			if got := stateOf(t, s, uuid1); !equalState(got, tt.want) {
				t.Errorf("instance = %+v, want %+v", got, tt.want)
			}
			checkForced(t, c.Forced(), tt.wantForced)
			if got := f.Requests(); !slices.Equal(got, tt.wantRequests) {
				t.Errorf("requests =\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(tt.wantRequests, "\n"))
			}
			for i, v := range f.versions {
				if v != "1.46" {
					t.Errorf("request %d asked for API version %q, want 1.46", i, v)
				}
			}
			for _, b := range f.bodies {
				if b != `{"Target":"power off"}` {
					t.Errorf("PUT body %s, want target power off", b)
				}
			}
			if errs := c.Errors(); len(errs) != tt.wantErrors {
				t.Errorf("errors = %v, want %d", errs, tt.wantErrors)
			}
			if got := deref(n.power); got != tt.wantNodePower {
				t.Errorf("node power = %q, want %q", got, tt.wantNodePower)
			}
		})
	}
}

func equalState(a, b instState) bool {
	return a.vm == b.vm && a.power == b.power && a.task == b.task && slices.Equal(a.actions, b.actions)
}

func checkForced(t *testing.T, got, want []ForcedAction) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("forced = %+v, want %+v", got, want)
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.InstanceUUID != w.InstanceUUID || g.NodeUUID != w.NodeUUID || g.Action != w.Action || g.Target != w.Target ||
			(w.Err == "") != (g.Err == "") || !strings.Contains(g.Err, w.Err) || g.At.IsZero() {
			t.Errorf("forced[%d] = %+v, want %+v", i, g, w)
		}
	}
}

// A power-update event that reaches Nova while its stop is under way is a
// no-op (task_state is powering-off), and the stop still ends the
// instance stopped: the event cannot undo what the sync decided.
func TestComputeSyncEventDuringStopIsNoOp(t *testing.T) {
	s := New(Options{})
	s.AddInstance(uuid1, "compute-1", "stopped", "shutdown")
	f := &fakeIronic{nodes: []*fakeNode{{uuid: node1, instance: uuid1, power: ptr("power on")}}}
	var during instState
	f.onPut = func() {
		s.processEvents([]object{{"name": "power-update", "server_uuid": uuid1, "tag": "POWER_ON"}})
		during = stateOf(t, s, uuid1)
	}
	c := s.StartComputeSync(f.start(t), 0)
	defer c.Stop()

	c.SyncNow()

	if want := (instState{"stopped", "running", "powering-off", []string{"stop", "start"}}); !equalState(during, want) {
		t.Errorf("during the stop: %+v, want %+v", during, want)
	}
	if got, want := stateOf(t, s, uuid1), (instState{"stopped", "shutdown", "", []string{"stop", "start"}}); !equalState(got, want) {
		t.Errorf("after: %+v, want %+v", got, want)
	}
	checkForced(t, c.Forced(), []ForcedAction{{InstanceUUID: uuid1, NodeUUID: node1, Action: "force_stop", Target: "power off"}})
}

// The periodic cycles act on every hosted instance, in UUID order, and
// the next cycle finds nothing left to do.
func TestComputeSyncPeriodic(t *testing.T) {
	s := New(Options{})
	s.AddInstance(uuid2, "compute-1", "stopped", "shutdown")
	s.AddInstance(uuid1, "compute-1", "active", "running")
	const node2 = "a1b2c3d4-0000-4000-8000-000000000002"
	f := &fakeIronic{nodes: []*fakeNode{
		{uuid: node1, instance: uuid1, power: ptr("power off")},
		{uuid: node2, instance: uuid2, power: ptr("power on")},
	}}
	c := s.StartComputeSync(f.start(t), 10*time.Millisecond)
	defer c.Stop()

	deadline := time.Now().Add(10 * time.Second)
	for len(c.Forced()) < 2 || countPrefix(f.Requests(), "GET /v1/nodes?") < 6 { // three cycles
		if time.Now().After(deadline) {
			t.Fatalf("forced %+v, requests %q", c.Forced(), f.Requests())
		}
		time.Sleep(5 * time.Millisecond)
	}
	c.Stop()
	checkForced(t, c.Forced(), []ForcedAction{
		{InstanceUUID: uuid1, NodeUUID: node1, Action: "stop", Target: "power off"},
		{InstanceUUID: uuid2, NodeUUID: node2, Action: "force_stop", Target: "power off"},
	})
	for _, u := range []string{uuid1, uuid2} {
		if got, want := stateOf(t, s, u), (instState{"stopped", "shutdown", "", []string{"stop"}}); !equalState(got, want) {
			t.Errorf("%s: %+v, want %+v", u, got, want)
		}
	}

	// Nothing runs after Stop, SyncNow included.
	n := len(f.Requests())
	c.SyncNow()
	time.Sleep(50 * time.Millisecond)
	if got := len(f.Requests()); got != n {
		t.Errorf("%d requests after Stop", got-n)
	}
}

func countPrefix(list []string, prefix string) int {
	n := 0
	for _, s := range list {
		if strings.HasPrefix(s, prefix) {
			n++
		}
	}
	return n
}

// Stop aborts a stop waiting for Ironic and reverts the task state, as a
// nova-compute that goes down mid-operation leaves nothing half-saved here.
func TestComputeSyncStopAbortsWait(t *testing.T) {
	s := New(Options{})
	s.AddInstance(uuid1, "compute-1", "stopped", "shutdown")
	f := &fakeIronic{fakeOptions: fakeOptions{neverFinish: true}, nodes: []*fakeNode{{uuid: node1, instance: uuid1, power: ptr("power on")}}}
	c := s.StartComputeSync(f.start(t), 10*time.Millisecond)
	deadline := time.Now().Add(10 * time.Second)
	for countPrefix(f.Requests(), "GET /v1/nodes/") < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("the stop never started waiting: %q", f.Requests())
		}
		time.Sleep(5 * time.Millisecond)
	}

	start := time.Now()
	c.Stop()
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Stop took %v", d)
	}
	checkForced(t, c.Forced(), []ForcedAction{{InstanceUUID: uuid1, NodeUUID: node1, Action: "force_stop", Target: "power off", Err: "context canceled"}})
	if got, want := stateOf(t, s, uuid1), (instState{"stopped", "running", "", []string{"stop"}}); !equalState(got, want) {
		t.Errorf("instance = %+v, want %+v", got, want)
	}
}
