package chaos_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/metalpower/metalpower/internal/config"
	"github.com/metalpower/metalpower/internal/node"
	"github.com/metalpower/metalpower/internal/operator"
	"github.com/metalpower/metalpower/internal/store"
	"github.com/metalpower/metalpower/internal/testbed"
	"github.com/metalpower/metalpower/internal/testbed/chaos"
	"github.com/metalpower/metalpower/internal/testbed/itest"
)

// size is how much load and how many failures a run gets.
type size struct {
	Changes, Nodes, IPMI int
	// Window is how long failures are injected; changes are requested
	// over its first 70%.
	Window                                                           time.Duration
	WorkerKills, ServerRestarts, PGRestarts, BMCWindows, NovaOutages int
	// Drifts switch a few nodes' power behind metalpower's back;
	// Terminations terminate running power changes by hand.
	Drifts, Terminations int
}

// sizeFromEnv is the short run of every `go test` (60 changes), or the
// size METALPOWER_CHAOS_CHANGES asks for (`make chaos`: 500), with
// failures scaled to it.
func sizeFromEnv(t *testing.T) size {
	changes := 60
	if v := os.Getenv("METALPOWER_CHAOS_CHANGES"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 10 {
			t.Fatalf("METALPOWER_CHAOS_CHANGES=%q: want a number of changes, at least 10", v)
		}
		changes = n
	}
	k := max(1, changes/150)
	s := size{Changes: changes, Nodes: changes, IPMI: max(2, min(changes/15, 16)),
		Window:      max(90*time.Second, time.Duration(changes)*500*time.Millisecond),
		WorkerKills: 2 * k, ServerRestarts: k, PGRestarts: k, BMCWindows: k, NovaOutages: k, Drifts: 2 * k, Terminations: k}
	if v := os.Getenv("METALPOWER_CHAOS_WINDOW"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 90*time.Second {
			t.Fatalf("METALPOWER_CHAOS_WINDOW=%q: want a duration of at least 90s", v)
		}
		s.Window = d
	}
	return s
}

const taskQueue = "chaos"

// TestChaos runs power changes on a simulated fleet, with the periodic
// sync every 5 s, while the worker process is SIGKILLed and restarted, the
// Temporal dev server (state in a file) and a private PostgreSQL (the node
// store) go down and come back, BMCs fail and recover, Nova goes down,
// servers are switched by hand and an operator terminates a running
// change. Then, with every fault repaired, it checks that nothing was lost: every change
// ended (completed, or failed with its error on the node), every node's
// record matches its hardware with no stale target_power_state and out of
// maintenance, Nova holds every instance's final state, and no workflow is
// left open.
func TestChaos(t *testing.T) {
	sz := sizeFromEnv(t)
	began := time.Now()
	t.Logf("chaos: %d changes over %d nodes (%d IPMI), window %v, %d worker kills, %d server restarts, %d postgres restarts, %d BMC fault windows, %d Nova outages, %d hardware drifts, %d terminations",
		sz.Changes, sz.Nodes, sz.IPMI, sz.Window, sz.WorkerKills, sz.ServerRestarts, sz.PGRestarts, sz.BMCWindows, sz.NovaOutages, sz.Drifts, sz.Terminations)
	ctx := context.Background()

	// Worker logs and the dev server's database, for a post-mortem: kept
	// when the test fails, or always in METALPOWER_CHAOS_LOGS when set.
	logDir, keep := os.Getenv("METALPOWER_CHAOS_LOGS"), true
	var err error
	if logDir == "" {
		keep = false
		logDir, err = os.MkdirTemp("", "metalpower-chaos-")
	} else if err = os.MkdirAll(logDir, 0o755); err == nil {
		// A directory of its own in it: never an old run's database.
		logDir, err = os.MkdirTemp(logDir, "run-")
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() || keep {
			t.Logf("worker logs and the Temporal database (temporal.db) kept in %s", logDir)
			return
		}
		os.RemoveAll(logDir)
	})
	pg, err := chaos.StartPostgres()
	if err != nil {
		t.Fatalf("the chaos test runs a private PostgreSQL cluster: %v", err)
	}
	t.Cleanup(pg.Close)
	srv, err := itest.StartServer(itest.ServerOptions{DBFile: filepath.Join(logDir, "temporal.db")})
	if err != nil {
		t.Fatalf("the chaos test needs the Temporal dev server: %v", err)
	}
	t.Cleanup(srv.Stop)
	bin := itest.BuildCommand(t, "worker")
	fl := newFleet(t, sz.Nodes, sz.IPMI, 2*time.Second)
	st, err := store.Open(ctx, pg.URL())
	if err != nil {
		t.Fatalf("open the node store on the private PostgreSQL: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	if err := fl.enroll(ctx, st); err != nil {
		t.Fatal(err)
	}
	c := srv.Client(t)

	cfg := config.Default()
	cfg.Temporal.Address, cfg.Temporal.TaskQueue, cfg.Database.URL = srv.Address, taskQueue, pg.URL()
	fl.Configure(&cfg)
	env := testbed.ChildEnv(append(testbed.Env(cfg),
		// A pass every 5 s, recovery every 10 s: many passes meet the
		// failures.
		"METALPOWER_CONDUCTOR_SYNC_POWER_STATE_INTERVAL=5",
		"METALPOWER_CONDUCTOR_POWER_FAILURE_RECOVERY_INTERVAL=10",
		"METALPOWER_CONDUCTOR_POWER_STATE_CHANGE_TIMEOUT=30")...)
	worker, err := chaos.StartSupervisor(bin, env, logDir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(worker.Stop)
	waitFor(t, 90*time.Second, "the worker to create the power-sync schedule", func() error {
		_, err := operator.GetSyncStatus(ctx, c)
		return err
	})
	setup := time.Since(began)

	// The chaos window: changes requested at a steady pace, failures
	// injected on their plan, the maintenance monitor watching.
	start := time.Now()
	d := &driver{c: c, st: st, taskQueue: taskQueue, deadline: start.Add(sz.Window + 90*time.Second)}
	followUntil := start.Add(sz.Window + 5*time.Minute)
	inj := &injector{srv: srv, pg: pg, worker: worker, fleet: fl, broken: chooseBroken(fl, sz.BMCWindows), drifted: chooseDrifted(fl, sz.Drifts), counts: map[string]int{}}
	changes := make([]*change, sz.Changes)
	var changesMu sync.Mutex
	interval := sz.Window * 7 / 10 / time.Duration(sz.Changes)
	inj.terminate = func() (string, error) {
		// A change in flight, as an operator who thinks it stuck would
		// (waiting up to 30 s for one).
		for i := 0; i < 60; i++ {
			changesMu.Lock()
			var running []*change
			for _, ch := range changes {
				if ch != nil && ch.running() {
					running = append(running, ch)
				}
			}
			changesMu.Unlock()
			if len(running) > 0 {
				ch := running[len(running)/2]
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				return ch.Node.Name, c.TerminateWorkflow(ctx, ch.WorkflowID, ch.RunID, "chaos: an operator thought it stuck")
			}
			time.Sleep(500 * time.Millisecond)
		}
		return "", fmt.Errorf("no power change was running to terminate")
	}
	inj.upcoming = func(k int) []upcomingChange {
		var out []upcomingChange
		for i := int(time.Since(start)/interval) + 1; i < len(changes) && len(out) < k; i++ {
			fn := fl.Nodes[i%len(fl.Nodes)]
			if target := targetFor(i, fn); (target == node.PowerOff) == fn.InitialOn && target != node.Reboot {
				out = append(out, upcomingChange{node: fn, target: target})
			}
		}
		return out
	}
	mon := startMonitor(st)
	injDone := make(chan struct{})
	go func() { inj.run(start, plan(sz)); close(injDone) }()
	var wg sync.WaitGroup
	for i := range changes {
		time.Sleep(time.Until(start.Add(time.Duration(i) * interval)))
		fn := fl.Nodes[i%len(fl.Nodes)]
		ch := &change{Index: i, Node: fn, Target: targetFor(i, fn)}
		changesMu.Lock()
		changes[i] = ch
		changesMu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			d.request(ch)
			if ch.Accepted {
				d.follow(ch, followUntil)
			}
		}()
	}
	<-injDone
	time.Sleep(time.Until(start.Add(sz.Window)))
	chaosDone := time.Since(start)

	// Quiet: every fault repaired; every change must now end.
	fl.repairAll()
	wg.Wait()
	q := &quiet{t: t, c: c, st: st, fleet: fl}
	q.recoverAll()
	q.settle()
	mon.stop()
	passes := q.count("WorkflowType = 'PowerSync' AND ExecutionStatus = 'Completed'")
	recoveries := q.count("WorkflowType = 'PowerFailureRecovery' AND ExecutionStatus = 'Completed'")
	q.pauseSchedules()
	q.drain("the schedules' last runs and every notifier")
	final := q.finalPass()
	q.drain("what the final pass started")

	r := check(q, changes, mon.entered())
	starts, kills, _ := worker.Stats()
	inj.mu.Lock()
	counts, injErrs, injLog := inj.counts, inj.errs, inj.log
	inj.mu.Unlock()
	fmt.Printf("\nchaos: timeline\n  %s\n", strings.Join(injLog, "\n  "))
	fmt.Printf("chaos: start refusals (retried): %v\n", r.startErrors)
	fmt.Printf("chaos: sync passes completed during the run: %d, recovery passes: %d; final pass: %+v\n", passes, recoveries, final)
	fmt.Printf("chaos: setup %v, chaos window %v, quiet phase and checks %v\n",
		setup.Round(time.Second), chaosDone.Round(time.Second), (time.Since(start) - chaosDone).Round(time.Second))
	fmt.Printf("chaos: changes=%d requested=%d completed=%d skipped=%d skipped_corrected=%d failed_with_last_error=%d worker_kills=%d worker_starts=%d "+
		"server_restarts=%d postgres_restarts=%d bmc_fault_windows=%d nova_outages=%d maintenance_entered=%d recovered=%d "+
		"hardware_drifts=%d terminated=%d sync_passes=%d open_workflows=%d violations=%d lost=%d\n",
		len(changes), r.requested, r.completed, r.skipped, r.skipCorrected, r.failedRecorded, kills, starts,
		counts[restartServer], counts[restartPG], counts[bmcFaultStart], counts[novaOutage], r.maintenance, r.recovered,
		counts[hardwareDrift], counts[terminate], passes, r.open, len(r.violations), r.lost)

	for _, e := range injErrs {
		t.Errorf("injecting a failure failed: %s", e)
	}
	if passes < 2 {
		t.Errorf("only %d sync passes completed during the chaos: the periodic sync did not run under load", passes)
	}
	for _, v := range r.violations {
		t.Error(v)
	}
	if r.lost != 0 {
		t.Errorf("lost=%d: changes that neither completed nor failed with their error recorded on the node", r.lost)
	}
	if t.Failed() {
		t.Logf("last worker log lines:\n%s", worker.Logs(30))
	}
}

// waitFor polls cond until it returns nil or the timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s: %v", timeout, what, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// monitor records every node seen in maintenance for a power failure.
type monitor struct {
	mu   sync.Mutex
	seen map[string]string // uuid -> name
	done chan struct{}
	wg   sync.WaitGroup
}

func startMonitor(st store.Store) *monitor {
	m := &monitor{seen: map[string]string{}, done: make(chan struct{})}
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		for {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			nodes, err := st.List(ctx, store.Query{Filter: store.Filter{Maintenance: store.Bool(true), Fault: node.FaultPowerFailure}, Limit: store.MaxLimit})
			cancel()
			if err == nil {
				m.mu.Lock()
				for _, n := range nodes {
					m.seen[n.UUID] = n.Name
				}
				m.mu.Unlock()
			}
			select {
			case <-m.done:
				return
			case <-time.After(time.Second):
			}
		}
	}()
	return m
}

func (m *monitor) stop() { close(m.done); m.wg.Wait() }

func (m *monitor) entered() map[string]string {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := map[string]string{}
	for k, v := range m.seen {
		out[k] = v
	}
	return out
}
