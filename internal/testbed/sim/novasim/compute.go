package novasim

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"
)

// This file simulates nova-compute's periodic _sync_power_states with the
// Ironic virt driver (nova/virt/ironic/driver.py), the task that makes
// Ironic's power-update events necessary: every sync_power_state_interval
// nova-compute reads each instance's node from Ironic and, where its own
// record disagrees, acts on the node through Ironic's API.
//
// What nova does, per instance on this compute host
// (nova/compute/manager.py _query_driver_power_state_and_sync and
// _sync_instance_power_state):
//
//  1. An instance with a task in progress is skipped.
//  2. The node is found by instance UUID (GET /v1/nodes?instance_uuid=),
//     and its power state mapped: "power on" → running, "power off" →
//     shutdown, anything else (None, "error") or no node → NOSTATE, which
//     this Sim spells "pending", as nova's power_state.STATE_MAP does.
//  3. The instance's power_state is always overwritten with that state.
//  4. vm_state "active" but shutdown: "Instance shutdown by itself. Calling
//     the stop API." The stop API powers the node off (a no-op in Ironic,
//     which skips a change to the state the node is in) and records the
//     instance stopped: Nova accepts what happened behind its back.
//  5. vm_state "stopped" but running: "Instance is not stopped. Calling
//     the stop API." (force_stop): the node is powered off again. This is
//     where Nova's stale record wins over a power on made through Ironic,
//     unless Ironic told Nova with a POWER_ON event.
//  6. Any other combination (including NOSTATE) changes nothing more.
//
// Nova never powers a node on from this task. (The Ironic docs' "a node
// which was put down using the baremetal service's API would be powered
// up" is not what the code does: an active instance found off is stopped.)
//
// The stop itself follows compute_api.stop/force_stop and the compute
// manager's stop_instance with the Ironic driver's power_off: task_state
// "powering-off" and an instance action "stop" are recorded first, so
// power-update events arriving meanwhile are no-ops as in Nova; then PUT
// .../states/power {"target": "power off"}; then the node is polled until
// the change is over, and the instance saved stopped, with the power state
// read last, and no task. A failure reverts the task state only
// (reverts_task_state) and the next cycle tries again. One simplification:
// for a clean shutdown nova's driver first asks for "soft power off" with
// [DEFAULT]shutdown_timeout and falls back to "power off"; the Sim sends
// the hard "power off" straight away, which ends in the same state.

// ironicAPIVersion is the microversion the sync asks Ironic for. Nova's
// Ironic driver pins a fixed one well past 1.27 (1.38 in some releases,
// higher in later ones); any of them serves the fields and states used.
const ironicAPIVersion = "1.46"

// nodeFields is what the sync asks GET /v1/nodes for: the subset of nova's
// _NODE_FIELDS that matters to the power sync. Nova itself also asks for
// target_provision_state, properties, traits and resource_class, which
// metalpower's API refuses (400) for now.
const nodeFields = "uuid,instance_uuid,power_state,target_power_state,provision_state,maintenance,last_error"

// How the stop waits for Ironic to finish: nova's _wait_for_power_state
// polls every [ironic]api_retry_interval (2 s) up to api_max_retries (60)
// times; the Sim polls faster so tests are quick, for as long.
const (
	powerPollInterval = 50 * time.Millisecond
	powerWaitTimeout  = 2 * time.Minute
)

// Nova power states (power_state.STATE_MAP) the sync writes.
const (
	powerRunning  = "running"
	powerShutdown = "shutdown"
	powerNoState  = "pending"
)

// ForcedAction is one stop the sync made Nova call because an instance's
// record and its node disagreed.
type ForcedAction struct {
	InstanceUUID, NodeUUID string
	// Action is the Nova API called: "stop" (an active instance whose node
	// was off) or "force_stop" (a stopped instance whose node was on).
	Action string
	// Target is the power target sent to Ironic: always "power off".
	Target string
	// Err is why the action failed, "" when the node reached the target.
	Err string
	At  time.Time
}

// ComputeSync is a running simulation of nova-compute's power sync against
// an Ironic API. It is safe for concurrent use.
type ComputeSync struct {
	sim    *Sim
	ironic string // base URL without a trailing slash
	client *http.Client

	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}
	once   sync.Once

	cycle sync.Mutex // one cycle at a time, as a periodic task runs

	mu     sync.Mutex
	forced []ForcedAction
	errs   []error
}

// StartComputeSync starts syncing the power state of every instance that
// has a host against the Ironic API at ironicURL (e.g.
// "http://127.0.0.1:6385"): a cycle at once and then every interval, as
// nova's task is run_immediately. An interval of zero or less runs no
// cycle on its own (as nova with sync_power_state_interval -1), for tests
// that call SyncNow. The Ironic API is called without authentication
// (noauth).
func (s *Sim) StartComputeSync(ironicURL string, interval time.Duration) *ComputeSync {
	ctx, cancel := context.WithCancel(context.Background())
	c := &ComputeSync{
		sim:    s,
		ironic: strings.TrimSuffix(ironicURL, "/"),
		client: &http.Client{Timeout: 30 * time.Second},
		ctx:    ctx,
		cancel: cancel,
		done:   make(chan struct{}),
	}
	go c.loop(interval)
	return c
}

func (c *ComputeSync) loop(interval time.Duration) {
	defer close(c.done)
	if interval <= 0 {
		<-c.ctx.Done()
		return
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		c.SyncNow()
		select {
		case <-c.ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Stop ends the periodic cycles, aborting one under way, and returns once
// it has ended. SyncNow does nothing after Stop.
func (c *ComputeSync) Stop() {
	c.once.Do(c.cancel)
	<-c.done
}

// Forced returns every forced action so far, in the order they started.
func (c *ComputeSync) Forced() []ForcedAction {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.forced)
}

// Errors returns the failures to read an instance's node, in order. Nova
// logs these and tries again next cycle.
func (c *ComputeSync) Errors() []error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.errs)
}

// SyncNow runs one cycle at once and returns when it is over, including
// any stop it made and the wait for it. It waits for a periodic cycle
// under way to end first.
func (c *ComputeSync) SyncNow() {
	c.cycle.Lock()
	defer c.cycle.Unlock()
	if c.ctx.Err() != nil {
		return
	}
	// Nova reads its instances on this host once, then syncs each.
	for _, uuid := range c.sim.hostedInstances() {
		c.syncInstance(uuid)
	}
}

// hostedInstances lists, sorted, the instances a compute host owns: those
// with a host. Nova's task reads InstanceList.get_by_host.
func (s *Sim) hostedInstances() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var uuids []string
	for uuid, inst := range s.instances {
		if inst.Host != "" {
			uuids = append(uuids, uuid)
		}
	}
	slices.Sort(uuids)
	return uuids
}

// idle reports whether an instance exists, has a host and has no task.
func (s *Sim) idle(uuid string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	inst, ok := s.instances[uuid]
	return ok && inst.Host != "" && inst.TaskState == ""
}

// syncInstance is _query_driver_power_state_and_sync and
// _sync_instance_power_state for one instance.
func (c *ComputeSync) syncInstance(uuid string) {
	if !c.sim.idle(uuid) {
		return // "the instance has a pending task. Skip."
	}
	nodeUUID, nodePower, err := c.findNode(uuid)
	if err != nil {
		c.recordError(fmt.Errorf("instance %s: %w", uuid, err))
		return
	}
	vmPower := novaPowerState(nodePower)

	// Decide under the Sim's lock, and mark the stop in the same critical
	// section, as nova re-reads the instance and saves the task state with
	// expected_task_state=[None]: an event that arrived since is seen.
	c.sim.mu.Lock()
	inst, ok := c.sim.instances[uuid]
	if !ok || inst.Host == "" || inst.TaskState != "" {
		c.sim.mu.Unlock()
		return
	}
	inst.PowerState = vmPower // "power_state is always updated from hypervisor to db"
	action := ""
	switch {
	case inst.VMState == "active" && vmPower == powerShutdown:
		action = "stop"
	case inst.VMState == "stopped" && vmPower == powerRunning:
		action = "force_stop"
	}
	if action != "" {
		inst.TaskState = "powering-off"
		inst.Actions = append(inst.Actions, "stop")
	}
	c.sim.mu.Unlock()
	if action == "" {
		return
	}

	fa := ForcedAction{InstanceUUID: uuid, NodeUUID: nodeUUID, Action: action, Target: "power off", At: time.Now()}
	final, err := c.powerOff(nodeUUID)

	c.sim.mu.Lock()
	if inst, ok := c.sim.instances[uuid]; ok {
		inst.TaskState = ""
		if err == nil {
			inst.VMState, inst.PowerState = "stopped", novaPowerState(final)
		}
	}
	c.sim.mu.Unlock()
	if err != nil {
		fa.Err = err.Error()
	}
	c.mu.Lock()
	c.forced = append(c.forced, fa)
	c.mu.Unlock()
}

func (c *ComputeSync) recordError(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.errs = append(c.errs, err)
}

// novaPowerState is the Ironic driver's map_power_state.
func novaPowerState(ironic string) string {
	switch ironic {
	case "power on":
		return powerRunning
	case "power off":
		return powerShutdown
	}
	return powerNoState
}

// findNode is the driver's _validate_instance_and_node: the node whose
// instance_uuid is the instance's. No node gives "" and "" (nova's
// InstanceNotFound, read as NOSTATE); more than one is an error.
func (c *ComputeSync) findNode(instance string) (uuid, powerState string, err error) {
	q := url.Values{"instance_uuid": {instance}, "fields": {nodeFields}}
	var list struct {
		Nodes []struct {
			UUID       string  `json:"uuid"`
			PowerState *string `json:"power_state"`
		} `json:"nodes"`
	}
	if err := c.call(http.MethodGet, "/v1/nodes?"+q.Encode(), nil, &list); err != nil {
		return "", "", err
	}
	switch len(list.Nodes) {
	case 0:
		return "", "", nil
	case 1:
		n := list.Nodes[0]
		if n.PowerState == nil {
			return n.UUID, "", nil
		}
		return n.UUID, *n.PowerState, nil
	}
	return "", "", fmt.Errorf("Ironic returned %d nodes for a query that can only return zero or one", len(list.Nodes))
}

// nodeStates is the part of GET /v1/nodes/{node}/states the stop reads.
type nodeStates struct {
	PowerState       *string `json:"power_state"`
	TargetPowerState *string `json:"target_power_state"`
	LastError        *string `json:"last_error"`
}

// powerOff asks Ironic to power the node off and waits for the change to
// end; it returns the node's power state then.
func (c *ComputeSync) powerOff(node string) (string, error) {
	path := "/v1/nodes/" + url.PathEscape(node) + "/states"
	if err := c.call(http.MethodPut, path+"/power", map[string]string{"target": "power off"}, nil); err != nil {
		return "", err
	}
	// Nova waits for target_power_state to be null. Ironic sets the target
	// before it answers 202; an API that sets it a moment later would look
	// finished at once, so the wait also ends only once the node is off or
	// a target was seen and cleared again (a change that ran and failed).
	deadline := time.Now().Add(powerWaitTimeout)
	sawTarget := false
	for {
		var st nodeStates
		if err := c.call(http.MethodGet, path, nil, &st); err != nil {
			return "", err
		}
		power := deref(st.PowerState)
		if st.TargetPowerState != nil {
			sawTarget = true
		} else if power == "power off" {
			return power, nil
		} else if sawTarget {
			return power, fmt.Errorf("node %s ended %q, not %q: %s", node, power, "power off", deref(st.LastError))
		}
		if time.Now().After(deadline) {
			return power, fmt.Errorf("node %s did not reach %q within %v", node, "power off", powerWaitTimeout)
		}
		select {
		case <-c.ctx.Done():
			return power, c.ctx.Err()
		case <-time.After(powerPollInterval):
		}
	}
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// call makes one Ironic API request and decodes a JSON answer into out
// (when not nil). Any status of 400 or more is an error with the body.
func (c *ComputeSync) call(method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(c.ctx, method, c.ironic+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("X-OpenStack-Ironic-API-Version", ironicAPIVersion)
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return err
	}
	if resp.StatusCode >= 400 {
		return fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, strings.TrimSpace(string(b)))
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("%s %s: invalid JSON answer: %w", method, path, err)
	}
	return nil
}
