package ipmi

import (
	"context"
	"errors"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/metalpower/metalpower/internal/bmc"
	"github.com/metalpower/metalpower/internal/node"
	"github.com/metalpower/metalpower/internal/testbed/poll"
	"github.com/metalpower/metalpower/internal/testbed/sim/openipmi"
)

// These tests drive the driver against Debian's OpenIPMI ipmi_sim, an IPMI
// implementation independent of go-ipmi, and let ipmitool confirm every
// state the driver sets. They never skip: `make deps` installs both tools.

func requireTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s is required for this test; `make deps` installs it (apt-get install openipmi ipmitool): %v", name, err)
	}
	return p
}

type ipmiSim struct {
	host  string
	port  int
	fleet *openipmi.Fleet
	bmc   openipmi.BMC
}

// powerOn reads the BMC's power state file.
func (s *ipmiSim) powerOn() (bool, error) { return s.fleet.PowerOn(s.bmc) }

// startIPMISim runs one ipmi_sim BMC with the test bed's configuration,
// powered on.
func startIPMISim(t *testing.T) *ipmiSim {
	t.Helper()
	requireTool(t, "ipmitool")
	f, err := openipmi.Start(context.Background(), openipmi.Options{BMCs: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.Close)
	b := f.BMCs()[0]
	return &ipmiSim{host: b.Host, port: b.Port, fleet: f, bmc: b}
}

// ipmitool runs ipmitool against the simulator with cipher suite 3
// (ipmi_sim ignores the cipher suite query).
func (s *ipmiSim) ipmitool(args ...string) (string, error) {
	base := []string{"-I", "lanplus", "-C", "3", "-H", s.host, "-p", strconv.Itoa(s.port), "-U", "admin", "-P", "password", "-R", "1", "-N", "2"}
	out, err := exec.Command("ipmitool", append(base, args...)...).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// ipmitoolState is what ipmitool says the power is: "on" or "off".
func (s *ipmiSim) ipmitoolState(t *testing.T) string {
	t.Helper()
	out, err := s.ipmitool("chassis", "power", "status")
	if err != nil {
		t.Fatalf("ipmitool: %v: %s", err, out)
	}
	switch out {
	case "Chassis Power is on":
		return node.PowerOn
	case "Chassis Power is off":
		return node.PowerOff
	}
	t.Fatalf("unexpected ipmitool output %q", out)
	return ""
}

func (s *ipmiSim) client(t *testing.T, password string, suite int) *Client {
	c := New(Info{Address: s.host, Port: s.port, Username: "admin", Password: password, CipherSuite: suite},
		Options{AttemptTimeout: time.Second, Retries: 1, PollInterval: 50 * time.Millisecond})
	t.Cleanup(func() { c.Close() })
	return c
}

func TestIPMISimAgreesWithIpmitoolOnEveryAction(t *testing.T) {
	sim := startIPMISim(t)
	c := sim.client(t, "password", 3)
	ctx := testCtx(t, 60*time.Second)
	steps := []struct {
		target, want string
	}{
		{node.PowerOff, node.PowerOff},
		{node.PowerOn, node.PowerOn},
		{node.SoftPowerOff, node.PowerOff},
		{node.Reboot, node.PowerOn}, // from off: just on
		{node.Reboot, node.PowerOn}, // from on: off, then on
		{node.SoftReboot, node.PowerOn},
		{node.PowerOff, node.PowerOff},
		{node.SoftReboot, node.PowerOn}, // from off: just on
	}
	for i, st := range steps {
		if err := c.SetPowerState(ctx, st.target, bmc.Policy{}); err != nil {
			t.Fatalf("step %d: SetPowerState(%s): %v", i, st.target, err)
		}
		got, err := c.PowerState(ctx)
		if err != nil {
			t.Fatalf("step %d: PowerState: %v", i, err)
		}
		if got != st.want {
			t.Fatalf("step %d (%s): driver reads %q, want %q", i, st.target, got, st.want)
		}
		if tool := sim.ipmitoolState(t); tool != st.want {
			t.Fatalf("step %d (%s): ipmitool says %q, want %q", i, st.target, tool, st.want)
		}
	}
}

func TestIPMISimReadsWhatIpmitoolSets(t *testing.T) {
	sim := startIPMISim(t)
	c := sim.client(t, "password", 3)
	ctx := testCtx(t, 30*time.Second)
	for _, tc := range []struct{ cmd, want string }{{"off", node.PowerOff}, {"on", node.PowerOn}, {"soft", node.PowerOff}} {
		if out, err := sim.ipmitool("chassis", "power", tc.cmd); err != nil {
			t.Fatalf("ipmitool power %s: %v: %s", tc.cmd, err, out)
		}
		if got, err := c.PowerState(ctx); err != nil || got != tc.want {
			t.Fatalf("after ipmitool power %s: driver reads %q, %v; want %q", tc.cmd, got, err, tc.want)
		}
	}
}

func TestIPMISimCipherSuiteAutoFallsBack(t *testing.T) {
	sim := startIPMISim(t)
	// ipmi_sim offers suites 0-11, not 17: the default list must fall back to 3.
	c := sim.client(t, "password", -1)
	if got, err := c.PowerState(testCtx(t, 30*time.Second)); err != nil || got != node.PowerOn {
		t.Fatalf("PowerState() = %q, %v", got, err)
	}
}

func TestIPMISimRejectsWrongPasswordAsAuthError(t *testing.T) {
	sim := startIPMISim(t)
	c := sim.client(t, "wrong-secret", 3)
	_, err := c.PowerState(testCtx(t, 30*time.Second))
	var be *bmc.Error
	if !errors.As(err, &be) || be.Kind != bmc.Auth {
		t.Fatalf("err = %v, want an authentication error", err)
	}
	if strings.Contains(err.Error(), "wrong-secret") {
		t.Fatalf("error leaks the password: %v", err)
	}
}

// TestIPMISimDisablePowerOffRebootsByReset: on ipmi_sim, a node with
// disable_power_off reboots by "power reset"; its power state file, read
// every millisecond, never says off, and ipmitool agrees it is on.
func TestIPMISimDisablePowerOffRebootsByReset(t *testing.T) {
	sim := startIPMISim(t)
	c := sim.client(t, "password", 3)
	ctx := testCtx(t, 60*time.Second)
	noOff := bmc.Policy{DisablePowerOff: true}
	for _, target := range []string{node.Reboot, node.SoftReboot, node.PowerOff, node.Reboot} {
		sawOff := poll.Watch(func() bool { on, err := sim.powerOn(); return err == nil && !on })
		err := c.SetPowerState(ctx, target, noOff)
		if off := sawOff(); off {
			t.Fatalf("%s: the power state file read off", target)
		}
		if target == node.Reboot && err != nil {
			t.Fatalf("reboot: %v", err)
		}
		if target != node.Reboot && !errors.Is(err, bmc.ErrPowerOffDisabled) {
			t.Fatalf("%s: err = %v, want ErrPowerOffDisabled", target, err)
		}
		if got := sim.ipmitoolState(t); got != node.PowerOn {
			t.Fatalf("%s: ipmitool says %s", target, got)
		}
	}
}
