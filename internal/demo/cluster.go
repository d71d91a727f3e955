//go:build unix

package demo

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"strconv"

	"go.temporal.io/api/serviceerror"

	_ "github.com/jackc/pgx/v5/stdlib" // the store's PostgreSQL driver

	"github.com/metalpower/metalpower/internal/testbed"
	"github.com/metalpower/metalpower/internal/testbed/cluster"
	"github.com/metalpower/metalpower/internal/testbed/devserver"
	"github.com/metalpower/metalpower/internal/testbed/sim/redfishsim"
	"github.com/metalpower/metalpower/workflows"
)

// The production topology `make cluster` runs (Options.Cluster), from the
// files under deploy/ the compose deployment uses too: the real Temporal
// server on this machine's PostgreSQL (deploy/temporal), its Web UI
// (deploy/temporal-ui), the node store on PostgreSQL, one worker of the
// default group and two of conductor group segment-b (whose BMCs, a
// Redfish service of their own, only they call), two API processes and
// the Nova simulator. The databases outlive the run: a second run reuses
// them.
const segmentGroup = "segment-b"

// The cluster's databases: Options.Databases for the node store, with
// _temporal and _temporal_visibility for the server.
func (d *demo) storeDB() string    { return d.opts.Databases }
func (d *demo) temporalDB() string { return d.opts.Databases + "_temporal" }

// workerGroups are the conductor groups of the workers to start, one
// process each.
func (d *demo) workerGroups() []string {
	if d.opts.Cluster {
		return []string{"", segmentGroup, segmentGroup}
	}
	return []string{""}
}

// apiPorts are the ports of the API processes to start.
func (d *demo) apiPorts() []int {
	if p := d.secondAPIPort(); p != 0 {
		return []int{d.opts.APIPort, p}
	}
	return []int{d.opts.APIPort}
}

// secondAPIPort is the cluster's second API process (0 for the demo).
func (d *demo) secondAPIPort() int {
	if !d.opts.Cluster {
		return 0
	}
	return d.opts.APIPort + 1
}

// startSegment serves segment-b's BMCs, a Redfish service of their own.
func (d *demo) startSegment() error {
	ln, err := net.Listen("tcp", d.opts.SegmentAddr)
	if err != nil {
		return fmt.Errorf("the segment's Redfish simulator cannot listen on %s: %w", d.opts.SegmentAddr, err)
	}
	d.segment = redfishsim.New(redfishsim.Options{Systems: d.opts.Segment, Username: testbed.BMCUser, Password: testbed.RedfishPassword})
	d.segmentURL, err = d.segment.StartOn(ln)
	return err
}

// startCluster sets up (or upgrades) the server's schema, runs the server
// and its Web UI.
func (d *demo) startCluster(ctx context.Context) error {
	d.printf("starting the Temporal server on PostgreSQL (databases %s, %s_visibility)...\n", d.temporalDB(), d.temporalDB())
	c, err := cluster.Start(ctx, cluster.Options{DB: d.temporalDB(), FrontendPort: d.opts.TemporalPort})
	if err != nil {
		return err
	}
	d.temporal = c
	d.printf("started the Temporal server (frontend %s)\n", c.Address)
	root, err := devserver.RepoRoot()
	if err != nil {
		return err
	}
	ui := filepath.Join(root, "tools", "bin", "temporal-ui-server")
	env := append(d.childEnv(), "TEMPORAL_ADDRESS="+c.Address, "TEMPORAL_UI_HOST=127.0.0.1",
		"TEMPORAL_UI_PORT="+strconv.Itoa(d.opts.UIPort), "TEMPORAL_CORS_ORIGINS=http://"+hostPort(d.opts.UIPort))
	w, err := startChild("Temporal Web UI", filepath.Join(d.opts.DataDir, "temporal-ui.log"), ui,
		[]string{"--root", root, "--config", "deploy/temporal-ui", "--env", "metalpower", "start"}, env)
	if err != nil {
		return err
	}
	d.children = append(d.children, w)
	d.printf("started Temporal Web UI (pid %d, log %s)\n", w.pid(), w.log)
	if err := c.EnsureSearchAttributes(ctx); err != nil {
		return err
	}
	// The demo is ready when the Web UI it shows answers too.
	if err := waitFor(ctx, w, w.name, func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+hostPort(d.opts.UIPort)+"/", nil)
		if err != nil {
			return err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET /: %s", resp.Status)
		}
		return nil
	}); err != nil {
		return err
	}
	return d.waitServing(ctx)
}

// waitServing waits until the server describes the sync schedule (or
// says there is none), the first thing every worker asks. Its health
// check passes long before that after a restart: the server takes the
// members its predecessor recorded in the database as alive for 20 s
// after their last heartbeat (sent every 10-15 s), tries to join them,
// and until ringpop gives up (its 30 s join limit, then a 10 s retry)
// every request that needs history or matching fails with "Not enough
// hosts to serve the request", about 50 s on an idle machine. A second
// run started soon after the first meets this; workers started meanwhile
// spend their one minute of schedule retries on it and, on a busy
// machine, exit before it is over.
func (d *demo) waitServing(ctx context.Context) error {
	tc, err := d.dial(ctx)
	if err != nil {
		return err
	}
	defer tc.Close()
	waited := false
	err = poll(ctx, nil, func(ctx context.Context) error {
		_, err := tc.ScheduleClient().GetHandle(ctx, workflows.SyncScheduleID).Describe(ctx)
		var notFound *serviceerror.NotFound
		if errors.As(err, &notFound) {
			return nil // a new cluster: no schedule yet
		}
		if err != nil && !waited {
			waited = true
			d.printf("waiting for the Temporal server to serve requests (after a restart it first tries to join the server it replaces)...\n")
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("the Temporal server at %s does not serve requests: %v", d.temporal.Address, err)
	}
	if waited {
		d.printf("the Temporal server serves requests\n")
	}
	return nil
}
