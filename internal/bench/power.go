// Package bench measures metalpower against the Temporal server it is
// pointed at, with simulators, store and worker in-process, so a run is
// self-contained and its figures comparable on one machine.
package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/rs/zerolog"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/metalpower/metalpower/activities"
	"github.com/metalpower/metalpower/internal/bmc"
	"github.com/metalpower/metalpower/internal/bmc/redfish"
	"github.com/metalpower/metalpower/internal/conductor"
	"github.com/metalpower/metalpower/internal/config"
	"github.com/metalpower/metalpower/internal/dispatch"
	"github.com/metalpower/metalpower/internal/node"
	"github.com/metalpower/metalpower/internal/operator"
	"github.com/metalpower/metalpower/internal/store"
	"github.com/metalpower/metalpower/internal/testbed"
	"github.com/metalpower/metalpower/internal/testbed/sim/redfishsim"
)

// PowerOptions sizes the power benchmark.
type PowerOptions struct {
	// Parallel lists the node counts changed at once (default 1, 10, 100).
	Parallel []int
	// Changes per level (default 20; at least one round of each level).
	Changes int
	// BMCLatency is added to every simulated Redfish request.
	BMCLatency time.Duration
	// FloorWorkflows is the number of no-op workflows timed for the floor.
	FloorWorkflows int
}

// Power runs the power-change benchmark and prints its figures to w.
func Power(ctx context.Context, cfg config.Config, opts PowerOptions, w io.Writer) error {
	if len(opts.Parallel) == 0 {
		opts.Parallel = []int{1, 10, 100}
	}
	if opts.Changes <= 0 {
		opts.Changes = 20
	}
	if opts.FloorWorkflows <= 0 {
		opts.FloorWorkflows = 40
	}
	maxNodes := slices.Max(opts.Parallel)

	dir, err := os.MkdirTemp("", "metalpower-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	st, err := store.Open(ctx, "sqlite://"+filepath.Join(dir, "nodes.db"))
	if err != nil {
		return err
	}
	defer st.Close()
	fl, err := testbed.StartFleet(testbed.FleetOptions{Redfish: maxNodes + 1, Latency: opts.BMCLatency})
	if err != nil {
		return err
	}
	defer fl.Close()
	nova := fl.Nova

	cfg.Temporal.TaskQueue = "bench-" + uuid.NewString()[:8]
	cfg.Nova.SendPowerNotifications = true
	fl.Configure(&cfg)
	// Enough pollers and slots for 100 changes in flight.
	wk, err := testbed.StartWorker(ctx, cfg, zerolog.Nop(), conductor.WorkerOptions{Store: st, NoSchedules: true})
	if err != nil {
		return err
	}
	defer wk.Close()
	defer wk.Stop()
	c := wk.Client

	fmt.Fprintf(w, "metalpower power-change benchmark against Temporal at %s (task queue %s), simulated BMC latency %v\n\n", cfg.Temporal.Address, cfg.Temporal.TaskQueue, opts.BMCLatency)

	floor, err := measureFloor(ctx, c, opts.FloorWorkflows)
	if err != nil {
		return fmt.Errorf("floor: %w", err)
	}
	fmt.Fprintf(w, "server floor: %.1f no-op workflows/s (one no-op activity each, 10 in parallel, %d workflows)\n", floor, opts.FloorWorkflows)

	nodes := make([]*node.Node, maxNodes+1)
	for i := range nodes {
		n := node.New("", fmt.Sprintf("bench-%03d", i), redfish.Name, fl.RedfishInfo(fl.Redfish.SystemIDs()[i]))
		n.ProvisionState, n.PowerState = node.Manageable, node.PowerOn
		if i == maxNodes {
			// The last node carries a Nova instance, for the event count.
			n.InstanceUUID, n.ProvisionState = uuid.NewString(), node.Active
			nova.AddInstance(n.InstanceUUID, "compute-1", "active", "running")
		}
		if err := st.Create(ctx, n); err != nil {
			return err
		}
		nodes[i] = n
	}
	bmcTime, err := directBMCTime(ctx, fl.RedfishURL, fl.Redfish)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "BMC's own time per change (read, reset, read through the driver, no Temporal): %v\n\n", bmcTime.Round(10*time.Microsecond))
	fmt.Fprintf(w, "%-9s %8s %12s %14s %14s %10s\n", "parallel", "changes", "changes/s", "p50 overhead", "p99 overhead", "of floor")

	target := node.PowerOff
	for _, p := range opts.Parallel {
		rounds := max(1, opts.Changes/p)
		var lat []time.Duration
		start := time.Now()
		for r := 0; r < rounds; r++ {
			got, err := round(ctx, wk, cfg, nodes[:p], target)
			if err != nil {
				return err
			}
			lat = append(lat, got...)
			target = map[string]string{node.PowerOff: node.PowerOn, node.PowerOn: node.PowerOff}[target]
		}
		elapsed := time.Since(start)
		slices.Sort(lat)
		rate := float64(len(lat)) / elapsed.Seconds()
		fmt.Fprintf(w, "%-9d %8d %12.1f %14v %14v %9.0f%%\n", p, len(lat), rate,
			(percentile(lat, 50) - bmcTime).Round(time.Millisecond), (percentile(lat, 99) - bmcTime).Round(time.Millisecond), 100*rate/floor)
	}

	plain, err := historyLength(ctx, c, dispatch.LockID(nodes[0].UUID))
	if err != nil {
		return err
	}
	last := nodes[maxNodes]
	if _, err := round(ctx, wk, cfg, []*node.Node{last}, node.PowerOff); err != nil {
		return err
	}
	withNova, err := historyLength(ctx, c, dispatch.LockID(last.UUID))
	if err != nil {
		return err
	}
	notify, err := waitNotifier(ctx, c, activities.NovaNotifyID(last.InstanceUUID))
	if err != nil {
		return err
	}
	how := "Nova answered at once, no notifier workflow"
	if notify > 0 {
		how = fmt.Sprintf("%d PowerChange + %d NovaNotify", withNova, notify)
	}
	fmt.Fprintf(w, "\nhistory events per change: %d without a Nova instance; %d with one (%s)\n", plain, withNova+notify, how)
	return nil
}

// round changes every node at once and returns each change's latency.
func round(ctx context.Context, wk *conductor.Worker, cfg config.Config, nodes []*node.Node, target string) ([]time.Duration, error) {
	lat := make([]time.Duration, len(nodes))
	errs := make([]error, len(nodes))
	// All changes run at once, but at most 64 start requests are in flight:
	// a thousand simultaneous starts would only time out in the server's
	// queue (as clients of a real API would be spread over time).
	starting := make(chan struct{}, 64)
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			start := time.Now()
			starting <- struct{}{}
			run, err := operator.StartPowerChange(ctx, wk.Client, wk.Store, cfg.Temporal.TaskQueue, n, operator.PowerRequest{Target: target, Via: "bench"})
			<-starting
			if err == nil {
				err = run.Get(ctx, nil)
			}
			lat[i], errs[i] = time.Since(start), err
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	return lat, nil
}

// directBMCTime is the median time of the BMC calls one change makes,
// through the driver alone.
func directBMCTime(ctx context.Context, url string, rf *redfishsim.Sim) (time.Duration, error) {
	id := rf.SystemIDs()[0]
	c := redfish.New(redfish.Info{Endpoint: url, SystemID: rf.SystemPath(id), Username: testbed.BMCUser, Password: testbed.RedfishPassword, AuthType: "basic"}, redfish.Options{})
	defer c.Close()
	var times []time.Duration
	target := node.PowerOff
	for i := 0; i < 21; i++ {
		start := time.Now()
		if _, err := c.PowerState(ctx); err != nil {
			return 0, err
		}
		if err := c.SetPowerState(ctx, target, bmc.Policy{}); err != nil {
			return 0, err
		}
		if _, err := c.PowerState(ctx); err != nil {
			return 0, err
		}
		times = append(times, time.Since(start))
		target = map[string]string{node.PowerOff: node.PowerOn, node.PowerOn: node.PowerOff}[target]
	}
	rf.SetPowerState(id, "On")
	slices.Sort(times)
	return times[len(times)/2], nil
}

func percentile(sorted []time.Duration, p int) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := (len(sorted)*p + 99) / 100
	return sorted[min(max(i-1, 0), len(sorted)-1)]
}

func historyLength(ctx context.Context, c client.Client, id string) (int, error) {
	it := c.GetWorkflowHistory(ctx, id, "", false, 0)
	n := 0
	for it.HasNext() {
		if _, err := it.Next(); err != nil {
			return 0, err
		}
		n++
	}
	return n, nil
}

// waitNotifier waits for the instance's notifier, if the change needed
// one, to finish its run and counts its events.
func waitNotifier(ctx context.Context, c client.Client, id string) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	var notFound *serviceerror.NotFound
	if _, err := c.DescribeWorkflowExecution(ctx, id, ""); errors.As(err, &notFound) {
		return 0, nil
	}
	if err := c.GetWorkflow(ctx, id, "").Get(ctx, nil); err != nil {
		return 0, fmt.Errorf("notifier %s: %w", id, err)
	}
	return historyLength(ctx, c, id)
}

// measureFloor times no-op workflows with one no-op activity each, 10 at a
// time: what the server manages for the simplest durable work.
func measureFloor(ctx context.Context, c client.Client, total int) (float64, error) {
	queue := "bench-floor-" + uuid.NewString()[:8]
	wk := worker.New(c, queue, worker.Options{})
	wk.RegisterWorkflowWithOptions(noopWorkflow, workflow.RegisterOptions{Name: "BenchNoop"})
	wk.RegisterActivity(noopActivity)
	if err := wk.Start(); err != nil {
		return 0, err
	}
	defer wk.Stop()
	sem := make(chan struct{}, 10)
	errs := make(chan error, total)
	start := time.Now()
	var wg sync.WaitGroup
	for i := 0; i < total; i++ {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{TaskQueue: queue}, "BenchNoop")
			if err == nil {
				err = run.Get(ctx, nil)
			}
			if err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return 0, err
	}
	return float64(total) / time.Since(start).Seconds(), nil
}

func noopWorkflow(ctx workflow.Context) error {
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{StartToCloseTimeout: 10 * time.Second})
	return workflow.ExecuteActivity(ctx, noopActivity).Get(ctx, nil)
}

func noopActivity(context.Context) error { return nil }
