package openstack_test

import (
	"context"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/metalpower/metalpower/internal/config"
	"github.com/metalpower/metalpower/internal/node"
	"github.com/metalpower/metalpower/internal/testbed"
	"github.com/metalpower/metalpower/internal/testbed/itest"
)

// TestSeedScenario is the seed's scenario inside a real OpenStack: real
// nova-api, nova-conductor and nova-compute (ironic driver, its power sync
// every 10 s) drive metalpower through Keystone's catalog and hear its
// power-update events, and all three sides (Nova, metalpower, the BMC as
// ipmitool reads it, or the PDU outlet as snmpget reads it) end in
// agreement. Its steps share one cloud and run in order; each says what
// it proves.
func TestSeedScenario(t *testing.T) {
	w := startWorld(t, "os-a", "os-b", "os-free")
	w.addPDUNode("os-pdu")

	t.Run("1 resource tracker finds every available node", func(t *testing.T) {
		w.t = t
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		for _, name := range []string{"os-a", "os-b", "os-free", "os-pdu"} {
			uuid := w.stack.Node(t, name).UUID
			for {
				inv, err := w.cloud.Inventory(ctx, uuid)
				if err == nil && inv["CUSTOM_BAREMETAL"] == 1 {
					break
				}
				if ctx.Err() != nil {
					t.Fatalf("no CUSTOM_BAREMETAL inventory for %s in Placement: %v %v\n%s", name, inv, err, w.cloud.Log("nova-compute"))
				}
				time.Sleep(time.Second)
			}
		}
		hypervisors := w.openstackCLI("hypervisor", "list", "-f", "value", "-c", "Hypervisor Hostname")
		for _, name := range []string{"os-a", "os-b", "os-free", "os-pdu"} {
			if !strings.Contains(hypervisors, w.stack.Node(t, name).UUID) {
				t.Errorf("openstack hypervisor list lacks %s:\n%s", name, hypervisors)
			}
		}
	})

	w.deploy("os-a", "os-b", "os-pdu")

	t.Run("2 server stop, start and hard reboot reach the BMC", func(t *testing.T) {
		w.t = t
		w.waitAgree("os-a", true, time.Minute, "a new server")
		w.openstackCLI("server", "stop", w.server["os-a"])
		t.Logf("stop: all sides off in %v", w.waitAgree("os-a", false, 2*time.Minute, "openstack server stop"))
		w.openstackCLI("server", "start", w.server["os-a"])
		t.Logf("start: all sides on in %v", w.waitAgree("os-a", true, 2*time.Minute, "openstack server start"))
		since := time.Now()
		uuid := w.stack.Node(t, "os-a").UUID
		w.openstackCLI("server", "reboot", "--hard", w.server["os-a"])
		waitFor(t, 2*time.Minute, "Nova's reboot to reach metalpower", func() bool {
			return w.rec.count(func(r request) bool {
				return r.at.After(since) && r.nova() && r.powerPut(uuid, node.Reboot) && r.status == http.StatusAccepted
			}) == 1
		})
		t.Logf("reboot --hard: all sides on in %v", w.waitAgree("os-a", true, 2*time.Minute, "openstack server reboot --hard"))
	})

	// pduOn is when step 2b powered the PDU node's server on through
	// metalpower; from then on Nova must leave it alone (step 3b).
	var pduOn time.Time

	t.Run("2b a server on a PDU outlet (snmp): Nova's stop, a power on through metalpower, drift at the PDU", func(t *testing.T) {
		w.t = t
		ctx := context.Background()
		uuid, outlet := w.stack.Node(t, "os-pdu").UUID, w.outlets["os-pdu"]
		w.waitAgree("os-pdu", true, time.Minute, "the PDU node's new server")

		// Nova's stop reaches the outlet. A PDU has no soft power off:
		// Nova's first ask (its shutdown_timeout) is refused with 400, as
		// Ironic's snmp interface refuses it, and Nova powers off hard.
		since := time.Now()
		w.openstackCLI("server", "stop", w.server["os-pdu"])
		t.Logf("openstack server stop: outlet off (snmpget) and Nova SHUTOFF in %v", w.waitAgree("os-pdu", false, 2*time.Minute, "openstack server stop of the PDU node's server"))
		if hard := w.rec.count(func(r request) bool {
			return r.at.After(since) && r.nova() && r.powerPut(uuid, node.PowerOff) && r.status == http.StatusAccepted
		}); hard == 0 {
			t.Fatalf("Nova never asked metalpower for power off:\n%s", w.rec.timeline(since))
		}

		// A power on through metalpower: its power-update event makes the
		// server ACTIVE and running in Nova. Past Nova's stale-cache
		// window first, as step 3: a stop of Nova's sync in that window
		// asks for soft power off again.
		w.waitRefresh(2)
		soft := w.rec.find(func(r request) bool { return r.at.After(since) && r.nova() && r.powerPut(uuid, node.SoftPowerOff) })
		for _, r := range soft {
			if r.status != http.StatusBadRequest {
				t.Errorf("Nova's soft power off of the PDU node: %s, want 400", r)
			}
		}
		if len(soft) == 0 {
			t.Errorf("Nova's stop never asked for soft power off (shutdown_timeout is set):\n%s", w.rec.timeline(since))
		}
		w.expectConflicts(soft...)
		t.Logf("Nova asked for soft power off %d time(s), refused with 400 (a PDU has none), and powered off hard", len(soft))
		pduOn = time.Now()
		w.baremetal("node", "power", "on", "os-pdu")
		t.Logf("baremetal node power on: outlet on and Nova shows the server running in %v", w.waitAgree("os-pdu", true, time.Minute, "power on through metalpower"))

		// Drift at the PDU with force_power_state_during_sync = true (the
		// scenario's setting until step 4): metalpower switches the
		// outlet back on before Nova's sync can see it off, as step 4
		// with force on. Drift right after Nova refreshed its cache. That
		// Nova never acts on it step 3b checks, once step 3 has let many
		// of Nova's periods pass.
		if !w.stack.Config.Conductor.ForcePowerStateDuringSync {
			t.Fatal("force_power_state_during_sync is off: this step assumes the scenario's default, on")
		}
		w.waitRefresh(1)
		if err := w.pdu.SetOutlet(ctx, outlet, false); err != nil {
			t.Fatal(err)
		}
		res := w.stack.SyncPass(t)
		if on, err := w.pdu.Outlet(ctx, outlet); err != nil || !on {
			t.Fatalf("after the sync with force on, snmpget reads the outlet on=%v (%v); sync pass %+v", on, err, res.SyncCounts)
		}
		// Nova's power_state may still lag metalpower's power on by a
		// refresh (docs/openstack.md); step 3b waits for full agreement.
		if got := w.sides("os-pdu"); got.novaStatus != "ACTIVE" || got.novaTask != "" || got.metalpower != node.PowerOn || got.bmc != "on" {
			t.Fatalf("after the sync with force on: %s", got)
		}
		t.Logf("drift at the PDU: the sync switched the outlet back on, the server stayed ACTIVE (sync pass %+v)", res.SyncCounts)
	})

	t.Run("3 a power change through metalpower holds against Nova's sync", func(t *testing.T) {
		w.t = t
		w.openstackCLI("server", "stop", w.server["os-a"])
		w.waitAgree("os-a", false, 2*time.Minute, "openstack server stop")
		// Nova's sync reads a node cache its resource tracker refreshes;
		// the sync that races the first refresh after Nova's stop may still
		// read "running" and stop the server again, undoing a power on made
		// meanwhile (docs/openstack.md). Past the second refresh that
		// window is closed.
		w.waitRefresh(2)
		w.baremetal("node", "power", "on", "os-a")
		t.Logf("baremetal node power on: Nova shows the server running in %v", w.waitAgree("os-a", true, 30*time.Second, "power on through metalpower"))
		w.holds("os-a", true, 3*novaSyncPeriod+5*time.Second, "three of Nova's sync periods after a power on through metalpower")

		w.baremetal("node", "power", "off", "os-a")
		t.Logf("baremetal node power off: Nova shows the server shut off in %v", w.waitAgree("os-a", false, 30*time.Second, "power off through metalpower"))
		w.holds("os-a", false, 3*novaSyncPeriod+5*time.Second, "three of Nova's sync periods after a power off through metalpower")
		w.noNovaErrors(t)
	})

	t.Run("3b Nova left the PDU node's server alone after its power on and drift", func(t *testing.T) {
		w.t = t
		if pduOn.IsZero() {
			t.Skip("step 2b did not power the PDU node on")
		}
		// Step 3 let Nova's cache refresh and sync run many times (it
		// never touches os-pdu); at least three of their periods must
		// have passed since the power on (the drift came a refresh
		// later), or the rest of them is held here.
		if rest := 3*novaSyncPeriod - time.Since(pduOn); rest > 0 {
			w.holds("os-pdu", true, rest, "Nova's periods after drift at the PDU with force on")
		}
		uuid := w.stack.Node(t, "os-pdu").UUID
		if reqs := w.rec.find(func(r request) bool {
			return r.at.After(pduOn) && r.nova() && r.method == http.MethodPut && strings.HasPrefix(r.path, "/v1/nodes/"+uuid)
		}); len(reqs) > 0 {
			t.Errorf("Nova acted on the PDU node after its power on through metalpower and its drift: %v", reqs)
		}
		t.Logf("%v after metalpower's power on, all sides on in %v", time.Since(pduOn).Round(time.Second),
			w.waitAgree("os-pdu", true, time.Minute, "the PDU node's server after step 3"))
	})

	t.Run("4 drift at the BMC", func(t *testing.T) {
		w.t = t
		ctx := context.Background()
		w.waitAgree("os-b", true, time.Minute, "os-b's server")

		// force_power_state_during_sync = false: metalpower records the
		// BMC's state and tells Nova.
		w.restartWorker(func(cfg *config.Config) { cfg.Conductor.ForcePowerStateDuringSync = false })
		if _, err := w.bmcs["os-b"].Ipmitool(ctx, "chassis", "power", "off"); err != nil {
			t.Fatal(err)
		}
		w.stack.SyncPass(t)
		t.Logf("drift recorded: Nova shows the server shut off in %v", w.waitAgree("os-b", false, 30*time.Second, "drift with force off"))

		// Nova's sync may stop the server once more on a stale cache
		// (docs/openstack.md): let it, before asking Nova anything.
		w.waitRefresh(2)
		w.openstackCLI("server", "start", w.server["os-b"])
		w.waitAgree("os-b", true, 2*time.Minute, "openstack server start")

		// true: metalpower powers the node back on before Nova's sync can
		// see it off. Drift right after Nova refreshed its cache, so its
		// sync reads the cache until metalpower has put it right.
		w.restartWorker(func(cfg *config.Config) { cfg.Conductor.ForcePowerStateDuringSync = true })
		w.waitRefresh(1)
		since := time.Now()
		if _, err := w.bmcs["os-b"].Ipmitool(ctx, "chassis", "power", "off"); err != nil {
			t.Fatal(err)
		}
		w.stack.SyncPass(t)
		if got, _ := w.bmcs["os-b"].Power(ctx); got != "on" {
			t.Fatalf("after the sync with force on, ipmitool says %q", got)
		}
		w.holds("os-b", true, 3*novaSyncPeriod, "Nova's periods after drift with force on")
		uuid := w.stack.Node(t, "os-b").UUID
		if reqs := w.rec.find(func(r request) bool {
			return r.at.After(since) && r.nova() && r.method == http.MethodPut && strings.HasPrefix(r.path, "/v1/nodes/"+uuid)
		}); len(reqs) > 0 {
			t.Errorf("Nova acted on the drifted node: %v", reqs)
		}
	})

	t.Run("5 without power notifications Nova's sync forces the node back", func(t *testing.T) {
		w.t = t
		w.restartWorker(func(cfg *config.Config) { cfg.Nova.SendPowerNotifications = false })
		defer w.restartWorker(func(cfg *config.Config) { cfg.Nova.SendPowerNotifications = true })
		w.waitAgree("os-a", false, time.Minute, "os-a's server, stopped in step 3")
		w.waitRefresh(2)
		since := time.Now()
		uuid := w.stack.Node(t, "os-a").UUID
		w.baremetal("node", "power", "on", "os-a")
		waitFor(t, 4*novaSyncPeriod+30*time.Second, "Nova's sync to force the node off", func() bool {
			return w.rec.count(func(r request) bool {
				return r.at.After(since) && r.nova() && r.method == http.MethodPut && r.path == "/v1/nodes/"+uuid+"/states/power" &&
					!strings.Contains(r.body, `"power on"`)
			}) > 0
		})
		t.Logf("Nova's own sync powered the node off %v after metalpower powered it on", time.Since(since).Round(time.Second))
		w.waitAgree("os-a", false, time.Minute, "after Nova's sync forced the node off")
	})

	t.Run("6a nova-api down during a power change: metalpower retries the event", func(t *testing.T) {
		w.t = t
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		w.waitAgree("os-b", true, time.Minute, "os-b's server")
		w.cloud.StopNovaAPI()
		w.baremetal("node", "power", "off", "os-b")
		waitFor(t, time.Minute, "metalpower to power os-b off", func() bool {
			n := w.stack.Node(t, "os-b")
			return n.PowerState == node.PowerOff && n.TargetPowerState == ""
		})
		// The notifier retries at 1, 2 and 4 s: let it fail a few times.
		time.Sleep(5 * time.Second)
		if err := w.cloud.StartNovaAPI(ctx); err != nil {
			t.Fatal(err)
		}
		w.waitAgree("os-b", false, 2*time.Minute, "nova-api back")
		attempts := w.notifyAttempts(ctx, "os-b")
		if attempts < 2 {
			t.Errorf("the power-update event was delivered at attempt %d: nova-api's outage was never retried", attempts)
		}
		t.Logf("the event reached nova-api at attempt %d", attempts)
	})

	t.Run("6b RabbitMQ restarted", func(t *testing.T) {
		w.t = t
		restartRabbitMQ(t)
		w.waitRefresh(2)
		w.openstackCLI("server", "start", w.server["os-b"])
		t.Logf("server start after RabbitMQ's restart: all sides on in %v", w.waitAgree("os-b", true, 3*time.Minute, "server start after RabbitMQ's restart"))
	})

	t.Run("6c Nova and metalpower's API change one node at once", func(t *testing.T) {
		w.t = t
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		w.waitRefresh(2)
		token := w.adminToken(ctx)
		uuid, server := w.stack.Node(t, "os-b").UUID, w.server["os-b"]
		// As Nova's request to stop the node arrives, an operator's power
		// off through metalpower's API lands first: Nova's finds the node
		// held by that change.
		mine := make(chan int, 1)
		since := time.Now()
		w.rec.setBefore(func(r request) {
			if r.nova() && r.method == http.MethodPut && r.path == "/v1/nodes/"+uuid+"/states/power" {
				w.rec.setBefore(nil)
				mine <- w.put(ctx, token, "/v1/nodes/os-b/states/power", `{"target": "power off"}`)
			}
		})
		defer w.rec.setBefore(nil)
		w.openstackCLI("server", "stop", server)
		if got := <-mine; got != http.StatusAccepted {
			t.Fatalf("metalpower's power off: %d, want 202", got)
		}
		w.waitAgree("os-b", false, 2*time.Minute, "Nova's stop and metalpower's power off at once")
		refused := w.rec.find(func(r request) bool {
			return r.at.After(since) && r.nova() && r.method == http.MethodPut && r.path == "/v1/nodes/"+uuid+"/states/power" && r.status == http.StatusConflict
		})
		retried := w.rec.find(func(r request) bool {
			return r.at.After(since) && r.nova() && r.method == http.MethodPut && r.path == "/v1/nodes/"+uuid+"/states/power" && r.status == http.StatusAccepted
		})
		if len(refused) == 0 || len(retried) == 0 {
			t.Fatalf("want Nova's request refused with 409, then retried and accepted; got:\n%s", w.rec.timeline(since))
		}
		t.Logf("Nova's driver was refused %d time(s) with 409 and retried", len(refused))
		w.expectConflicts(refused...)
	})

	t.Run("no secret in metalpower's log or histories", func(t *testing.T) {
		w.t = t
		secrets := []string{w.k.AdminPassword, w.k.Nova.Password, w.k.Metalpower.Password, w.cloud.Ironic.Password, testbed.IPMIPassword, pduCommunity}
		secrets = append(secrets, w.tokens...)
		log := w.stack.Log.String()
		for _, s := range secrets {
			if strings.Contains(log, s) {
				t.Errorf("metalpower's log holds a secret (%.4s…)", s)
			}
		}
		if err := itest.ScanHistoriesForSecrets(srv, secrets...); err != nil {
			t.Error(err)
		}
	})

	t.Run("Nova's driver met no error", func(t *testing.T) {
		w.t = t
		w.noNovaErrors(t)
		// nova-compute logs RabbitMQ's restart (6b) as errors, tracebacks
		// through the ironic driver's periodic tasks included; what the
		// driver itself logs, or an error of the clients it talks to
		// metalpower and the catalog with, would be metalpower's.
		log, err := os.ReadFile(w.cloud.LogFile("nova-compute"))
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(log), "\n") {
			if strings.Contains(line, " ERROR ") && (strings.Contains(line, " ERROR nova.virt.ironic") ||
				strings.Contains(line, "ironicclient") || strings.Contains(line, "keystoneauth1.exceptions")) {
				t.Errorf("nova-compute's ironic driver met an error: %s", line)
			}
		}
	})
}

// noNovaErrors fails the test for any request of Nova's driver that
// metalpower answered with an error, but the conflicts a step expected.
func (w *world) noNovaErrors(t *testing.T) {
	t.Helper()
	for _, r := range w.rec.find(func(r request) bool { return r.nova() && r.status >= 400 }) {
		if !slices.Contains(w.expected, r) {
			t.Errorf("metalpower refused Nova's driver: %s", r)
		}
	}
}

// expectConflicts marks requests refused on purpose.
func (w *world) expectConflicts(reqs ...request) { w.expected = append(w.expected, reqs...) }

// restartRabbitMQ restarts the machine's RabbitMQ as its operator would
// (rabbitmqctl stop, rabbitmq-server -detached) and waits until it serves.
func restartRabbitMQ(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for _, cmd := range [][]string{{"rabbitmqctl", "stop"}, {"rabbitmq-server", "-detached"}} {
		if out, err := exec.CommandContext(ctx, cmd[0], cmd[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(cmd, " "), err, out)
		}
	}
	// await_startup fails at once until the new node has registered.
	for {
		out, err := exec.CommandContext(ctx, "rabbitmqctl", "await_startup", "--timeout", "10").CombinedOutput()
		if err == nil {
			return
		}
		if ctx.Err() != nil {
			t.Fatalf("RabbitMQ did not start again: %v\n%s", err, out)
		}
		time.Sleep(time.Second)
	}
}

func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
