package activities_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/mock"
	enumspb "go.temporal.io/api/enums/v1"
	workflowpb "go.temporal.io/api/workflow/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/mocks"
	"go.temporal.io/sdk/testsuite"

	"github.com/metalpower/metalpower/activities"
	"github.com/metalpower/metalpower/internal/bmc"
	"github.com/metalpower/metalpower/internal/bmc/ipmi"
	"github.com/metalpower/metalpower/internal/config"
	"github.com/metalpower/metalpower/internal/node"
	"github.com/metalpower/metalpower/internal/store"
)

// Test doubles shared by sync_test.go and recovery_test.go: a real SQLite
// store per test, scripted BMCs, and a mocked Temporal client that stands
// for the Nova notifier workflow.

// reading is one scripted answer of a BMC power read. before, when set,
// runs inside the read: a way to change the node while the BMC is being
// read (what Ironic's tests do in upgrade_lock's side effect).
type reading struct {
	state  string
	err    error
	before func()
}

func on() reading             { return reading{state: node.PowerOn} }
func off() reading            { return reading{state: node.PowerOff} }
func driverError() reading    { return reading{state: node.PowerError} }
func fails(err error) reading { return reading{err: err} }

// errUnreachable is what a driver returns for a BMC that does not answer.
var errUnreachable = &bmc.Error{Kind: bmc.Transient, Op: "get power state", BMC: "10.0.0.9:623", Err: errors.New("SpongeBob: connection refused")}

// errBadDriverInfo is what the BMC pool returns when driver_info cannot
// work: Ironic's InvalidParameterValue from power.validate.
var errBadDriverInfo = &bmc.Error{Kind: bmc.Config, Op: "load driver_info", BMC: "n", Err: node.ErrMissingDriverInfo}

// fakeBMCs scripts each node's power reads (the last reading of a script
// repeats) and records every call.
type fakeBMCs struct {
	mu     sync.Mutex
	script map[string][]reading
	forErr map[string]error
	reads  []string // node UUIDs in the order their power was read
	sets   []string // "uuid target"
	// gate makes each read wait (up to 2 s) until gate reads are in
	// flight together, so the observed maximum is exact, not a race.
	gate             int
	inflight, maxInf int
}

func newBMCs() *fakeBMCs {
	return &fakeBMCs{script: map[string][]reading{}, forErr: map[string]error{}}
}

// on scripts a node's reads, in order.
func (f *fakeBMCs) on(uuid string, rs ...reading) *fakeBMCs {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.script[uuid] = append(f.script[uuid], rs...)
	return f
}

// Paced: the fakes keep no spacing between commands.
func (f *fakeBMCs) Paced(*node.Node) bool { return false }

func (f *fakeBMCs) For(n *node.Node) (bmc.PowerManager, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.forErr[n.UUID]; err != nil {
		return nil, err
	}
	return &fakePM{f: f, uuid: n.UUID}, nil
}

// readsOf counts the reads of one node.
func (f *fakeBMCs) readsOf(uuid string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := 0
	for _, u := range f.reads {
		if u == uuid {
			c++
		}
	}
	return c
}

func (f *fakeBMCs) readLog() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.reads...)
}

type fakePM struct {
	f    *fakeBMCs
	uuid string
}

func (p *fakePM) PowerState(ctx context.Context) (string, error) {
	if err := ctx.Err(); err != nil {
		// As a real driver: no answer past the caller's deadline.
		return "", err
	}
	f := p.f
	f.mu.Lock()
	f.reads = append(f.reads, p.uuid)
	f.inflight++
	f.maxInf = max(f.maxInf, f.inflight)
	r := reading{state: node.PowerOn}
	if s := f.script[p.uuid]; len(s) > 0 {
		r = s[0]
		if len(s) > 1 {
			f.script[p.uuid] = s[1:]
		}
	}
	gate := f.gate
	f.mu.Unlock()
	defer func() { f.mu.Lock(); f.inflight--; f.mu.Unlock() }()
	if gate > 0 {
		deadline := time.Now().Add(2 * time.Second)
		for time.Now().Before(deadline) {
			f.mu.Lock()
			reached := f.maxInf >= gate
			f.mu.Unlock()
			if reached {
				break
			}
			time.Sleep(time.Millisecond)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if r.before != nil {
		r.before()
	}
	return r.state, r.err
}

func (p *fakePM) SetPowerState(ctx context.Context, target string, policy bmc.Policy) error {
	p.f.mu.Lock()
	defer p.f.mu.Unlock()
	if policy.DisablePowerOff {
		target += " (disable_power_off)"
	}
	p.f.sets = append(p.f.sets, p.uuid+" "+target)
	return nil
}

func (p *fakePM) Close() error { return nil }

// fakeNotifier stands for the Nova client: its presence switches
// notifications on. The tests make updates queue on the NovaNotify
// workflow (see newFixture); a direct delivery is recorded all the same.
type fakeNotifier struct {
	mu   sync.Mutex
	sent []string // "instance state"
}

func (n *fakeNotifier) PowerUpdate(_ context.Context, instance, state string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.sent = append(n.sent, instance+" "+state)
	return nil
}

func (n *fakeNotifier) count() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return len(n.sent)
}

func newStore(t *testing.T) store.Store {
	t.Helper()
	s, err := store.Open(context.Background(), "sqlite://"+filepath.Join(t.TempDir(), "n.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// conductor is Ironic's [conductor] defaults, except force=False as in
// Ironic's ManagerDoSyncPowerStateTestCase.
func conductor() config.Conductor {
	return config.Conductor{PowerStateSyncMaxRetries: 3, SyncPowerStateWorkers: 8, PowerStateChangeTimeout: 60, SoftPowerOffTimeout: 600}
}

// fixture is one test's activities with their doubles.
type fixture struct {
	t         *testing.T
	power     *activities.Power
	syncPass  *activities.SyncPass
	nodeSync  *activities.NodeSync
	recovery  *activities.Recovery
	provision *activities.Provision
	store     store.Store
	bmcs      *fakeBMCs
	nova      *mocks.Client
	// direct records deliveries that bypassed the notifier workflow.
	direct *fakeNotifier
}

func newFixture(t *testing.T, c config.Conductor) *fixture {
	nova := &mocks.Client{}
	t.Cleanup(func() { nova.AssertExpectations(t) })
	// The instance's notifier workflow is running, so an update queues
	// behind it: the signal-with-start the tests expect.
	running := &workflowservice.DescribeWorkflowExecutionResponse{
		WorkflowExecutionInfo: &workflowpb.WorkflowExecutionInfo{Status: enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING}}
	nova.On("DescribeWorkflowExecution", mock.Anything, mock.Anything, mock.Anything).Return(running, nil).Maybe()
	f := &fixture{t: t, store: newStore(t), bmcs: newBMCs(), nova: nova, direct: &fakeNotifier{}}
	queues := activities.Queues{TaskQueue: "metalpower", BaseQueue: "metalpower", Temporal: nova}
	notify := &activities.Nova{Notifier: f.direct, Temporal: nova, TaskQueue: "metalpower"}
	ipmi := config.IPMI{CommandRetryTimeout: 60}
	f.power = &activities.Power{Store: f.store, BMCs: f.bmcs, Conductor: c, IPMI: ipmi, Queues: queues, Nova: notify}
	f.syncPass = &activities.SyncPass{Store: f.store, BMCs: f.bmcs, Conductor: c, Temporal: nova, Queues: queues}
	f.nodeSync = &activities.NodeSync{Store: f.store, BMCs: f.bmcs, Conductor: c, IPMI: ipmi, Queues: queues, Nova: notify}
	f.recovery = &activities.Recovery{Store: f.store, BMCs: f.bmcs, Conductor: c, Queues: queues, Nova: notify}
	f.provision = &activities.Provision{Store: f.store, BMCs: f.bmcs, Queues: queues}
	return f
}

// addNode stores an active node, powered on, with an instance, changed by
// edit first.
func (f *fixture) addNode(edit func(n *node.Node)) *node.Node {
	f.t.Helper()
	n := node.New("", "", ipmi.Name, node.DriverInfo{"ipmi_address": "10.0.0.9", "ipmi_password": "s3cret"})
	n.ProvisionState, n.PowerState, n.InstanceUUID = node.Active, node.PowerOn, uuid.NewString()
	if edit != nil {
		edit(n)
	}
	if err := f.store.Create(context.Background(), n); err != nil {
		f.t.Fatal(err)
	}
	return n
}

func (f *fixture) get(uuid string) *node.Node {
	f.t.Helper()
	n, err := f.store.Get(context.Background(), uuid)
	if err != nil {
		f.t.Fatal(err)
	}
	return n
}

// modify changes a stored node as another writer would (an operator).
func (f *fixture) modify(uuid string, edit func(n *node.Node)) {
	if _, err := store.Modify(context.Background(), f.store, uuid, func(n *node.Node) error { edit(n); return nil }); err != nil {
		f.t.Error(err)
	}
}

// expectNova expects exactly one notification of instance's new state.
func (f *fixture) expectNova(instance, state string) {
	f.nova.On("SignalWithStartWorkflow", mock.Anything, activities.NovaNotifyID(instance), activities.PowerUpdateSignal,
		mock.MatchedBy(func(u activities.PowerUpdate) bool { return u.InstanceUUID == instance && u.PowerState == state }),
		mock.Anything, activities.NovaNotifyWorkflow, mock.Anything).Return(nil, nil).Once()
}

// allowNova accepts any notification, for tests that count them.
func (f *fixture) allowNova() {
	f.nova.On("SignalWithStartWorkflow", mock.Anything, mock.Anything, mock.Anything, mock.Anything,
		mock.Anything, mock.Anything, mock.Anything).Return(nil, nil).Maybe()
}

// novaCalls is how many notifications were queued (or sent directly).
func (f *fixture) novaCalls() int {
	c := f.direct.count()
	for _, call := range f.nova.Calls {
		if call.Method == "SignalWithStartWorkflow" {
			c++
		}
	}
	return c
}

func (f *fixture) noNova() {
	f.t.Helper()
	if c := f.novaCalls(); c != 0 {
		var queued []any
		for _, call := range f.nova.Calls {
			if call.Method == "SignalWithStartWorkflow" {
				queued = append(queued, call.Arguments[3])
			}
		}
		f.t.Errorf("Nova notified %d times, want none: direct %v, queued %+v", c, f.direct.sent, queued)
	}
}

func newActivityEnv(f *fixture) *testsuite.TestActivityEnvironment {
	env := (&testsuite.WorkflowTestSuite{}).NewTestActivityEnvironment()
	for _, a := range []any{f.power, f.syncPass, f.nodeSync, f.recovery, f.provision} {
		env.RegisterActivity(a)
	}
	return env
}

// syncNode runs SyncNode as the local activity it is.
func (f *fixture) syncNode(uuid string) (activities.NodeSyncDecision, error) {
	env := newActivityEnv(f)
	var d activities.NodeSyncDecision
	v, err := env.ExecuteLocalActivity(f.nodeSync.SyncNode, uuid)
	if err == nil {
		err = v.Get(&d)
	}
	return d, err
}

func (f *fixture) mustSync(uuid string) activities.NodeSyncDecision {
	f.t.Helper()
	d, err := f.syncNode(uuid)
	if err != nil {
		f.t.Fatalf("SyncNode: %v", err)
	}
	return d
}

// readPage runs one page of a pass.
func (f *fixture) readPage(in activities.SyncPageInput) activities.SyncPage {
	f.t.Helper()
	v, err := newActivityEnv(f).ExecuteActivity(f.syncPass.ReadPowerStates, in)
	if err != nil {
		f.t.Fatalf("ReadPowerStates: %v", err)
	}
	var page activities.SyncPage
	if err := v.Get(&page); err != nil {
		f.t.Fatal(err)
	}
	return page
}

// recoverPass runs one power-failure recovery pass.
func (f *fixture) recoverPass() activities.RecoveryResult {
	f.t.Helper()
	v, err := newActivityEnv(f).ExecuteActivity(f.recovery.RecoverPowerFailures)
	if err != nil {
		f.t.Fatalf("RecoverPowerFailures: %v", err)
	}
	var res activities.RecoveryResult
	if err := v.Get(&res); err != nil {
		f.t.Fatal(err)
	}
	return res
}

// finishChange ends the power change a forcing decision started, as the
// workflow's change() does, with failure "" for success.
func (f *fixture) finishChange(p *activities.PowerPlan, failure string) {
	f.t.Helper()
	if p == nil {
		f.t.Fatal("no plan to finish")
	}
	if _, err := f.power.FinishPowerChange(context.Background(), activities.FinishInput{NodeUUID: p.NodeUUID, Target: p.Target, Final: p.Final, Failure: failure}); err != nil {
		f.t.Fatal(err)
	}
}

// maxRetriesMsg is Ironic's handle_sync_power_state_max_retries_exceeded
// message, None for no state.
func maxRetriesMsg(uuid, actual, expected string) string {
	py := func(s string) string {
		if s == "" {
			return "None"
		}
		return s
	}
	return fmt.Sprintf("During sync_power_state, max retries exceeded for node %s, node state %s does not match expected state '%s'. Updating DB state to '%s' Switching node to maintenance mode.",
		uuid, py(actual), py(expected), py(actual))
}

func force(c config.Conductor) config.Conductor { c.ForcePowerStateDuringSync = true; return c }

func maxRetries(c config.Conductor, m int) config.Conductor { c.PowerStateSyncMaxRetries = m; return c }

// pass runs a whole pass page by page as PowerSync does, running SyncNode
// for every candidate between pages, and returns the UUIDs each page read.
func (f *fixture) pass(limit int) (pages [][]string, last activities.SyncPage) {
	f.t.Helper()
	in := activities.SyncPageInput{Limit: limit}
	for {
		mark := len(f.bmcs.readLog())
		page := f.readPage(in)
		pages = append(pages, f.bmcs.readLog()[mark:])
		for _, c := range page.Candidates {
			if d := f.mustSync(c.UUID); d.Plan != nil {
				f.finishChange(d.Plan, "")
			}
		}
		if page.Done || len(pages) > 100 {
			return pages, page
		}
		in = activities.SyncPageInput{After: page.After, PassStart: page.PassStart, Limit: limit}
	}
}
