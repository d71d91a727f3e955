//go:build unix

package demo

// Starting the Temporal server and the metalpower processes, and waiting
// until each is ready.

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"strconv"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"

	"github.com/metalpower/metalpower/internal/dispatch"
	"github.com/metalpower/metalpower/internal/operator"
	"github.com/metalpower/metalpower/internal/testbed/devserver"
)

func (d *demo) startTemporal(ctx context.Context) error {
	if d.opts.Cluster {
		return d.startCluster(ctx)
	}
	c, err := d.start("temporal dev server", "temporal.log", d.opts.TemporalCLI, devserver.Args(devserver.Options{
		Port: d.opts.TemporalPort, UIPort: d.opts.UIPort, UI: true,
		DBFile: filepath.Join(d.opts.DataDir, "temporal.db"), LogLevel: "warn",
	})...)
	if err != nil {
		return err
	}
	return waitFor(ctx, c, "the Temporal dev server", func(ctx context.Context) error {
		tc, err := d.dial(ctx)
		if err != nil {
			return err
		}
		defer tc.Close()
		_, err = tc.CheckHealth(ctx, &client.CheckHealthRequest{})
		return err
	})
}

// dial connects to the Temporal frontend, the dev server's or the
// cluster's.
func (d *demo) dial(ctx context.Context) (client.Client, error) {
	dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	return devserver.Dial(dctx, hostPort(d.opts.TemporalPort))
}

func (d *demo) startWorkerAndAPI(ctx context.Context) error {
	started := time.Now()
	var workers, apis []*child
	for i, g := range d.workerGroups() {
		name, logName := "worker", "worker.log"
		if len(d.workerGroups()) > 1 {
			name, logName = fmt.Sprintf("worker %d (conductor group %q)", i+1, g), fmt.Sprintf("worker-%d.log", i+1)
		}
		w, err := startChild(name, filepath.Join(d.opts.DataDir, logName), d.opts.Worker, nil,
			append(d.childEnv(), "METALPOWER_CONDUCTOR_CONDUCTOR_GROUP="+g))
		if err != nil {
			return err
		}
		d.adopt(w)
		workers = append(workers, w)
	}
	for i, port := range d.apiPorts() {
		name, logName := "API", "api.log"
		if i > 0 {
			name, logName = fmt.Sprintf("API %d", i+1), fmt.Sprintf("api-%d.log", i+1)
		}
		a, err := startChild(name, filepath.Join(d.opts.DataDir, logName), d.opts.Starter, []string{"api"},
			append(d.childEnv(), "METALPOWER_API_PORT="+strconv.Itoa(port)))
		if err != nil {
			return err
		}
		d.adopt(a)
		apis = append(apis, a)
	}
	tc, err := d.dial(ctx)
	if err != nil {
		return err
	}
	defer tc.Close()
	// A worker is ready once it polls both task queue kinds of its group
	// (it creates the schedules before it starts polling).
	for i, g := range d.workerGroups() {
		queue := dispatch.Queue(taskQueue, g)
		if err := waitFor(ctx, workers[i], workers[i].name, func(ctx context.Context) error {
			for _, kind := range []enumspb.TaskQueueType{enumspb.TASK_QUEUE_TYPE_WORKFLOW, enumspb.TASK_QUEUE_TYPE_ACTIVITY} {
				resp, err := tc.DescribeTaskQueue(ctx, queue, kind)
				if err != nil {
					return err
				}
				fresh := false
				for _, p := range resp.GetPollers() {
					fresh = fresh || !p.GetLastAccessTime().AsTime().Before(started.Add(-time.Second))
				}
				if !fresh {
					return fmt.Errorf("no %s poller on task queue %s yet", kind, queue)
				}
			}
			for _, id := range []string{"power-sync", "power-failure-recovery"} {
				if _, err := tc.ScheduleClient().GetHandle(ctx, id).Describe(ctx); err != nil {
					return fmt.Errorf("schedule %s: %w", id, err)
				}
			}
			return nil
		}); err != nil {
			return err
		}
	}
	// The demo is the operator: a rerun with other periods applies them
	// (a worker never changes schedules that exist).
	if err := operator.ApplySchedules(ctx, tc, d.config()); err != nil {
		return err
	}
	for i, port := range d.apiPorts() {
		if err := waitFor(ctx, apis[i], apis[i].name, func(ctx context.Context) error {
			status, _, err := d.apiAt(ctx, port, http.MethodGet, "/v1", nil)
			if err == nil && status != http.StatusOK {
				err = fmt.Errorf("GET /v1: %d", status)
			}
			return err
		}); err != nil {
			return err
		}
	}
	return nil
}

// waitFor polls check until it succeeds, c exits or ctx ends.
func waitFor(ctx context.Context, c *child, what string, check func(context.Context) error) error {
	err := poll(ctx, c.done, check)
	switch {
	case errors.Is(err, errExited):
		return c.exitError()
	case err != nil:
		return fmt.Errorf("%s did not become ready (%v); the end of %s:\n%s", what, err, c.log, c.logTail())
	}
	return nil
}

var errExited = errors.New("exited")

// poll calls check, each call within 5 s, until it succeeds, exited is
// closed (errExited) or ctx ends (check's last error).
func poll(ctx context.Context, exited <-chan struct{}, check func(context.Context) error) error {
	for {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		last := check(cctx)
		cancel()
		if last == nil {
			return nil
		}
		select {
		case <-exited:
			return errExited
		case <-ctx.Done():
			return last
		case <-time.After(250 * time.Millisecond):
		}
	}
}
