package snmp_test

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/metalpower/metalpower/internal/config"
	"github.com/metalpower/metalpower/internal/node"
	"github.com/metalpower/metalpower/internal/testbed/baremetal"
	"github.com/metalpower/metalpower/internal/testbed/itest"
	"github.com/metalpower/metalpower/internal/testbed/sim/pdusim"
)

// community is the PDU's read-write community: a secret, checked absent
// from every workflow history once the tests end, and from the API's log.
const community = "pdu-rw-Secret-31"

var srv *itest.Server

func TestMain(m *testing.M) {
	os.Exit(itest.MustMain(m, &srv, func() error {
		return itest.ScanHistoriesForSecrets(srv, community, "wrong-Secret-77")
	}))
}

// waitPower polls `baremetal node show` until no change is in progress,
// and returns the node's power_state and last_error.
func waitPower(t *testing.T, cli *baremetal.CLI, name string) (power, lastError string) {
	t.Helper()
	var got map[string]any
	itest.WaitFor(t, 60*time.Second, "target_power_state to be null", func() bool {
		got = cli.Show(name, "power_state", "target_power_state", "last_error")
		return got["target_power_state"] == nil
	})
	power, _ = got["power_state"].(string)
	lastError, _ = got["last_error"].(string)
	return power, lastError
}

func driverInfo(p *pdusim.PDU, family string, outlet int, community string) []string {
	var args []string
	for _, kv := range []string{"snmp_driver=" + family, "snmp_address=" + p.Host(), "snmp_port=" + strconv.Itoa(p.Port()),
		"snmp_outlet=" + strconv.Itoa(outlet), "snmp_version=2c", "snmp_community=" + community} {
		args = append(args, "--driver-info", kv)
	}
	return args
}

// TestSNMPNodeLifecycle: a node on a PDU outlet through Ironic's own CLI
// and metalpower's API, on Debian's snmpd: enroll, manage, power off, on
// and reboot, a drifted outlet the sync finds (forced back, then
// recorded), Nova told of each change.
func TestSNMPNodeLifecycle(t *testing.T) {
	s := itest.NewStack(t, srv, itest.StackOptions{RedfishSystems: 1, IPMIBMCs: 1})
	p := startPDU(t, pdusim.Options{Family: "apc_rackpdu", Outlets: 4, Community: community})
	cli := baremetal.New(t, s.StartAPI(t, nil), "1.95")
	ctx := context.Background()

	// Enroll: the community is stored, and shown masked.
	var created map[string]any
	cli.JSON(&created, append([]string{"node", "create", "--driver", "snmp", "--name", "pdu-node"}, driverInfo(p, "apc_rackpdu", 2, community)...)...)
	info, _ := created["driver_info"].(map[string]any)
	if created["provision_state"] != node.Enroll || info["snmp_community"] != node.Masked || fmt.Sprint(info["snmp_outlet"]) != "2" {
		t.Fatalf("node create printed %v", created)
	}
	cli.Fails("SNMPPowerDriver: unknown driver: 'acme'", append([]string{"node", "create", "--driver", "snmp", "--name", "bad"}, driverInfo(p, "acme", 2, community)...)...)

	// Manage reads the outlet.
	cli.OK("node", "manage", "pdu-node", "--wait", "30")
	if power, lastErr := waitPower(t, cli, "pdu-node"); power != node.PowerOn || lastErr != "" {
		t.Fatalf("after manage: power %q, last_error %q", power, lastErr)
	}
	const instance = "5a5a5a5a-1111-4222-8333-444455556666"
	s.Nova.AddInstance(instance, "compute-1", "active", "running")
	cli.OK("node", "set", "pdu-node", "--instance-uuid", instance)

	steps := []struct {
		args  []string
		on    bool
		tag   string
		power string
	}{
		{[]string{"node", "power", "off", "pdu-node"}, false, "POWER_OFF", node.PowerOff},
		{[]string{"node", "power", "on", "pdu-node"}, true, "POWER_ON", node.PowerOn},
		{[]string{"node", "reboot", "pdu-node"}, true, "POWER_ON", node.PowerOn},
	}
	var tags []string
	for _, step := range steps {
		cli.OK(step.args...)
		if power, lastErr := waitPower(t, cli, "pdu-node"); power != step.power || lastErr != "" {
			t.Fatalf("after %v: power %q, last_error %q", step.args, power, lastErr)
		}
		wantOutlet(t, p, 2, step.on)
		tags = append(tags, step.tag)
		itest.WaitFor(t, 30*time.Second, "Nova's power-update", func() bool { return len(s.NovaTags(instance)) == len(tags) })
	}
	if got := s.NovaTags(instance); !slices.Equal(got, tags) {
		t.Fatalf("Nova events = %v, want %v", got, tags)
	}
	// The reboot switched the outlet off, then on.
	sets, err := p.Sets()
	if err != nil {
		t.Fatal(err)
	}
	if len(sets) != 4 {
		t.Fatalf("%d SETs reached the PDU, want 4 (off, on, off, on): %+v", len(sets), sets)
	}
	// A PDU has no soft actions: refused before anything is sent.
	cli.Fails("The driver snmp does not support the power state, soft power off", "node", "power", "off", "--soft", "pdu-node")

	// Someone switches the outlet off at the PDU: the sync forces the
	// recorded state back.
	if err := p.SetOutlet(ctx, 2, false); err != nil {
		t.Fatal(err)
	}
	if res := s.SyncPass(t); res.Corrected != 1 {
		t.Fatalf("sync pass = %+v, want one node corrected", res.SyncCounts)
	}
	wantOutlet(t, p, 2, true)
	tags = append(tags, "POWER_ON")
	itest.WaitFor(t, 30*time.Second, "Nova's power-update", func() bool { return len(s.NovaTags(instance)) == len(tags) })

	// Without force_power_state_during_sync, the sync records the
	// drifted outlet and tells Nova.
	s.RestartWorker(t, func(c *config.Config) { c.Conductor.ForcePowerStateDuringSync = false })
	if err := p.SetOutlet(ctx, 2, false); err != nil {
		t.Fatal(err)
	}
	if res := s.SyncPass(t); res.Corrected != 1 {
		t.Fatalf("sync pass = %+v, want one node corrected", res.SyncCounts)
	}
	if power, _ := waitPower(t, cli, "pdu-node"); power != node.PowerOff {
		t.Fatalf("after the sync: power %q, want the outlet's power off", power)
	}
	wantOutlet(t, p, 2, false)
	tags = append(tags, "POWER_OFF")
	itest.WaitFor(t, 30*time.Second, "Nova's power-update", func() bool { return len(s.NovaTags(instance)) == len(tags) })
	if got := s.NovaTags(instance); !slices.Equal(got, tags) {
		t.Fatalf("Nova events = %v, want %v", got, tags)
	}
	if strings.Contains(s.Log.String(), community) {
		t.Error("the community is in the worker's or the API's log")
	}
	// The CLI sent it in node create; no answer may hold it.
	for _, line := range strings.Split(cli.Log.String(), "\n") {
		if _, answer, _ := strings.Cut(line, " -> "); strings.Contains(answer, community) {
			t.Errorf("an API answer shows the community: %s", line)
		}
	}
}

// TestSNMPNodeErrorsLeaveTheOutletAlone: a wrong community and a node on
// the wrong PDU family fail manage with a clear last_error, and nothing
// reaches the outlets.
func TestSNMPNodeErrorsLeaveTheOutletAlone(t *testing.T) {
	s := itest.NewStack(t, srv, itest.StackOptions{RedfishSystems: 1, IPMIBMCs: 1, Configure: func(c *config.Config) {
		// One unanswered request a read, not Ironic's six.
		if err := config.LoadEnv(c, []string{"METALPOWER_SNMP_UDP_TRANSPORT_RETRIES=0"}); err != nil {
			t.Fatal(err)
		}
	}})
	p := startPDU(t, pdusim.Options{Family: "apc_rackpdu", Outlets: 4, Community: community})
	cli := baremetal.New(t, s.StartAPI(t, nil), "1.95")
	tests := []struct {
		name string
		info []string
		says string
	}{
		{"wrong-community", driverInfo(p, "apc_rackpdu", 1, "wrong-Secret-77"), "ignores the community"},
		{"wrong-family", driverInfo(p, "aten", 1, community), "PDU family mismatch: snmp_driver is aten"},
		{"no-such-outlet", driverInfo(p, "apc_rackpdu", 9, community), "outlet 9 does not exist"},
	}
	// Parallel subtests in a group: the checks below wait for them all.
	t.Run("manage", func(t *testing.T) {
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel()
				cli.OK(append([]string{"node", "create", "--driver", "snmp", "--name", tt.name}, tt.info...)...)
				cli.OK("node", "manage", tt.name)
				var got map[string]any
				itest.WaitFor(t, 90*time.Second, "manage to fail", func() bool {
					got = cli.Show(tt.name, "provision_state", "last_error")
					return got["provision_state"] == node.Enroll && got["last_error"] != nil
				})
				if lastErr, _ := got["last_error"].(string); !strings.Contains(lastErr, tt.says) {
					t.Fatalf("after manage: %v, want enroll and a last_error saying %q", got, tt.says)
				}
			})
		}
	})
	if w := p.Writes(); w != 0 {
		t.Errorf("%d writes reached the outlets", w)
	}
	for n := 1; n <= 4; n++ {
		wantOutlet(t, p, n, true)
	}
}
