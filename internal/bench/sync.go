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
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/rs/zerolog"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"

	"github.com/metalpower/metalpower/internal/app"
	"github.com/metalpower/metalpower/internal/config"
	"github.com/metalpower/metalpower/internal/node"
	"github.com/metalpower/metalpower/internal/sim/novasim"
	"github.com/metalpower/metalpower/internal/store"
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
}

// Sync runs one full power sync pass over a simulated fleet and prints its
// figures to w.
func Sync(ctx context.Context, cfg config.Config, opts SyncOptions, w io.Writer) error {
	if opts.Driver != node.DriverRedfish && opts.Driver != node.DriverIPMI {
		return fmt.Errorf("driver %q: use redfish or ipmi", opts.Driver)
	}
	if opts.Nodes < 1 || opts.Drift < 0 || opts.Drift > 1 {
		return fmt.Errorf("want at least one node and a drift between 0 and 1")
	}
	dir, err := os.MkdirTemp("", "metalpower-bench-sync-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	fmt.Fprintf(w, "starting %d simulated %s BMCs (latency %v) in a separate process...\n", opts.Nodes, opts.Driver, opts.BMCLatency)
	infos, stop, err := startFleet(ctx, opts)
	if err != nil {
		return err
	}
	defer stop()

	nova := novasim.New(novasim.Options{})
	authURL := nova.Start()
	defer nova.Close()
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
	fmt.Fprintf(w, "enrolled %d nodes (%d drifted, every one with a Nova instance) in %v\n", opts.Nodes, drifted, time.Since(start).Round(time.Millisecond))

	cfg.Temporal.TaskQueue = "bench-sync-" + uuid.NewString()[:8]
	cfg.Nova.SendPowerNotifications = true
	cfg.Nova.AuthURL, cfg.Nova.Username, cfg.Nova.Password, cfg.Nova.ProjectName = authURL, "ironic", "secret", "service"
	cfg.IPMI.MinCommandInterval = 0 // every node is its own simulated BMC
	wk, err := app.NewWorker(ctx, cfg, zerolog.Nop(), app.WorkerOptions{Store: st, NoSchedules: true})
	if err != nil {
		return err
	}
	defer wk.Close()
	if err := wk.Start(); err != nil {
		return err
	}
	defer wk.Stop()

	id := "bench-sync-" + uuid.NewString()
	start = time.Now()
	run, err := wk.Client.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: id, TaskQueue: cfg.Temporal.TaskQueue, EnableEagerStart: true},
		workflows.PowerSyncWorkflow, workflows.PowerSyncInput{})
	if err != nil {
		return err
	}
	var res workflows.PowerSyncResult
	if err := run.Get(ctx, &res); err != nil {
		return fmt.Errorf("sync pass: %w", err)
	}
	wall := time.Since(start)

	passEvents, reading, err := passHistory(ctx, wk.Client, id)
	if err != nil {
		return err
	}
	childEvents, children, err := countEvents(ctx, wk.Client, fmt.Sprintf(`WorkflowType="%s" AND TaskQueue="%s"`, workflows.NodePowerSyncWorkflow, cfg.Temporal.TaskQueue))
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

	fmt.Fprintf(w, "\none pass over %d %s nodes, %v BMC latency, sync_power_state_workers %d, force_power_state_during_sync %v:\n",
		opts.Nodes, opts.Driver, opts.BMCLatency, workers, cfg.Conductor.ForcePowerStateDuringSync)
	fmt.Fprintf(w, "  wall time            %v (%.0f nodes/s)\n", wall.Round(time.Millisecond), float64(opts.Nodes)/wall.Seconds())
	fmt.Fprintf(w, "  read phase           %v (page reads)\n", reading.Round(time.Millisecond))
	fmt.Fprintf(w, "  counts               checked %d, in sync %d, corrected %d, skipped locked %d, unreadable %d, entered maintenance %d\n",
		res.Checked, res.InSync, res.Corrected, res.SkippedLocked, res.Unreadable, res.EnteredMaintenance)
	fmt.Fprintf(w, "  bound N×D/workers    %v; Ironic's default bound N×D/8: %v\n", bound.Round(time.Millisecond), ironic.Round(time.Millisecond))
	fmt.Fprintf(w, "  history events       %d for the pass workflow (%d pages)\n", passEvents, res.Pages)
	if res.Corrected > 0 || children > 0 {
		fmt.Fprintf(w, "  correction phase     %v; %d per-node syncs, %d events; %d Nova notifiers, %d events; %.1f events per corrected node\n",
			(wall - reading).Round(time.Millisecond), children, childEvents, notifiers, notifyEvents,
			float64(childEvents+notifyEvents+3*children)/float64(max(res.Corrected, 1)))
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

// startFleet runs the simulators in a child process and returns each
// node's driver_info.
func startFleet(ctx context.Context, opts SyncOptions) ([]node.DriverInfo, func(), error) {
	args := []string{"sim", opts.Driver, "-latency", opts.BMCLatency.String()}
	var rfAddr string
	if opts.Driver == node.DriverRedfish {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, nil, err
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
		return nil, nil, err
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, nil, fmt.Errorf("start the simulator process: %w", err)
	}
	stop := func() { cmd.Process.Signal(os.Interrupt); cmd.Wait() }
	infos := make([]node.DriverInfo, 0, opts.Nodes)
	sc := bufio.NewScanner(out)
	portRE := regexp.MustCompile(`port (\d+)`)
	for len(infos) < opts.Nodes && sc.Scan() {
		line := sc.Text()
		if opts.Driver == node.DriverIPMI {
			if m := portRE.FindStringSubmatch(line); m != nil {
				port, _ := strconv.Atoi(m[1])
				infos = append(infos, node.DriverInfo{"ipmi_address": "127.0.0.1", "ipmi_port": float64(port),
					"ipmi_username": "admin", "ipmi_password": "password", "ipmi_cipher_suite": "3"})
			}
			continue
		}
		if strings.Contains(line, "Redfish simulator") {
			url := "http://" + rfAddr
			if err := waitHTTP(ctx, url+"/redfish/v1"); err != nil {
				stop()
				return nil, nil, err
			}
			for i := 1; i <= opts.Nodes; i++ {
				infos = append(infos, node.DriverInfo{"redfish_address": url, "redfish_system_id": fmt.Sprintf("/redfish/v1/Systems/%d", i),
					"redfish_username": "admin", "redfish_password": "password"})
			}
		}
	}
	if len(infos) < opts.Nodes {
		stop()
		return nil, nil, fmt.Errorf("the simulator process started %d of %d BMCs", len(infos), opts.Nodes)
	}
	go io.Copy(io.Discard, out)
	return infos, stop, nil
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
	query := fmt.Sprintf(`WorkflowType="NovaNotify" AND TaskQueue="%s"`, queue)
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
func peakRSS() float64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmHWM:") {
			f := strings.Fields(line)
			if len(f) >= 2 {
				kb, _ := strconv.ParseFloat(f[1], 64)
				return kb / 1024
			}
		}
	}
	return 0
}
