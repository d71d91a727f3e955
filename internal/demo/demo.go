//go:build unix

// Package demo runs the whole local stack for `make demo` (`starter demo`):
// the Temporal dev server with its Web UI, a simulated fleet of Redfish and
// IPMI BMCs, a Nova + Keystone simulator, the worker and the REST API on the
// SQLite node store, all on embedded defaults and without Docker. It enrolls
// and manages the simulated nodes, injects a few faults so the periodic sync
// has work to do, prints copy-paste examples and runs until SIGINT or
// SIGTERM, when it stops every process it started.
//
// The dev server, the worker and the API run as child processes, each in
// its own process group (and, on Linux, with a parent-death signal so that
// even a SIGKILLed demo takes them along). The simulators run inside the
// demo process: stopping the demo stops them.
package demo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/metalpower/metalpower/internal/bmc/ipmi"
	"github.com/metalpower/metalpower/internal/bmc/redfish"
	"github.com/metalpower/metalpower/internal/config"
	"github.com/metalpower/metalpower/internal/node"
	"github.com/metalpower/metalpower/internal/store"
	"github.com/metalpower/metalpower/internal/testbed"
	"github.com/metalpower/metalpower/internal/testbed/cluster"
	"github.com/metalpower/metalpower/internal/testbed/openstack"
	"github.com/metalpower/metalpower/internal/testbed/sim/redfishsim"
)

// ReadyLine is printed once everything is up; scripts wait for it.
const ReadyLine = "metalpower demo ready"

const (
	novaHost  = "compute-1"
	taskQueue = "metalpower"
)

// Options shapes the demo; zero values take the defaults below.
type Options struct {
	// DataDir keeps the Temporal database, the node store, the logs and
	// nova-events.log (default ".data").
	DataDir string
	// TemporalCLI is the temporal CLI (default tools/bin/temporal).
	TemporalCLI string
	// Starter and Worker are the binaries run for the API and the worker
	// (default: this executable, and "worker" beside it).
	Starter, Worker string
	// Redfish and IPMI are the fleet sizes (default 40 and 8).
	Redfish, IPMI int
	// Ports on 127.0.0.1 (defaults 6385, 7233, 8233).
	APIPort, TemporalPort, UIPort int
	// RedfishAddr is where the Redfish fleet listens (default 127.0.0.1:8000).
	RedfishAddr string
	// SyncInterval and RecoveryInterval are the schedules' periods in
	// seconds (defaults 60 and 120: short, so the demo shows passes).
	SyncInterval, RecoveryInterval int
	// ReadyTimeout bounds the start-up (default 2 minutes).
	ReadyTimeout time.Duration
	// Cluster runs the production topology instead (make cluster; see
	// cluster.go).
	Cluster bool
	// Segment is the number of Redfish nodes of conductor group
	// segment-b, behind a Redfish service of their own at SegmentAddr
	// (cluster only; default 10 and 127.0.0.1:8001).
	Segment     int
	SegmentAddr string
	// Databases names the cluster's PostgreSQL databases (default
	// metalpower: the node store; metalpower_temporal and
	// metalpower_temporal_visibility: the server's).
	Databases string
	// Keystone runs a real Keystone (Debian's, on the local MariaDB) and
	// the API with auth_strategy keystone behind it.
	Keystone bool
	// OpenStack also runs Placement, Neutron, Glance and Nova with the
	// ironic driver (Debian's), with the API as the catalog's baremetal
	// endpoint, the worker notifying the real nova-api, and a Nova
	// server on every node with an instance. It implies Keystone.
	OpenStack bool
}

func (o *Options) defaults() error {
	if o.DataDir == "" {
		o.DataDir = ".data"
	}
	if o.TemporalCLI == "" {
		o.TemporalCLI = filepath.Join("tools", "bin", "temporal")
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	if o.Starter == "" {
		o.Starter = self
	}
	if o.Worker == "" {
		o.Worker = filepath.Join(filepath.Dir(self), "worker")
	}
	if o.Redfish == 0 {
		o.Redfish = 40
	}
	if o.IPMI == 0 {
		o.IPMI = 8
	}
	if o.APIPort == 0 {
		o.APIPort = 6385
	}
	if o.TemporalPort == 0 {
		o.TemporalPort = 7233
	}
	if o.UIPort == 0 {
		o.UIPort = 8233
	}
	if o.RedfishAddr == "" {
		o.RedfishAddr = "127.0.0.1:8000"
	}
	if o.SyncInterval == 0 {
		o.SyncInterval = 60
	}
	if o.RecoveryInterval == 0 {
		o.RecoveryInterval = 120
	}
	if o.OpenStack {
		o.Keystone = true
		if o.ReadyTimeout == 0 {
			o.ReadyTimeout = 6 * time.Minute
		}
	}
	if o.ReadyTimeout == 0 {
		o.ReadyTimeout = 2 * time.Minute
	}
	if o.Cluster && o.Segment == 0 {
		o.Segment = 10
	}
	if o.SegmentAddr == "" {
		o.SegmentAddr = "127.0.0.1:8001"
	}
	if o.Databases == "" {
		o.Databases = "metalpower"
	}
	if o.Redfish < 0 || o.Redfish > 999 || o.IPMI < 0 || o.IPMI > 99 || o.Redfish+o.IPMI == 0 || o.Segment < 0 || o.Segment > 999 {
		return fmt.Errorf("fleet size: want 0-999 Redfish, 0-99 IPMI and 0-999 segment nodes, at least one in the default group")
	}
	for _, p := range []*string{&o.DataDir, &o.TemporalCLI, &o.Starter, &o.Worker} {
		if *p, err = filepath.Abs(*p); err != nil {
			return err
		}
	}
	for _, b := range []struct{ what, path, hint string }{
		{"the temporal CLI", o.TemporalCLI, "run `make tools/bin/temporal` (or `make deps`; `make demo` builds it), or pass -temporal-cli"},
		{"the worker binary", o.Worker, "run `make build`, or pass -worker"},
		{"the starter binary", o.Starter, "run `make build`"},
	} {
		if _, err := os.Stat(b.path); err != nil {
			return fmt.Errorf("%s is missing at %s: %s", b.what, b.path, b.hint)
		}
	}
	return nil
}

// demo is one run.
type demo struct {
	opts  Options
	out   io.Writer
	outMu sync.Mutex
	sims  *testbed.Fleet
	// segment is the Redfish service of conductor group segment-b, and
	// temporal the real server (cluster only).
	segment    *redfishsim.Sim
	segmentURL string
	temporal   *cluster.Cluster
	children   []*child
	faults     []fault
	fleet      []plannedNode
	// instanceNode maps Nova instance UUIDs to node names, for the event log.
	instanceNode sync.Map
	// keystone is the demo's Keystone (-keystone), else nil.
	keystone *cloud
	// openstack is the demo's Nova and the rest (-openstack), else nil.
	openstack *openstack.Cloud
}

func (d *demo) printf(format string, args ...any) {
	d.outMu.Lock()
	defer d.outMu.Unlock()
	fmt.Fprintf(d.out, format, args...)
}

// Run runs the demo until ctx ends (the caller cancels it on SIGINT and
// SIGTERM), then stops everything it started.
func Run(ctx context.Context, opts Options, out io.Writer) (err error) {
	if err := opts.defaults(); err != nil {
		return err
	}
	d := &demo{opts: opts, out: out}
	d.fleet = plan(opts.Redfish, opts.IPMI, opts.Segment)
	if err := os.MkdirAll(opts.DataDir, 0o755); err != nil {
		return err
	}
	for _, a := range []struct{ what, addr string }{
		{"the Temporal frontend (-temporal-port)", hostPort(opts.TemporalPort)},
		{"the Temporal Web UI (-ui-port)", hostPort(opts.UIPort)},
		{"the API (-api-port)", hostPort(opts.APIPort)},
		{"the second API (-api-port + 1)", hostPort(d.secondAPIPort())},
	} {
		if a.addr == "" {
			continue
		}
		if err := portFree(a.addr); err != nil {
			return fmt.Errorf("%s: %s is taken (is `make run` or another demo running?): %v", a.what, a.addr, err)
		}
	}
	defer func() {
		if stopErr := d.stop(); stopErr != nil && err == nil {
			err = stopErr
		}
		d.printf("stopped\n")
	}()

	if err := d.startSimulators(); err != nil {
		return err
	}
	known, err := d.reconcileStore(ctx)
	if err != nil {
		return err
	}
	eventsCtx, stopEvents := context.WithCancel(ctx)
	eventsDone := d.logNovaEvents(eventsCtx)
	defer func() { stopEvents(); <-eventsDone }()

	readyCtx, cancel := context.WithTimeout(ctx, opts.ReadyTimeout)
	defer cancel()
	if err := d.startTemporal(readyCtx); err != nil {
		return err
	}
	if opts.Keystone {
		defer func() {
			if ksErr := d.stopKeystone(); ksErr != nil && err == nil {
				err = ksErr
			}
		}()
		if err := d.startKeystone(readyCtx); err != nil {
			return err
		}
	}
	if err := d.startWorkerAndAPI(readyCtx); err != nil {
		return err
	}
	if opts.OpenStack {
		defer func() {
			if osErr := d.stopOpenStack(); osErr != nil && err == nil {
				err = osErr
			}
		}()
		if err := d.startOpenStack(readyCtx); err != nil {
			return err
		}
	}
	if err := d.enroll(readyCtx, known); err != nil {
		return err
	}
	d.injectFaults()
	d.printBanner(known)
	d.printf("%s\n", ReadyLine)

	// Run until asked to stop, or until a child dies.
	crashed := make(chan *child, len(d.children))
	for _, c := range d.children {
		go func() {
			select {
			case <-c.done:
				crashed <- c
			case <-ctx.Done():
			}
		}()
	}
	select {
	case <-ctx.Done():
		d.printf("\nstopping the demo...\n")
		return nil
	case c := <-crashed:
		if ctx.Err() != nil {
			return nil
		}
		return c.exitError()
	}
}

func hostPort(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }

func portFree(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	return ln.Close()
}

// plannedNode is one simulated server and its node.
type plannedNode struct {
	name     string
	driver   string
	index    int  // Redfish system ID, or IPMI BMC index (1-based)
	instance bool // active with a Nova instance
	group    string
}

// plan lays out the fleet: rf-01.., ipmi-1.. and, in conductor group
// segment-b, seg-01..; every fourth node hosts a Nova instance (active),
// the others are available.
func plan(redfishNodes, ipmiNodes, segment int) []plannedNode {
	var out []plannedNode
	for i := 1; i <= redfishNodes; i++ {
		out = append(out, plannedNode{name: fmt.Sprintf("rf-%02d", i), driver: redfish.Name, index: i, instance: i%4 == 0})
	}
	for i := 1; i <= ipmiNodes; i++ {
		out = append(out, plannedNode{name: fmt.Sprintf("ipmi-%d", i), driver: ipmi.Name, index: i, instance: i%4 == 0})
	}
	for i := 1; i <= segment; i++ {
		out = append(out, plannedNode{name: fmt.Sprintf("seg-%02d", i), driver: redfish.Name, index: i, instance: i%4 == 0, group: segmentGroup})
	}
	return out
}

// instanceUUID is stable per node name, so reruns agree with the store.
func instanceUUID(name string) string {
	return uuid.NewSHA1(uuid.NameSpaceURL, []byte("metalpower-demo/instance/"+name)).String()
}

func (d *demo) driverInfo(p plannedNode) map[string]any {
	if p.group == segmentGroup {
		return testbed.RedfishInfo(d.segment, d.segmentURL, strconv.Itoa(p.index))
	}
	if p.driver == redfish.Name {
		return d.sims.RedfishInfo(strconv.Itoa(p.index))
	}
	return d.sims.IPMIInfo(p.index - 1)
}

func (d *demo) startSimulators() error {
	ln, err := net.Listen("tcp", d.opts.RedfishAddr)
	if err != nil {
		return fmt.Errorf("the Redfish simulator cannot listen on %s (-redfish-addr; is `starter sim redfish` running?): %w", d.opts.RedfishAddr, err)
	}
	d.sims, err = testbed.StartFleet(testbed.FleetOptions{Redfish: max(d.opts.Redfish, 1), IPMI: max(d.opts.IPMI, 1), RedfishListener: ln})
	if err != nil || d.opts.Segment == 0 {
		return err
	}
	return d.startSegment()
}

// reconcileStore brings the nodes a previous run left in the store up to
// date with this run's simulators, before any worker runs: the IPMI
// simulators listen on new ports each run and the Redfish address may
// differ. The simulated hardware is set to the recorded power states (as
// real servers keep theirs across a restart of the control plane), and
// Nova learns the instances again. It returns the names already enrolled.
func (d *demo) reconcileStore(ctx context.Context) (map[string]bool, error) {
	if d.opts.Cluster {
		if _, err := cluster.EnsureDatabase(ctx, d.storeDB()); err != nil {
			return nil, err
		}
	}
	st, err := store.Open(ctx, d.dbURL())
	if err != nil {
		return nil, fmt.Errorf("node store %s: %w", d.dbURL(), err)
	}
	defer st.Close()
	known := map[string]bool{}
	for _, p := range d.fleet {
		n, err := st.Get(ctx, p.name)
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		known[p.name] = true
		want := d.driverInfo(p)
		stale := false
		for k, v := range want {
			if k == "ipmi_password" || k == "redfish_password" {
				continue
			}
			if fmt.Sprint(n.DriverInfo[k]) != fmt.Sprint(v) {
				stale = true
			}
		}
		if stale {
			if _, err := store.Modify(ctx, st, n.UUID, func(n *node.Node) error {
				for k, v := range want {
					n.DriverInfo[k] = v
				}
				return nil
			}); err != nil {
				return nil, fmt.Errorf("update driver_info of %s: %w", p.name, err)
			}
		}
		d.setHardware(p, n.PowerState != node.PowerOff)
		if n.InstanceUUID != "" {
			d.addInstance(n.InstanceUUID, p.name, n.PowerState != node.PowerOff)
		}
	}
	return known, nil
}

func (d *demo) addInstance(id, name string, on bool) {
	if on {
		d.sims.Nova.AddInstance(id, novaHost, "active", "running")
	} else {
		d.sims.Nova.AddInstance(id, novaHost, "stopped", "shutdown")
	}
	d.instanceNode.Store(id, name)
}

func (d *demo) setHardware(p plannedNode, on bool) {
	if p.driver == redfish.Name {
		state := "Off"
		if on {
			state = "On"
		}
		d.redfish(p).SetPowerState(strconv.Itoa(p.index), state)
		return
	}
	d.sims.IPMI.BMCs()[p.index-1].SetPowerOn(on)
}

func (d *demo) hardwareOn(p plannedNode) bool {
	if p.driver == redfish.Name {
		return d.redfish(p).PowerState(strconv.Itoa(p.index)) == "On"
	}
	return d.sims.IPMI.BMCs()[p.index-1].PowerOn()
}

// redfish is the simulated Redfish service of p.
func (d *demo) redfish(p plannedNode) *redfishsim.Sim {
	if p.group == segmentGroup {
		return d.segment
	}
	return d.sims.Redfish
}

func (d *demo) dbPath() string { return filepath.Join(d.opts.DataDir, "metalpower.db") }

func (d *demo) dbURL() string {
	if d.opts.Cluster {
		return cluster.StoreURL(d.storeDB())
	}
	return "sqlite://" + d.dbPath()
}

// logNovaEvents appends every event the Nova simulator accepts to
// <data>/nova-events.log (one JSON object a line) and prints it.
func (d *demo) logNovaEvents(ctx context.Context) <-chan struct{} {
	done := make(chan struct{})
	path := filepath.Join(d.opts.DataDir, "nova-events.log")
	f, err := os.Create(path)
	if err != nil {
		d.printf("warning: cannot write %s: %v\n", path, err)
		close(done)
		return done
	}
	go func() {
		defer close(done)
		defer f.Close()
		seen := 0
		flush := func() {
			events := d.sims.Nova.Events()
			for _, e := range events[seen:] {
				name, _ := d.instanceNode.Load(e.ServerUUID)
				nodeName, _ := name.(string)
				b, _ := json.Marshal(map[string]any{
					"at": e.At.UTC().Format(time.RFC3339Nano), "name": e.Name, "server_uuid": e.ServerUUID,
					"node": nodeName, "tag": e.Tag, "code": e.Code, "status": e.Status,
				})
				f.Write(append(b, '\n'))
				d.printf("nova: %s %s for instance %s (node %s): %d %s\n", e.Name, e.Tag, e.ServerUUID, nodeName, e.Code, e.Status)
			}
			seen = len(events)
		}
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				flush()
				return
			case <-t.C:
				flush()
			}
		}
	}()
	return done
}

// config is the configuration the demo's worker and API run with.
func (d *demo) config() config.Config {
	cfg := config.Default()
	cfg.Database.URL = d.dbURL()
	cfg.Temporal.Address, cfg.Temporal.TaskQueue = hostPort(d.opts.TemporalPort), taskQueue
	cfg.Conductor.SyncPowerStateInterval, cfg.Conductor.PowerFailureRecoveryInterval = d.opts.SyncInterval, d.opts.RecoveryInterval
	d.sims.Configure(&cfg)
	return cfg
}

// childEnv is the children's environment: the caller's, without any
// METALPOWER_* setting (the demo runs on embedded defaults), plus the
// demo's.
func (d *demo) childEnv() []string {
	cfg := d.config()
	env := append(testbed.Env(cfg),
		"METALPOWER_API_HOST_IP=127.0.0.1",
		// Short periods, so the demo shows sync and recovery passes.
		"METALPOWER_CONDUCTOR_SYNC_POWER_STATE_INTERVAL="+strconv.Itoa(d.opts.SyncInterval),
		"METALPOWER_CONDUCTOR_POWER_FAILURE_RECOVERY_INTERVAL="+strconv.Itoa(d.opts.RecoveryInterval))
	env = append(env, d.keystoneEnv()...)
	return testbed.ChildEnv(append(env, d.novaEnv()...)...)
}

func (d *demo) start(name, logName, bin string, args ...string) (*child, error) {
	c, err := startChild(name, filepath.Join(d.opts.DataDir, logName), bin, args, d.childEnv())
	if err != nil {
		return nil, err
	}
	d.adopt(c)
	return c, nil
}

// adopt makes c one of the processes the demo watches and stops.
func (d *demo) adopt(c *child) {
	d.children = append(d.children, c)
	d.printf("started %s (pid %d, log %s)\n", c.name, c.pid(), c.log)
}

// stop ends the children in reverse order of start (API and worker before
// the server they talk to), then the simulators.
func (d *demo) stop() error {
	var errs []error
	for i := len(d.children) - 1; i >= 0; i-- {
		c := d.children[i]
		if err := c.stop(10 * time.Second); err != nil {
			errs = append(errs, err)
		}
		d.printf("stopped %s (pid %d)\n", c.name, c.pid())
	}
	if d.temporal != nil {
		d.temporal.Stop()
		d.printf("stopped the Temporal server\n")
		d.temporal = nil
	}
	if d.segment != nil {
		d.segment.Close()
		d.segment = nil
	}
	if d.sims != nil {
		d.sims.Close()
		d.sims = nil
	}
	return errors.Join(errs...)
}
