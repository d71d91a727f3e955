package itest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/rs/zerolog"
	"go.temporal.io/sdk/client"

	"github.com/metalpower/metalpower/internal/bmc/ipmi"
	"github.com/metalpower/metalpower/internal/bmc/redfish"
	"github.com/metalpower/metalpower/internal/conductor"
	"github.com/metalpower/metalpower/internal/config"
	"github.com/metalpower/metalpower/internal/dispatch"
	"github.com/metalpower/metalpower/internal/node"
	"github.com/metalpower/metalpower/internal/operator"
	"github.com/metalpower/metalpower/internal/store"
	"github.com/metalpower/metalpower/internal/testbed"
	"github.com/metalpower/metalpower/internal/testbed/devserver"
	"github.com/metalpower/metalpower/workflows"
)

// Stack is one test's metalpower: a node store, a simulated fleet with
// Nova, and a worker on its own task queue of a shared dev server.
type Stack struct {
	*testbed.Fleet
	Server *Server
	Client client.Client
	Store  store.Store
	DBURL  string
	Config config.Config
	Worker *conductor.Worker
	Log    *LogBuffer

	stops map[*conductor.Worker]func()
}

// StackOptions shapes a stack; zero values give 8 Redfish systems, 4 IPMI
// BMCs and Nova notifications on.
type StackOptions struct {
	RedfishSystems  int
	IPMIBMCs        int
	TransitionDelay time.Duration
	// Configure adjusts the configuration before the worker starts.
	Configure func(*config.Config)
	// NoWorker leaves starting a worker to the test.
	NoWorker bool
	// Database is the node store's URL (default: a SQLite file of the
	// test's own).
	Database string
}

// NewStack builds a stack; everything stops when the test ends.
func NewStack(t testing.TB, srv *Server, opts StackOptions) *Stack {
	t.Helper()
	if opts.RedfishSystems == 0 {
		opts.RedfishSystems = 8
	}
	if opts.IPMIBMCs == 0 {
		opts.IPMIBMCs = 4
	}
	s := &Stack{Server: srv, Client: srv.Client(t), Log: &LogBuffer{}}

	s.DBURL = opts.Database
	if s.DBURL == "" {
		s.DBURL = "sqlite://" + filepath.Join(t.TempDir(), "nodes.db")
	}
	st, err := store.Open(context.Background(), s.DBURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	s.Store = st

	s.Fleet, err = testbed.StartFleet(testbed.FleetOptions{Redfish: opts.RedfishSystems, IPMI: opts.IPMIBMCs, TransitionDelay: opts.TransitionDelay})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Fleet.Close)

	cfg := config.Default()
	cfg.Temporal.Address = srv.Address
	cfg.Temporal.TaskQueue = "test-" + uuid.NewString()[:8]
	cfg.Database.URL = s.DBURL
	s.Fleet.Configure(&cfg)
	if opts.Configure != nil {
		opts.Configure(&cfg)
	}
	s.Config = cfg
	if !opts.NoWorker {
		s.StartWorker(t)
	}
	return s
}

// StartWorker starts an in-process worker on the stack's task queue.
func (s *Stack) StartWorker(t testing.TB) *conductor.Worker {
	t.Helper()
	s.Worker = s.StartGroupWorker(t, s.Config.Conductor.ConductorGroup)
	return s.Worker
}

// StartGroupWorker starts an in-process worker of conductor group group,
// with a BMC pool of its own.
func (s *Stack) StartGroupWorker(t testing.TB, group string) *conductor.Worker {
	t.Helper()
	log := zerolog.New(s.Log).Level(zerolog.DebugLevel).With().Str("conductor_group", group).Logger()
	cfg := s.Config
	cfg.Conductor.ConductorGroup = group
	// Schedules are namespace-wide: the test that checks them makes its own.
	w, err := testbed.StartWorker(context.Background(), cfg, log, conductor.WorkerOptions{Client: s.Client, Store: s.Store, NoSchedules: true})
	if err != nil {
		t.Fatal(err)
	}
	stop := sync.OnceFunc(func() { w.Stop(); w.Pool.Close() })
	t.Cleanup(stop)
	if s.stops == nil {
		s.stops = map[*conductor.Worker]func(){}
	}
	s.stops[w] = stop
	s.WaitForWorker(t, group)
	return w
}

// RestartWorker stops the stack's worker, applies change to the stack's
// configuration and starts a worker with it: how an operator changes an
// option such as force_power_state_during_sync.
func (s *Stack) RestartWorker(t testing.TB, change func(*config.Config)) *conductor.Worker {
	t.Helper()
	if stop := s.stops[s.Worker]; stop != nil {
		stop()
	}
	change(&s.Config)
	return s.StartWorker(t)
}

// WaitForWorker waits until a worker of conductor group group polls the
// stack's queue for it: until then, changes of the group's nodes are
// refused (dispatch.NoWorkerError).
func (s *Stack) WaitForWorker(t testing.TB, group string) {
	t.Helper()
	queue := dispatch.Queue(s.Config.Temporal.TaskQueue, group)
	WaitFor(t, 30*time.Second, "a worker to poll "+queue, func() bool {
		live, err := dispatch.Live(context.Background(), s.Client, queue)
		return err == nil && live
	})
}

// Env is the stack's configuration as METALPOWER_* variables, for a worker
// run as a separate process.
func (s *Stack) Env() []string {
	// Without the sync schedules: a scheduled pass (every 2 minutes, on
	// the minute) would race the passes a test runs and the nodes it
	// watches.
	return append(testbed.Env(s.Config),
		"METALPOWER_CONDUCTOR_SYNC_POWER_STATE_INTERVAL=0", "METALPOWER_CONDUCTOR_POWER_FAILURE_RECOVERY_INTERVAL=0")
}

// BuildCommand compiles one of the repository's commands (worker,
// starter) into a temporary directory and returns its path.
func BuildCommand(t testing.TB, name string) string {
	t.Helper()
	root, err := devserver.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), name)
	cmd := exec.Command("go", "build", "-o", out, "./"+name)
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./%s: %v\n%s", name, err, b)
	}
	return out
}

// AddRedfishNode enrolls a node on Redfish system id, manageable, with
// the instance (added to Nova as active and running) when instance != "".
func (s *Stack) AddRedfishNode(t testing.TB, name, id, instance string) *node.Node {
	t.Helper()
	return s.AddNode(t, node.New("", name, redfish.Name, s.RedfishInfo(id)), instance)
}

// AddIPMINode enrolls a node on IPMI BMC i of the fleet.
func (s *Stack) AddIPMINode(t testing.TB, name string, i int, instance string) *node.Node {
	t.Helper()
	return s.AddNode(t, node.New("", name, ipmi.Name, s.IPMIInfo(i)), instance)
}

// AddNode enrolls n, manageable and recorded as powered on, with the
// instance (added to Nova as active and running) when instance != "".
func (s *Stack) AddNode(t testing.TB, n *node.Node, instance string) *node.Node {
	t.Helper()
	n.ProvisionState, n.PowerState = node.Manageable, node.PowerOn
	if instance != "" {
		n.InstanceUUID, n.ProvisionState = instance, node.Active
		s.Nova.AddInstance(instance, "compute-1", "active", "running")
	}
	if err := s.Store.Create(context.Background(), n); err != nil {
		t.Fatal(err)
	}
	return n
}

// Node reads a node back.
func (s *Stack) Node(t testing.TB, ident string) *node.Node {
	t.Helper()
	n, err := s.Store.Get(context.Background(), ident)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// Modify changes a node in the store.
func (s *Stack) Modify(t testing.TB, ident string, fn func(*node.Node)) *node.Node {
	t.Helper()
	n, err := store.Modify(context.Background(), s.Store, ident, func(n *node.Node) error { fn(n); return nil })
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// Start starts a power change the way the CLI and API do.
func (s *Stack) Start(ctx context.Context, t testing.TB, ident, target string, timeout int) (client.WorkflowRun, error) {
	t.Helper()
	return operator.StartPowerChange(ctx, s.Client, s.Store, s.Config.Temporal.TaskQueue, s.Node(t, ident), operator.PowerRequest{Target: target, Timeout: timeout, Via: "test"})
}

// Change runs a power change to its end.
func (s *Stack) Change(t testing.TB, ident, target string, timeout int) (workflows.PowerChangeResult, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	run, err := s.Start(ctx, t, ident, target, timeout)
	if err != nil {
		return workflows.PowerChangeResult{}, err
	}
	var res workflows.PowerChangeResult
	err = run.Get(ctx, &res)
	return res, err
}

// WaitFor polls cond until it holds or the timeout passes.
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// NovaTags lists the power-update tags Nova accepted for an instance.
func (s *Stack) NovaTags(instance string) []string {
	var tags []string
	for _, e := range s.Nova.Events() {
		if e.ServerUUID == instance && e.Name == "power-update" {
			tags = append(tags, e.Tag)
		}
	}
	return tags
}

// MustMain runs a package's tests with one shared dev server, then the
// after checks (run only when the tests passed).
func MustMain(m interface{ Run() int }, srv **Server, after ...func() error) int {
	var err error
	*srv, err = StartTemporal("")
	if err != nil {
		fmt.Fprintln(os.Stderr, "integration tests need the Temporal dev server:", err)
		return 1
	}
	defer (*srv).Stop()
	code := m.Run()
	if code != 0 {
		return code
	}
	for _, check := range after {
		if err := check(); err != nil {
			fmt.Fprintln(os.Stderr, "FAIL:", err)
			return 1
		}
	}
	return 0
}

// LogBuffer collects a worker's log lines for assertions.
type LogBuffer = devserver.SyncBuffer

// RunSyncPass runs one PowerSync pass on taskQueue to its end (at most
// three minutes).
func RunSyncPass(ctx context.Context, c client.Client, taskQueue string) (workflows.PowerSyncResult, error) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	var res workflows.PowerSyncResult
	run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: "test-sync-" + uuid.NewString(), TaskQueue: taskQueue},
		workflows.PowerSyncWorkflow, workflows.PowerSyncInput{})
	if err == nil {
		err = run.Get(ctx, &res)
	}
	return res, err
}

// SyncPass runs one sync pass on the stack; a failed pass fails the test.
func (s *Stack) SyncPass(t testing.TB) workflows.PowerSyncResult {
	t.Helper()
	res, err := RunSyncPass(context.Background(), s.Client, s.Config.Temporal.TaskQueue)
	if err != nil {
		t.Fatalf("sync pass: %v", err)
	}
	return res
}

// ActivityName is the name the worker registers an activity method under
// (its method name), for reading histories without writing it again.
func ActivityName(method any) string {
	name := runtime.FuncForPC(reflect.ValueOf(method).Pointer()).Name()
	return strings.TrimSuffix(name[strings.LastIndex(name, ".")+1:], "-fm")
}

// History returns a workflow's whole history (its latest run) as text.
func History(t testing.TB, s *Stack, workflowID string) string {
	t.Helper()
	var b strings.Builder
	it := s.Client.GetWorkflowHistory(context.Background(), workflowID, "", false, 0)
	for it.HasNext() {
		e, err := it.Next()
		if err != nil {
			t.Fatal(err)
		}
		b.WriteString(e.String())
		b.WriteByte('\n')
	}
	return b.String()
}
