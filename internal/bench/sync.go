package bench

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/metalpower/metalpower/internal/bmc/ipmi"
	"github.com/metalpower/metalpower/internal/bmc/redfish"
	"github.com/metalpower/metalpower/internal/testbed/proc"

	"github.com/google/uuid"
	"github.com/rs/zerolog"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"

	"github.com/metalpower/metalpower/activities"
	"github.com/metalpower/metalpower/internal/conductor"
	"github.com/metalpower/metalpower/internal/config"
	"github.com/metalpower/metalpower/internal/node"
	"github.com/metalpower/metalpower/internal/store"
	"github.com/metalpower/metalpower/internal/testbed"
	"github.com/metalpower/metalpower/internal/testbed/sim/openipmi"
	"github.com/metalpower/metalpower/workflows"
)

// SyncOptions sizes the sync benchmark.
type SyncOptions struct {
	Driver     string // redfish or ipmi
	Nodes      int
	BMCLatency time.Duration
	// Drift is the fraction of nodes whose record differs from the
	// hardware.
	Drift float64
	// Starter is the binary that runs the simulator fleet in its own
	// process, so the worker's memory is measured alone.
	Starter string
	// IPMISim runs the IPMI BMCs on Debian's ipmi_sim, IPMISimProcesses
	// processes (default one per 100 BMCs) on their own loopback addresses.
	IPMISim          bool
	IPMISimProcesses int
	// Passes are started Gap apart; then, when Warm > 0, one more pass Warm
	// after the last, on the sessions the last one left.
	Passes int
	Gap    time.Duration
	Warm   time.Duration
	// CPUProfile, when set, receives a CPU profile of the passes (the
	// worker runs in this process).
	CPUProfile string
}

// Sync runs one full power sync pass over a simulated fleet and prints its
// figures to w.
func Sync(ctx context.Context, cfg config.Config, opts SyncOptions, w io.Writer) error {
	// This process is the pass's worker: tuned as the worker command is.
	conductor.TuneGC()
	if opts.Driver != redfish.Name && opts.Driver != ipmi.Name {
		return fmt.Errorf("driver %q: use redfish or ipmi", opts.Driver)
	}
	if opts.Nodes < 1 || opts.Drift < 0 || opts.Drift > 1 {
		return fmt.Errorf("want at least one node and a drift between 0 and 1")
	}
	if opts.Passes < 1 || (opts.Passes > 1 && opts.Drift > 0) {
		return fmt.Errorf("want at least one pass, and several only without drift (a pass corrects it)")
	}
	dir, err := os.MkdirTemp("", "metalpower-bench-sync-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	infos, simCPU, stop, err := startFleet(ctx, opts, w)
	if err != nil {
		return err
	}
	defer stop()

	sims, err := testbed.StartFleet(testbed.FleetOptions{}) // Nova: the BMCs run elsewhere
	if err != nil {
		return err
	}
	defer sims.Close()
	nova := sims.Nova
	st, err := store.Open(ctx, "sqlite://"+filepath.Join(dir, "nodes.db"))
	if err != nil {
		return err
	}
	defer st.Close()

	drifted := int(float64(opts.Nodes)*opts.Drift + 0.5)
	start := time.Now()
	for i, info := range infos {
		n := node.New("", fmt.Sprintf("sync-%05d", i), opts.Driver, info)
		n.ProvisionState, n.PowerState = node.Active, node.PowerOn
		if i < drifted {
			// The record says off while the hardware is on.
			n.PowerState = node.PowerOff
		}
		n.InstanceUUID = uuid.NewString()
		nova.AddInstance(n.InstanceUUID, "compute-1", "active", "running")
		if err := st.Create(ctx, n); err != nil {
			return err
		}
	}
	// SQLite's first read after the bulk enrolment checkpoints its
	// write-ahead log (0.5-0.9 s for 10,000 nodes here): the enrolment's
	// cost, paid before the pass is timed.
	if _, err := st.List(ctx, store.Query{Limit: 1}); err != nil {
		return err
	}
	fmt.Fprintf(w, "enrolled %d nodes (%d drifted, every one with a Nova instance) in %v\n", opts.Nodes, drifted, time.Since(start).Round(time.Millisecond))

	cfg.Temporal.TaskQueue = "bench-sync-" + uuid.NewString()[:8]
	cfg.Nova.SendPowerNotifications = true
	interval, retry := cfg.IPMI.MinCommandInterval, cfg.IPMI.CommandRetryTimeout
	sims.Configure(&cfg)
	cfg.IPMI.CommandRetryTimeout = retry
	if opts.IPMISim {
		// ipmi_sim keeps Ironic's spacing, as a real BMC would want.
		cfg.IPMI.MinCommandInterval = interval
	}
	wk, err := testbed.StartWorker(ctx, cfg, zerolog.Nop(), conductor.WorkerOptions{Store: st, NoSchedules: true})
	if err != nil {
		return err
	}
	defer wk.Close()
	defer wk.Stop()

	stopProfile, err := cpuProfile(opts.CPUProfile)
	if err != nil {
		return err
	}
	id, res, wall, simUsed, err := runPasses(ctx, wk.Client, cfg.Temporal.TaskQueue, opts, simCPU, w)
	stopProfile()
	if err != nil {
		return err
	}

	passEvents, reading, err := passHistory(ctx, wk.Client, id)
	if err != nil {
		return err
	}
	childEvents, children, err := countEvents(ctx, wk.Client, fmt.Sprintf(`WorkflowType="%s" AND TaskQueue="%s"`, activities.NodePowerSyncWorkflow, cfg.Temporal.TaskQueue))
	if err != nil {
		return err
	}
	notifyEvents, notifiers, err := countNotifiers(ctx, wk.Client, cfg.Temporal.TaskQueue, drifted)
	if err != nil {
		return err
	}
	workers := cfg.Conductor.SyncPowerStateWorkers
	bound := time.Duration(float64(opts.Nodes) * float64(opts.BMCLatency) / float64(workers))
	ironic := time.Duration(float64(opts.Nodes) * float64(opts.BMCLatency) / 8)

	latency := opts.BMCLatency.String() + " BMC latency"
	if opts.IPMISim {
		latency = "ipmi_sim"
	}
	fmt.Fprintf(w, "\none pass over %d %s nodes, %s, sync_power_state_workers %d, force_power_state_during_sync %v:\n",
		opts.Nodes, opts.Driver, latency, workers, cfg.Conductor.ForcePowerStateDuringSync)
	fmt.Fprintf(w, "  wall time            %v (%.0f nodes/s)\n", wall.Round(time.Millisecond), float64(opts.Nodes)/wall.Seconds())
	fmt.Fprintf(w, "  read phase           %v (page reads)\n", reading.Round(time.Millisecond))
	if simUsed > 0 {
		fmt.Fprintf(w, "  simulators' CPU      %v (on this machine's cores)\n", simUsed.Round(10*time.Millisecond))
	}
	fmt.Fprintf(w, "  counts               checked %d, in sync %d, corrected %d, skipped locked %d, unreadable %d, entered maintenance %d\n",
		res.Checked, res.InSync, res.Corrected, res.SkippedLocked, res.Unreadable, res.EnteredMaintenance)
	if !opts.IPMISim {
		fmt.Fprintf(w, "  bound N×D/workers    %v; Ironic's default bound N×D/8: %v\n", bound.Round(time.Millisecond), ironic.Round(time.Millisecond))
	}
	fmt.Fprintf(w, "  history events       %d for the pass workflow (%d pages)\n", passEvents, res.Pages)
	if res.Corrected > 0 || children > 0 {
		// Every event of the pass is charged to the corrections: an
		// upper bound of their share.
		per := func(events int) float64 { return float64(events) / float64(max(res.Corrected, 1)) }
		fmt.Fprintf(w, "  correction phase     %v; %d per-node syncs, %d events; %d Nova notifiers, %d events\n",
			(wall - reading).Round(time.Millisecond), children, childEvents, notifiers, notifyEvents)
		fmt.Fprintf(w, "  per corrected node   %.1f history events in all: its per-node sync %.1f, Nova notifiers %.1f, the pass's %d events %.1f\n",
			per(childEvents+notifyEvents+passEvents), per(childEvents), per(notifyEvents), passEvents, per(passEvents))
	}
	delivered := 0
	for _, e := range nova.Events() {
		if e.Name == "power-update" && e.Code == 200 {
			delivered++
		}
	}
	fmt.Fprintf(w, "  Nova                 %d power-update events accepted\n", delivered)
	fmt.Fprintf(w, "  worker peak RSS      %.0f MiB (simulators run in their own process)\n", peakRSS())
	return nil
}

// runPasses runs opts.Passes passes Gap apart, then the warm one, printing
// each pass's time (and, when simCPU is set, the processor time the
// simulators spent on it), and returns the last pass's workflow ID and
// result.
func runPasses(ctx context.Context, c client.Client, queue string, opts SyncOptions, simCPU func() (time.Duration, error), w io.Writer) (id string, res workflows.PowerSyncResult, wall, simUsed time.Duration, err error) {
	var (
		walls []time.Duration
		start time.Time
	)
	pass := func(i int, label string) error {
		id = "bench-sync-" + uuid.NewString()
		var cpu0 time.Duration
		if simCPU != nil {
			cpu0, _ = simCPU()
		}
		start = time.Now()
		run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: id, TaskQueue: queue, EnableEagerStart: true},
			workflows.PowerSyncWorkflow, workflows.PowerSyncInput{})
		if err == nil {
			err = run.Get(ctx, &res)
		}
		if err != nil {
			return fmt.Errorf("sync pass %d: %w", i, err)
		}
		wall = time.Since(start)
		sim := ""
		if simCPU != nil {
			if cpu1, err := simCPU(); err == nil {
				sim = fmt.Sprintf(", simulators' CPU %v", (cpu1 - cpu0).Round(10*time.Millisecond))
				simUsed = cpu1 - cpu0
			}
		}
		if opts.Passes > 1 {
			fmt.Fprintf(w, "  pass %2d %-28s %v, %v inside the workflow (in sync %d of %d, unreadable %d%s)\n", i, label,
				wall.Round(time.Millisecond), time.Duration(res.Duration*float64(time.Second)).Round(time.Millisecond), res.InSync, res.Checked, res.Unreadable, sim)
		}
		return nil
	}
	if opts.Passes > 1 {
		fmt.Fprintf(w, "\n%d passes started %v apart:\n", opts.Passes, opts.Gap)
	}
	for i := 1; i <= opts.Passes; i++ {
		label := "(first)"
		if i > 1 {
			label = fmt.Sprintf("(%v after the last start)", opts.Gap)
			if err := sleepUntil(ctx, start.Add(opts.Gap)); err != nil {
				return "", res, 0, 0, err
			}
		}
		if err := pass(i, label); err != nil {
			return "", res, 0, 0, err
		}
		walls = append(walls, wall)
	}
	if opts.Passes == 1 {
		return id, res, wall, simUsed, nil
	}
	sorted := slices.Clone(walls)
	slices.Sort(sorted)
	fmt.Fprintf(w, "  median %v, slowest %v\n", sorted[len(sorted)/2].Round(time.Millisecond), sorted[len(sorted)-1].Round(time.Millisecond))
	if opts.Warm > 0 {
		if err := sleepUntil(ctx, start.Add(opts.Warm)); err != nil {
			return "", res, 0, 0, err
		}
		if err := pass(opts.Passes+1, fmt.Sprintf("(warm: %v after the last)", opts.Warm)); err != nil {
			return "", res, 0, 0, err
		}
		fmt.Fprintf(w, "  slowest / warm = %.2f, median / warm = %.2f\n",
			sorted[len(sorted)-1].Seconds()/wall.Seconds(), sorted[len(sorted)/2].Seconds()/wall.Seconds())
	}
	fmt.Fprintf(w, "  worker RSS now %.0f MiB\n", currentRSS())
	return id, res, wall, simUsed, nil
}

func sleepUntil(ctx context.Context, t time.Time) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(time.Until(t)):
		return nil
	}
}

// startFleet starts the BMCs and returns each node's driver_info: Debian's
// ipmi_sim processes (with a reading of their processor time), or the
// project's simulators in a child process (so the worker's memory is
// measured alone).
func startFleet(ctx context.Context, opts SyncOptions, w io.Writer) ([]node.DriverInfo, func() (time.Duration, error), func(), error) {
	if opts.IPMISim {
		procs := opts.IPMISimProcesses
		if procs <= 0 {
			procs = (opts.Nodes + 99) / 100
		}
		fmt.Fprintf(w, "starting %d ipmi_sim BMCs in %d processes...\n", opts.Nodes, procs)
		fleet, err := openipmi.Start(ctx, openipmi.Options{BMCs: opts.Nodes, Processes: procs, DistinctAddresses: true})
		if err != nil {
			return nil, nil, nil, err
		}
		var infos []node.DriverInfo
		for _, b := range fleet.BMCs() {
			infos = append(infos, node.DriverInfo{"ipmi_address": b.Host, "ipmi_port": float64(b.Port),
				"ipmi_username": b.Username, "ipmi_password": b.Password, "ipmi_cipher_suite": "3"})
		}
		return infos, fleet.CPUTime, fleet.Close, nil
	}
	fmt.Fprintf(w, "starting %d simulated %s BMCs (latency %v) in a separate process...\n", opts.Nodes, opts.Driver, opts.BMCLatency)
	password := testbed.IPMIPassword
	if opts.Driver == redfish.Name {
		password = testbed.RedfishPassword
	}
	args := []string{"sim", opts.Driver, "-latency", opts.BMCLatency.String(), "-username", testbed.BMCUser, "-password", password}
	var rfAddr string
	if opts.Driver == redfish.Name {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, nil, nil, err
		}
		rfAddr = l.Addr().String()
		l.Close()
		args = append(args, "-systems", strconv.Itoa(opts.Nodes), "-addr", rfAddr)
	} else {
		args = append(args, "-bmcs", strconv.Itoa(opts.Nodes))
	}
	cmd := exec.CommandContext(ctx, opts.Starter, args...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, nil, nil, err
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, nil, nil, fmt.Errorf("start the simulator process: %w", err)
	}
	stop := func() { cmd.Process.Signal(os.Interrupt); cmd.Wait() }
	infos := make([]node.DriverInfo, 0, opts.Nodes)
	sc := bufio.NewScanner(out)
	portRE := regexp.MustCompile(`port (\d+)`)
	for len(infos) < opts.Nodes && sc.Scan() {
		line := sc.Text()
		if opts.Driver == ipmi.Name {
			if m := portRE.FindStringSubmatch(line); m != nil {
				port, _ := strconv.Atoi(m[1])
				infos = append(infos, node.DriverInfo{"ipmi_address": "127.0.0.1", "ipmi_port": float64(port),
					"ipmi_username": testbed.BMCUser, "ipmi_password": password, "ipmi_cipher_suite": "3"})
			}
			continue
		}
		if strings.Contains(line, "Redfish simulator") {
			url := "http://" + rfAddr
			if err := waitHTTP(ctx, url+"/redfish/v1"); err != nil {
				stop()
				return nil, nil, nil, err
			}
			for i := 1; i <= opts.Nodes; i++ {
				infos = append(infos, node.DriverInfo{"redfish_address": url, "redfish_system_id": fmt.Sprintf("/redfish/v1/Systems/%d", i),
					"redfish_username": testbed.BMCUser, "redfish_password": password})
			}
		}
	}
	if len(infos) < opts.Nodes {
		stop()
		return nil, nil, nil, fmt.Errorf("the simulator process started %d of %d BMCs", len(infos), opts.Nodes)
	}
	go io.Copy(io.Discard, out)
	return infos, func() (time.Duration, error) { return proc.CPU(cmd.Process.Pid) }, stop, nil
}

func waitHTTP(ctx context.Context, url string) error {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("the simulator at %s did not answer", url)
}

// passHistory counts the pass's events and adds up the time its page
// reads took (scheduled to completed).
func passHistory(ctx context.Context, c client.Client, id string) (int, time.Duration, error) {
	it := c.GetWorkflowHistory(ctx, id, "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	var n int
	var reading time.Duration
	scheduled := map[int64]time.Time{}
	for it.HasNext() {
		e, err := it.Next()
		if err != nil {
			return 0, 0, err
		}
		n++
		switch e.GetEventType() {
		case enumspb.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
			scheduled[e.GetEventId()] = e.GetEventTime().AsTime()
		case enumspb.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
			at := scheduled[e.GetActivityTaskCompletedEventAttributes().GetScheduledEventId()]
			reading += e.GetEventTime().AsTime().Sub(at)
		}
	}
	return n, reading, nil
}

// countEvents adds up the history events of the workflows a visibility
// query finds.
func countEvents(ctx context.Context, c client.Client, query string) (events, workflows int, err error) {
	var token []byte
	for {
		resp, err := c.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{Query: query, PageSize: 1000, NextPageToken: token})
		if err != nil {
			return 0, 0, err
		}
		for _, e := range resp.GetExecutions() {
			workflows++
			events += int(e.GetHistoryLength())
		}
		if token = resp.GetNextPageToken(); len(token) == 0 {
			return events, workflows, nil
		}
	}
}

// countNotifiers waits for the Nova notifiers of the corrected nodes to
// finish, then counts their events.
func countNotifiers(ctx context.Context, c client.Client, queue string, want int) (int, int, error) {
	query := fmt.Sprintf(`WorkflowType="%s" AND TaskQueue="%s"`, activities.NovaNotifyWorkflow, queue)
	deadline := time.Now().Add(2 * time.Minute)
	for {
		resp, err := c.CountWorkflow(ctx, &workflowservice.CountWorkflowExecutionsRequest{Query: query + ` AND ExecutionStatus="Running"`})
		if err != nil {
			return 0, 0, err
		}
		if resp.GetCount() == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	// Visibility lags a little behind the last close.
	time.Sleep(time.Second)
	return countEvents(ctx, c, query)
}

// peakRSS is this process's peak resident set in MiB (Linux).
func peakRSS() float64 { return procStatus("VmHWM:") }

// currentRSS is this process's resident set in MiB (Linux).
func currentRSS() float64 { return procStatus("VmRSS:") }

// procStatus reads a size in kB from /proc/self/status, in MiB.
func procStatus(field string) float64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, field) {
			f := strings.Fields(line)
			if len(f) >= 2 {
				kb, _ := strconv.ParseFloat(f[1], 64)
				return kb / 1024
			}
		}
	}
	return 0
}
