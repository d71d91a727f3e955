package snmp_test

import (
	"context"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/metalpower/metalpower/internal/bmc"
	"github.com/metalpower/metalpower/internal/bmc/snmp"
	"github.com/metalpower/metalpower/internal/node"
	"github.com/metalpower/metalpower/internal/testbed/sim/pdusim"
)

// fast keeps the tests' unanswered requests to one second.
var fast = snmp.Options{PowerTimeout: 10, RebootDelay: 0, UDPTransportTimeout: 1, UDPTransportRetries: 0}

func startPDU(t *testing.T, opts pdusim.Options) *pdusim.PDU {
	t.Helper()
	p, err := pdusim.Start(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

// outlet returns a client for outlet n of p through the driver's
// registration, as the pool makes it.
func outlet(t *testing.T, info node.DriverInfo, opts snmp.Options) bmc.PowerManager {
	t.Helper()
	d, err := bmc.Lookup(snmp.Name)
	if err != nil {
		t.Fatal(err)
	}
	a, err := d.Parse(info)
	if err != nil {
		t.Fatal(err)
	}
	conn := d.NewConnector(bmc.Env{Options: opts}).Dial(a)
	t.Cleanup(func() { conn.Close() })
	return conn.PowerManager(a)
}

func v2(p *pdusim.PDU, family string, n int) node.DriverInfo {
	return node.DriverInfo{"snmp_driver": family, "snmp_address": p.Host(), "snmp_port": strconv.Itoa(p.Port()),
		"snmp_outlet": strconv.Itoa(n), "snmp_version": "2c", "snmp_community": "private"}
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

func wantOutlet(t *testing.T, p *pdusim.PDU, n int, on bool) {
	t.Helper()
	got, err := p.Outlet(ctx(t), n)
	if err != nil {
		t.Fatal(err)
	}
	if got != on {
		t.Fatalf("snmpget reads outlet %d on=%v, want %v", n, got, on)
	}
}

// TestEveryFamilySwitchesItsOutlet drives each of Ironic's PDU families
// on Debian's snmpd and checks each step with snmpget.
func TestEveryFamilySwitchesItsOutlet(t *testing.T) {
	for _, family := range pdusim.Families() {
		t.Run(family, func(t *testing.T) {
			p := startPDU(t, pdusim.Options{Family: family, Outlets: 4})
			pm := outlet(t, v2(p, family, 3), fast)
			c := ctx(t)
			steps := []struct {
				target string
				on     bool
			}{{node.PowerOff, false}, {node.PowerOn, true}, {node.Reboot, true}}
			for _, s := range steps {
				if err := pm.SetPowerState(c, s.target, bmc.Policy{}); err != nil {
					t.Fatalf("%s: %v", s.target, err)
				}
				wantOutlet(t, p, 3, s.on)
				if got, err := pm.PowerState(c); err != nil || got != node.FinalState(s.target) {
					t.Fatalf("after %s PowerState() = %q, %v", s.target, got, err)
				}
			}
			// The reboot went through off: the agent logged an off command
			// between the last two on commands.
			sets, err := p.Sets()
			if err != nil {
				t.Fatal(err)
			}
			if len(sets) != 4 {
				t.Fatalf("%d SETs reached the PDU, want 4 (off, on, and the reboot's off and on): %+v", len(sets), sets)
			}
			for _, other := range []int{1, 2, 4} {
				wantOutlet(t, p, other, true)
			}
		})
	}
}

func TestAutoDetectsTheFamily(t *testing.T) {
	p := startPDU(t, pdusim.Options{Family: "apc_rackpdu", SysObjectID: "1.3.6.1.4.1.318.1.1.12.7"})
	pm := outlet(t, v2(p, "auto", 2), fast)
	if err := pm.SetPowerState(ctx(t), node.PowerOff, bmc.Policy{}); err != nil {
		t.Fatal(err)
	}
	wantOutlet(t, p, 2, false)
}

func TestSNMPv3(t *testing.T) {
	p := startPDU(t, pdusim.Options{Family: "aten", User: "ironic", AuthProtocol: "SHA", AuthKey: "auth-secret-1", PrivProtocol: "AES", PrivKey: "priv-secret-1"})
	info := node.DriverInfo{"snmp_driver": "aten", "snmp_address": p.Host(), "snmp_port": float64(p.Port()), "snmp_outlet": "1",
		"snmp_version": "3", "snmp_user": "ironic", "snmp_auth_protocol": "sha", "snmp_auth_key": "auth-secret-1",
		"snmp_priv_protocol": "aes", "snmp_priv_key": "priv-secret-1"}
	if err := outlet(t, info, fast).SetPowerState(ctx(t), node.PowerOff, bmc.Policy{}); err != nil {
		t.Fatal(err)
	}
	wantOutlet(t, p, 1, false)

	info["snmp_auth_key"] = "wrong-key-12"
	_, err := outlet(t, info, fast).PowerState(ctx(t))
	if k, _ := bmc.KindOf(err); k != bmc.Auth || strings.Contains(err.Error(), "wrong-key-12") || strings.Contains(err.Error(), "priv-secret-1") {
		t.Fatalf("wrong key: %v (kind %v), want an authentication error without the keys", err, k)
	}
}

// TestErrorsChangeNothing: each failure is its own clear error, and no
// SET reaches the agent.
func TestErrorsChangeNothing(t *testing.T) {
	p := startPDU(t, pdusim.Options{Family: "apc_rackpdu", Outlets: 4, ReadCommunity: "public"})
	closed := closedPort(t)
	tests := []struct {
		name   string
		info   func() node.DriverInfo
		target string
		kind   bmc.Kind
		says   []string
	}{
		{"wrong community", func() node.DriverInfo { d := v2(p, "apc_rackpdu", 1); d["snmp_community"] = "wrong-secret"; return d },
			node.PowerOff, bmc.Transient, []string{"no answer from the SNMP agent", "ignores the community"}},
		{"read-only write community", func() node.DriverInfo {
			d := v2(p, "apc_rackpdu", 1)
			d["snmp_community_write"] = "public"
			return d
		}, node.PowerOff, bmc.Auth, []string{"refused the write", "snmp_community_write"}},
		{"unknown outlet", func() node.DriverInfo { return v2(p, "apc_rackpdu", 9) },
			node.PowerOff, bmc.Config, []string{"outlet 9 does not exist on this apc_rackpdu PDU"}},
		{"family mismatch", func() node.DriverInfo { return v2(p, "aten", 1) },
			node.PowerOff, bmc.Config, []string{"PDU family mismatch: snmp_driver is aten", "apc_rackpdu"}},
		{"unreachable agent", func() node.DriverInfo { d := v2(p, "apc_rackpdu", 1); d["snmp_port"] = strconv.Itoa(closed); return d },
			node.PowerOff, bmc.Transient, []string{"unreachable"}},
		{"soft power off", func() node.DriverInfo { return v2(p, "apc_rackpdu", 1) },
			node.SoftPowerOff, bmc.Unsupported, []string{"only be switched on and off"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := ctx(t)
			before, err := p.SetRequests(c)
			if err != nil {
				t.Fatal(err)
			}
			err = outlet(t, tt.info(), fast).SetPowerState(c, tt.target, bmc.Policy{})
			if k, ok := bmc.KindOf(err); !ok || k != tt.kind {
				t.Fatalf("error %v (kind %v), want kind %v", err, k, tt.kind)
			}
			for _, s := range tt.says {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q lacks %q", err, s)
				}
			}
			if strings.Contains(err.Error(), "wrong-secret") || strings.Contains(err.Error(), "private") {
				t.Errorf("error shows a community: %v", err)
			}
			after, err := p.SetRequests(c)
			if err != nil {
				t.Fatal(err)
			}
			// The read-only community's SET reaches snmpd, which refuses it;
			// none reaches the outlet table.
			if tt.kind != bmc.Auth && after != before {
				t.Errorf("%d SETs reached the agent", after-before)
			}
			for n := 1; n <= 4; n++ {
				wantOutlet(t, p, n, true)
			}
		})
	}
	if w := p.Writes(); w != 0 {
		t.Errorf("%d writes reached the outlet table", w)
	}
}

func TestDisablePowerOffRefusesEveryOff(t *testing.T) {
	p := startPDU(t, pdusim.Options{Family: "cyberpower"})
	pm := outlet(t, v2(p, "cyberpower", 1), fast)
	for _, target := range []string{node.PowerOff, node.Reboot} {
		err := pm.SetPowerState(ctx(t), target, bmc.Policy{DisablePowerOff: true})
		if k, _ := bmc.KindOf(err); k != bmc.Unsupported {
			t.Errorf("%s: %v, want unsupported", target, err)
		}
	}
	wantOutlet(t, p, 1, true)
}

// TestEatonPendingStates: an Eaton outlet reads "pending off" while its
// switch is under way, which is still on, as Ironic maps it.
func TestEatonPendingStates(t *testing.T) {
	p := startPDU(t, pdusim.Options{Family: "eatonpower", SwitchDelay: 1500 * time.Millisecond})
	pm := outlet(t, v2(p, "eatonpower", 2), fast)
	c := ctx(t)
	if err := pm.SetPowerState(c, node.PowerOff, bmc.Policy{}); err != nil {
		t.Fatal(err)
	}
	if got, err := pm.PowerState(c); err != nil || got != node.PowerOn {
		t.Fatalf("pending off reads %q, %v; want power on", got, err)
	}
	if err := bmc.WaitForState(c, pm.PowerState, node.PowerOff, 200*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	// A reboot waits for the outlet to be off before it switches it on.
	if err := pm.SetPowerState(c, node.PowerOn, bmc.Policy{}); err != nil {
		t.Fatal(err)
	}
	if err := bmc.WaitForState(c, pm.PowerState, node.PowerOn, 200*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if err := pm.SetPowerState(c, node.Reboot, bmc.Policy{}); err != nil {
		t.Fatal(err)
	}
	if err := bmc.WaitForState(c, pm.PowerState, node.PowerOn, 200*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	sets, _ := p.Sets()
	if n := len(sets); n != 4 {
		t.Fatalf("%d SETs, want 4: %+v", n, sets)
	}
}

// closedPort is a UDP port nothing listens on.
func closedPort(t *testing.T) int {
	t.Helper()
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := c.LocalAddr().(*net.UDPAddr).Port
	c.Close()
	return port
}
