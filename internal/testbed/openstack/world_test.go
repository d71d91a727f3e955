package openstack_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/metalpower/metalpower/internal/api"
	"github.com/metalpower/metalpower/internal/bmc/ipmi"
	"github.com/metalpower/metalpower/internal/bmc/snmp"
	"github.com/metalpower/metalpower/internal/config"
	"github.com/metalpower/metalpower/internal/keystone"
	"github.com/metalpower/metalpower/internal/node"
	"github.com/metalpower/metalpower/internal/policy"
	"github.com/metalpower/metalpower/internal/testbed"
	"github.com/metalpower/metalpower/internal/testbed/itest"
	ks "github.com/metalpower/metalpower/internal/testbed/keystone"
	"github.com/metalpower/metalpower/internal/testbed/openstack"
	"github.com/metalpower/metalpower/internal/testbed/sim/openipmi"
	"github.com/metalpower/metalpower/internal/testbed/sim/pdusim"
)

var srv *itest.Server

func TestMain(m *testing.M) { os.Exit(itest.MustMain(m, &srv)) }

// Nova's periods in the scenario: its power sync every 10 s, and its node
// cache (which the sync reads) refreshed as often.
const novaSyncPeriod = 10 * time.Second

// pduCommunity is the read-write community of the world's PDU: a secret,
// checked absent from metalpower's log and every workflow history.
const pduCommunity = "pdu-rw-Secret-58"

// world is a real OpenStack with metalpower as its baremetal service:
// Keystone, Placement, Neutron, Glance and Nova from Debian; metalpower's
// API (Keystone auth, elevated service role for Nova's user) as the
// catalog's baremetal endpoint; its worker notifying the real nova-api;
// IPMI nodes on Debian's ipmi_sim, and PDU outlet nodes (driver snmp) on
// Debian's snmpd (addPDUNode).
type world struct {
	// t is the running step's test; root the scenario's, which owns what
	// outlives a step (the worker).
	t, root testing.TB
	k       *ks.Keystone
	cloud   *openstack.Cloud
	stack   *itest.Stack
	ipmi    *openipmi.Fleet
	api     string
	rec     *recorder
	bmcs    map[string]openipmi.BMC // by node name
	pdu     *pdusim.PDU             // started by the first addPDUNode
	outlets map[string]int          // PDU outlet by node name
	server  map[string]string       // server UUID by node name
	// expected are Nova's requests a step meant metalpower to refuse.
	expected []request
	// tokens are the Keystone tokens the test used, secrets all.
	tokens []string
}

// startWorld builds the world with an IPMI node per name, available and
// recorded as its BMC's power.
func startWorld(t testing.TB, names ...string) *world {
	t.Helper()
	w := &world{t: t, root: t, bmcs: map[string]openipmi.BMC{}, outlets: map[string]int{}, server: map[string]string{}}
	w.k = ks.Start(t)

	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	var err error
	w.ipmi, err = openipmi.Start(ctx, openipmi.Options{BMCs: len(names), Username: testbed.BMCUser, Password: testbed.IPMIPassword})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.ipmi.Close)

	w.stack = itest.NewStack(t, srv, itest.StackOptions{RedfishSystems: 1, IPMIBMCs: 1, Configure: func(cfg *config.Config) {
		// The real nova-api, found in Keystone's catalog; Nova's
		// os-server-external-events policy wants role admin.
		cfg.Nova = config.Nova{SendPowerNotifications: true, AuthURL: w.k.URL, Username: w.k.Nova.Name,
			Password: w.k.Nova.Password, ProjectName: w.k.ServiceProject, UserDomainName: "Default",
			ProjectDomainName: "Default", RegionName: "RegionOne", Interface: "internal"}
	}})
	v, err := keystone.FromConfig(config.KeystoneAuthtoken{AuthURL: w.k.URL, WWWAuthenticateURI: w.k.URL, AuthType: "password",
		Username: w.k.Metalpower.Name, Password: w.k.Metalpower.Password, ProjectName: w.k.ServiceProject,
		UserDomainName: "Default", ProjectDomainName: "Default", Interface: "internal",
		TokenCacheTime: 300, HTTPConnectTimeout: 5})
	if err != nil {
		t.Fatal(err)
	}
	// Nova's [ironic] user has role service in project service: with
	// rbac_service_role_elevated_access it acts on every node, as Ironic's
	// docs set a cloud up.
	w.rec = &recorder{auth: v}
	ts := httptest.NewServer(w.rec.wrap(w.stack.APIHandler(&api.Server{Auth: v,
		Policy: policy.Config{ServiceRoleElevatedAccess: true, ServiceProjectName: w.k.ServiceProject}})))
	t.Cleanup(ts.Close)
	w.api = ts.URL
	w.cloud = openstack.Start(t, w.k, openstack.Options{BaremetalURL: w.api,
		SyncPowerStateInterval: int(novaSyncPeriod.Seconds()), UpdateResourcesInterval: int(novaSyncPeriod.Seconds()), ShutdownTimeout: 10})

	for i, name := range names {
		b := w.ipmi.BMCs()[i]
		w.bmcs[name] = b
		power := node.PowerOff
		if got, err := b.Power(ctx); err != nil {
			t.Fatal(err)
		} else if got == "on" {
			power = node.PowerOn
		}
		n := node.New("", name, ipmi.Name, node.DriverInfo{"ipmi_address": b.Host, "ipmi_port": float64(b.Port),
			"ipmi_username": testbed.BMCUser, "ipmi_password": testbed.IPMIPassword})
		n.ProvisionState, n.PowerState = node.Available, power
		n.ResourceClass = "baremetal"
		n.Properties = map[string]any{"cpus": 1, "memory_mb": 1024, "local_gb": 10, "cpu_arch": "x86_64"}
		if err := w.stack.Store.Create(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	return w
}

// pduOutlets is how many outlets the world's PDU has.
const pduOutlets = 4

// addPDUNode adds a node on the next outlet of the world's PDU (Debian's
// snmpd as an APC rack PDU, started on first use): driver snmp, available
// and recorded as its outlet's power, as startWorld adds IPMI nodes.
func (w *world) addPDUNode(name string) {
	w.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if w.pdu == nil {
		p, err := pdusim.Start(ctx, pdusim.Options{Family: "apc_rackpdu", Outlets: pduOutlets, Community: pduCommunity})
		if err != nil {
			w.t.Fatal(err)
		}
		w.root.Cleanup(p.Close)
		w.pdu = p
	}
	outlet := len(w.outlets) + 1
	if outlet > pduOutlets {
		w.t.Fatalf("the PDU has %d outlets, all taken", pduOutlets)
	}
	w.outlets[name] = outlet
	power := node.PowerOff
	if on, err := w.pdu.Outlet(ctx, outlet); err != nil {
		w.t.Fatal(err)
	} else if on {
		power = node.PowerOn
	}
	n := node.New("", name, snmp.Name, node.DriverInfo{"snmp_driver": "apc_rackpdu", "snmp_address": w.pdu.Host(),
		"snmp_port": strconv.Itoa(w.pdu.Port()), "snmp_outlet": strconv.Itoa(outlet), "snmp_version": "2c",
		"snmp_community": pduCommunity})
	n.ProvisionState, n.PowerState = node.Available, power
	n.ResourceClass = "baremetal"
	n.Properties = map[string]any{"cpus": 1, "memory_mb": 1024, "local_gb": 10, "cpu_arch": "x86_64"}
	if err := w.stack.Store.Create(ctx, n); err != nil {
		w.t.Fatal(err)
	}
}

// power is what name's power controller says: its BMC through ipmitool,
// or its PDU outlet through snmpget; "on" or "off".
func (w *world) power(ctx context.Context, name string) (string, error) {
	if outlet, ok := w.outlets[name]; ok {
		on, err := w.pdu.Outlet(ctx, outlet)
		if err != nil {
			return "", err
		}
		if on {
			return "on", nil
		}
		return "off", nil
	}
	return w.bmcs[name].Power(ctx)
}

// powerOn switches name's machine on at its BMC or PDU outlet, behind
// metalpower's back.
func (w *world) powerOn(ctx context.Context, name string) error {
	if outlet, ok := w.outlets[name]; ok {
		return w.pdu.SetOutlet(ctx, outlet, true)
	}
	_, err := w.bmcs[name].Ipmitool(ctx, "chassis", "power", "on")
	return err
}

// deploy binds a new server to each named node, as a deployment would
// leave it: ACTIVE and running in Nova, active with the instance in
// metalpower, powered on at the BMC (or PDU outlet). One run of
// instance.py makes them all.
func (w *world) deploy(names ...string) {
	w.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var servers []openstack.Instance
	for _, name := range names {
		if err := w.powerOn(ctx, name); err != nil {
			w.t.Fatal(err)
		}
		servers = append(servers, openstack.Instance{Node: w.stack.Node(w.t, name).UUID, Name: "srv-" + name})
	}
	ids, err := w.cloud.CreateInstances(ctx, servers...)
	if err != nil {
		w.t.Fatal(err)
	}
	for i, name := range names {
		id := ids[i]
		w.server[name] = id
		w.stack.Modify(w.t, name, func(n *node.Node) {
			n.ProvisionState, n.InstanceUUID, n.PowerState = node.Active, id, node.PowerOn
		})
	}
}

// openstackCLI runs `openstack` as the cloud's admin.
func (w *world) openstackCLI(args ...string) string {
	w.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := w.k.OpenStack(ctx, args...)
	if err != nil {
		w.t.Fatal(err)
	}
	return out
}

// baremetal runs the `baremetal` CLI as the system admin, finding
// metalpower in the catalog.
func (w *world) baremetal(args ...string) string {
	w.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "baremetal", args...)
	var env []string
	for _, kv := range w.k.AdminEnv() {
		if !strings.HasPrefix(kv, "OS_PROJECT_") {
			env = append(env, kv)
		}
	}
	cmd.Env = append(env, "OS_SYSTEM_SCOPE=all", "OS_AUTH_TYPE=password", "OS_INTERFACE=public", "OS_REGION_NAME=RegionOne")
	out, err := cmd.CombinedOutput()
	if err != nil {
		w.t.Fatalf("baremetal %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// sides is the power of a node's server as each side sees it.
type sides struct {
	novaStatus string // ACTIVE, SHUTOFF, ...
	novaPower  int    // Nova's power_state: 1 running, 4 shutdown
	novaTask   string
	metalpower string // power on / power off
	bmc        string // on / off (ipmitool, or snmpget of a PDU outlet)
}

func (s sides) String() string {
	return fmt.Sprintf("nova %s/power_state %d/task %q, metalpower %q, BMC %q", s.novaStatus, s.novaPower, s.novaTask, s.metalpower, s.bmc)
}

// agree reports whether every side says on (or off), nothing pending.
func (s sides) agree(on bool) bool {
	if on {
		return s.novaStatus == "ACTIVE" && s.novaPower == openstack.Running && s.novaTask == "" &&
			s.metalpower == node.PowerOn && s.bmc == "on"
	}
	return s.novaStatus == "SHUTOFF" && s.novaPower == openstack.Shutdown && s.novaTask == "" &&
		s.metalpower == node.PowerOff && s.bmc == "off"
}

func (w *world) sides(name string) sides {
	w.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	srv, err := w.cloud.Server(ctx, w.server[name])
	if err != nil {
		w.t.Fatal(err)
	}
	bmc, err := w.power(ctx, name)
	if err != nil {
		w.t.Fatal(err)
	}
	n := w.stack.Node(w.t, name)
	mp := n.PowerState
	if n.TargetPowerState != "" {
		mp += " -> " + n.TargetPowerState
	}
	return sides{novaStatus: srv.Status, novaPower: srv.PowerState, novaTask: srv.TaskState, metalpower: mp, bmc: bmc}
}

// waitAgree waits until all three sides agree on the power of name's
// server, and returns how long that took.
func (w *world) waitAgree(name string, on bool, timeout time.Duration, what string) time.Duration {
	w.t.Helper()
	start := time.Now()
	var last sides
	for time.Since(start) < timeout {
		if last = w.sides(name); last.agree(on) {
			return time.Since(start)
		}
		time.Sleep(300 * time.Millisecond)
	}
	w.t.Fatalf("%s: after %v the sides still disagree: %s\nnova-compute:\n%s\nrequests:\n%s", what, timeout, last, w.cloud.Log("nova-compute"), w.rec.timeline(start.Add(-time.Minute)))
	return 0
}

// holds checks for d that Nova never undoes the power of name's server:
// it never asks metalpower for the opposite power, and the server keeps
// its status (ACTIVE or SHUTOFF) while metalpower and the BMC keep the
// power. Two things of Nova's node cache are allowed, as harmless
// (docs/openstack.md): its power_state may lag by a refresh, and on a
// stale "running" it may stop an already stopped server once more.
// At the end all sides must agree fully within two of its periods.
func (w *world) holds(name string, on bool, d time.Duration, what string) {
	w.t.Helper()
	status, power, bmc, opposite := "SHUTOFF", node.PowerOff, "off", []string{node.PowerOn, node.Reboot, node.SoftReboot}
	if on {
		status, power, bmc, opposite = "ACTIVE", node.PowerOn, "on", []string{node.PowerOff, node.SoftPowerOff, node.Reboot, node.SoftReboot}
	}
	since, uuid := time.Now(), w.stack.Node(w.t, name).UUID
	lagged, restops := 0, 0
	for end := since.Add(d); time.Now().Before(end); time.Sleep(time.Second) {
		s := w.sides(name)
		if s.novaStatus != status || s.metalpower != power || s.bmc != bmc {
			w.t.Fatalf("%s: %s", what, s)
		}
		switch {
		case s.novaTask == "powering-off" && !on:
			restops++
		case s.novaTask != "":
			w.t.Fatalf("%s: Nova acts on the server: %s", what, s)
		case !s.agree(on):
			lagged++
		}
	}
	for _, target := range opposite {
		if reqs := w.rec.find(func(r request) bool { return r.at.After(since) && r.nova() && r.powerPut(uuid, target) }); len(reqs) > 0 {
			w.t.Fatalf("%s: Nova asked metalpower for %q: %v", what, target, reqs)
		}
	}
	if lagged+restops > 0 {
		w.t.Logf("%s: of %v's checks, Nova's power_state lagged in %d and it stopped the stopped server again in %d (its node cache)", what, d, lagged, restops)
	}
	w.waitAgree(name, on, 2*novaSyncPeriod+5*time.Second, what)
}

// restartWorker restarts metalpower's worker with a changed
// configuration; it runs until the scenario ends.
func (w *world) restartWorker(change func(*config.Config)) {
	w.stack.RestartWorker(w.root, change)
}

// adminToken is a system-scoped token of Keystone's admin.
func (w *world) adminToken(ctx context.Context) string {
	w.t.Helper()
	token, err := w.k.Token(ctx, ks.User{Name: "admin", Password: w.k.AdminPassword}, "")
	if err != nil {
		w.t.Fatal(err)
	}
	w.tokens = append(w.tokens, token)
	return token
}

// put sends one request to metalpower's API with token and returns
// its status.
func (w *world) put(ctx context.Context, token, path, body string) int {
	req, _ := http.NewRequestWithContext(ctx, http.MethodPut, w.api+path, strings.NewReader(body))
	req.Header.Set("X-Auth-Token", token)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-OpenStack-Ironic-API-Version", "1.95")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// notifyAttempts is the attempt at which metalpower's latest
// power-update event for name's server reached Nova: its notifier
// workflow's local activity marker records it.
func (w *world) notifyAttempts(ctx context.Context, name string) int {
	w.t.Helper()
	id := "nova-notify/" + w.server[name]
	if err := w.stack.Client.GetWorkflow(ctx, id, "").Get(ctx, nil); err != nil {
		w.t.Fatalf("notifier %s: %v", id, err)
	}
	attempt := 0
	for _, m := range attemptRE.FindAllStringSubmatch(itest.History(w.t, w.stack, id), -1) {
		n, _ := strconv.Atoi(m[1])
		attempt = max(attempt, n)
	}
	return attempt
}

// attemptRE finds a local activity marker's attempt in a history's text.
var attemptRE = regexp.MustCompile(`\\"Attempt\\":(\d+)`)

// waitRefresh waits until nova-compute has refreshed its node cache (a
// node list by Nova's user) n times from now: Nova's sync reads the
// cache, so a test that changes power through Nova waits for one before
// asserting what Nova's sync does next.
func (w *world) waitRefresh(n int) {
	w.t.Helper()
	since := time.Now()
	deadline := since.Add(time.Duration(n+2) * novaSyncPeriod * 2)
	for w.rec.count(func(r request) bool { return r.at.After(since) && r.nova() && r.cacheRefresh() }) < n {
		if time.Now().After(deadline) {
			w.t.Fatalf("nova-compute listed no nodes in %v\n%s", time.Since(since), w.cloud.Log("nova-compute"))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// request is one API request as the recorder saw it.
type request struct {
	at     time.Time
	user   string
	method string
	path   string
	query  string
	body   string
	status int
}

func (r request) String() string {
	return fmt.Sprintf("%s %s %s %s?%s %s -> %d", r.at.Format("15:04:05.000"), r.user, r.method, r.path, r.query, r.body, r.status)
}

// nova reports whether nova-compute's ironic driver made the request.
func (r request) nova() bool { return r.user == novaIronicUser }

// cacheRefresh reports whether the request is nova-compute's refresh of
// its node cache: a list of every node with their power states (not a
// lookup by instance_uuid, nor the associated=True list).
func (r request) cacheRefresh() bool {
	return r.method == http.MethodGet && (r.path == "/v1/nodes" || r.path == "/v1/nodes/detail") &&
		strings.Contains(r.query, "power_state") && !strings.Contains(r.query, "instance_uuid=")
}

// powerPut reports whether the request asked for power target on the
// node with UUID or name ident.
func (r request) powerPut(ident, target string) bool {
	return r.method == http.MethodPut && r.path == "/v1/nodes/"+ident+"/states/power" &&
		strings.Contains(r.body, `"`+target+`"`)
}

// novaIronicUser is the user of nova-compute's [ironic] section
// (openstack.Cloud.Ironic).
const novaIronicUser = "nova-ironic"

// recorder keeps every API request with its caller and answer.
type recorder struct {
	auth *keystone.Validator
	mu   sync.Mutex
	reqs []request
	// before, when set, sees each request before metalpower answers it.
	before func(request)
}

func (rec *recorder) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<16))
		r.Body = io.NopCloser(bytes.NewReader(body))
		creds, _ := rec.auth.Authenticate(r)
		req := request{user: creds.UserName, method: r.Method, path: r.URL.Path, query: r.URL.RawQuery, body: string(body)}
		rec.mu.Lock()
		before := rec.before
		rec.mu.Unlock()
		if before != nil {
			before(req)
		}
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		h.ServeHTTP(sw, r)
		req.at, req.status = time.Now(), sw.status
		rec.mu.Lock()
		rec.reqs = append(rec.reqs, req)
		rec.mu.Unlock()
	})
}

func (rec *recorder) count(match func(request) bool) int {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	n := 0
	for _, r := range rec.reqs {
		if match(r) {
			n++
		}
	}
	return n
}

func (rec *recorder) find(match func(request) bool) []request {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	var out []request
	for _, r := range rec.reqs {
		if match(r) {
			out = append(out, r)
		}
	}
	return out
}

// timeline lists the requests since t but the tests' own reads, for
// failure messages.
func (rec *recorder) timeline(t time.Time) string {
	var b strings.Builder
	for _, r := range rec.find(func(r request) bool { return r.at.After(t) }) {
		b.WriteString(r.String())
		b.WriteByte('\n')
	}
	return b.String()
}

func (rec *recorder) setBefore(fn func(request)) {
	rec.mu.Lock()
	rec.before = fn
	rec.mu.Unlock()
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (s *statusWriter) WriteHeader(code int) {
	s.status = code
	s.ResponseWriter.WriteHeader(code)
}
