package ipmi

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/metalpower/metalpower/internal/bmc"
	"github.com/metalpower/metalpower/internal/node"
	"github.com/metalpower/metalpower/internal/testbed/poll"
	"github.com/metalpower/metalpower/internal/testbed/sim/ipmisim"
)

func startFleet(t testing.TB, opts ipmisim.Options) *ipmisim.Fleet {
	t.Helper()
	f, err := ipmisim.Start(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.Close)
	return f
}

func clientFor(t testing.TB, b *ipmisim.BMC, password string) *Client {
	t.Helper()
	c := New(Info{Address: b.Host, Port: b.Port, Username: "admin", Password: password, CipherSuite: -1},
		Options{AttemptTimeout: 300 * time.Millisecond, Retries: 1, PollInterval: 10 * time.Millisecond})
	t.Cleanup(func() { c.Close() })
	return c
}

func testCtx(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func TestEveryActionReachesItsState(t *testing.T) {
	noOff := bmc.Policy{DisablePowerOff: true}
	tests := []struct {
		target     string
		policy     bmc.Policy
		startOn    bool
		wantOn     bool
		wantAction []string
	}{
		{node.PowerOn, bmc.Policy{}, false, true, []string{"on"}},
		{node.PowerOff, bmc.Policy{}, true, false, []string{"off"}},
		{node.SoftPowerOff, bmc.Policy{}, true, false, []string{"soft"}},
		{node.Reboot, bmc.Policy{}, true, true, []string{"off", "on"}},
		{node.Reboot, bmc.Policy{}, false, true, []string{"on"}},
		{node.SoftReboot, bmc.Policy{}, true, true, []string{"soft", "on"}},
		{node.SoftReboot, bmc.Policy{}, false, true, []string{"on"}},
		// disable_power_off: a hard reset, no off phase (Ironic's
		// "power reset").
		{node.Reboot, noOff, true, true, []string{"reset"}},
		{node.Reboot, noOff, false, true, []string{"on"}},
		{node.PowerOn, noOff, false, true, []string{"on"}},
	}
	f := startFleet(t, ipmisim.Options{BMCs: len(tests)})
	for i, tt := range tests {
		b := f.BMCs()[i]
		t.Run(fmt.Sprintf("%s from on=%v %+v", tt.target, tt.startOn, tt.policy), func(t *testing.T) {
			b.SetPowerOn(tt.startOn)
			c := clientFor(t, b, "password")
			ctx := testCtx(t, 10*time.Second)
			if err := c.SetPowerState(ctx, tt.target, tt.policy); err != nil {
				t.Fatalf("SetPowerState(%s): %v", tt.target, err)
			}
			if b.PowerOn() != tt.wantOn {
				t.Fatalf("power on = %v, want %v", b.PowerOn(), tt.wantOn)
			}
			if !slices.Equal(b.Actions(), tt.wantAction) {
				t.Fatalf("chassis controls = %v, want %v", b.Actions(), tt.wantAction)
			}
			want := map[bool]string{true: node.PowerOn, false: node.PowerOff}[tt.wantOn]
			if got, err := c.PowerState(ctx); err != nil || got != want {
				t.Fatalf("PowerState() = %q, %v; want %q", got, err, want)
			}
		})
	}
}

// TestDisablePowerOffNeverPowersOff reads the hardware every millisecond
// throughout each action on a node with disable_power_off: it never reads
// off; soft reboot, power off and soft power off are refused (IPMI has
// no soft reboot without an off phase) and send nothing.
func TestDisablePowerOffNeverPowersOff(t *testing.T) {
	f := startFleet(t, ipmisim.Options{TransitionDelay: 150 * time.Millisecond})
	b := f.BMCs()[0]
	c := clientFor(t, b, "password")
	ctx := testCtx(t, 20*time.Second)
	for _, target := range []string{node.Reboot, node.SoftReboot, node.PowerOff, node.SoftPowerOff, node.Reboot} {
		sawOff := poll.Watch(func() bool { return !b.PowerOn() })
		err := c.SetPowerState(ctx, target, bmc.Policy{DisablePowerOff: true})
		switch {
		case target == node.Reboot && err != nil:
			t.Fatalf("reboot: %v", err)
		case target != node.Reboot && !errors.Is(err, bmc.ErrPowerOffDisabled):
			t.Fatalf("%s: err = %v, want ErrPowerOffDisabled", target, err)
		case target != node.Reboot:
			if k, _ := bmc.KindOf(err); k != bmc.Unsupported {
				t.Fatalf("%s: kind %v, want unsupported", target, k)
			}
		}
		time.Sleep(300 * time.Millisecond) // past the transition
		if sawOff() {
			t.Fatalf("%s: the hardware read off", target)
		}
	}
	if got := b.Actions(); !slices.Equal(got, []string{"reset", "reset"}) {
		t.Fatalf("chassis controls = %v, want two resets", got)
	}
}

func TestRebootWaitsForTheServerToGoOff(t *testing.T) {
	f := startFleet(t, ipmisim.Options{TransitionDelay: 150 * time.Millisecond})
	b := f.BMCs()[0]
	c := clientFor(t, b, "password")
	if err := c.SetPowerState(testCtx(t, 10*time.Second), node.Reboot, bmc.Policy{}); err != nil {
		t.Fatal(err)
	}
	if got := b.Actions(); !slices.Equal(got, []string{"off", "on"}) {
		t.Fatalf("controls = %v", got)
	}
	// The "on" was issued only once the server was off, so it lands.
	deadline := time.Now().Add(2 * time.Second)
	for !b.PowerOn() && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if !b.PowerOn() {
		t.Fatal("server did not come back on")
	}
}

func TestErrorsAreClassified(t *testing.T) {
	f := startFleet(t, ipmisim.Options{BMCs: 4})
	hang, errBMC, busy := f.BMCs()[1], f.BMCs()[2], f.BMCs()[3]
	hang.SetFault(ipmisim.FaultHang)
	errBMC.SetFault(ipmisim.FaultError)
	busy.SetFault(ipmisim.FaultBusy)

	// A UDP port nobody listens on.
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadPort := pc.LocalAddr().(*net.UDPAddr).Port
	pc.Close()

	tests := []struct {
		name     string
		client   *Client
		call     func(ctx context.Context, c *Client) error
		wantKind bmc.Kind
	}{
		{"wrong password", clientFor(t, f.BMCs()[0], "not-the-password"), read, bmc.Auth},
		{"unreachable", New(Info{Address: "127.0.0.1", Port: deadPort, Username: "admin", Password: "password", CipherSuite: 3}, Options{AttemptTimeout: 200 * time.Millisecond, Retries: 1}), read, bmc.Transient},
		{"hang", clientFor(t, hang, "password"), read, bmc.Transient},
		{"unspecified error", clientFor(t, errBMC, "password"), read, bmc.Transient},
		{"busy", clientFor(t, busy, "password"), func(ctx context.Context, c *Client) error { return c.SetPowerState(ctx, node.PowerOff, bmc.Policy{}) }, bmc.Transient},
		{"unknown target", clientFor(t, f.BMCs()[0], "password"), func(ctx context.Context, c *Client) error { return c.SetPowerState(ctx, "explode", bmc.Policy{}) }, bmc.Unsupported},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			err := tt.call(testCtx(t, 3*time.Second), tt.client)
			var be *bmc.Error
			if !errors.As(err, &be) {
				t.Fatalf("err = %v (%T), want *bmc.Error", err, err)
			}
			if be.Kind != tt.wantKind {
				t.Fatalf("kind = %s, want %s (err: %v)", be.Kind, tt.wantKind, err)
			}
			if bmc.IsPermanent(err) != (tt.wantKind != bmc.Transient) {
				t.Fatalf("IsPermanent = %v for %s", bmc.IsPermanent(err), be.Kind)
			}
			if strings.Contains(err.Error(), "not-the-password") || strings.Contains(err.Error(), ":password") {
				t.Fatalf("error leaks the password: %v", err)
			}
			if time.Since(start) > 3500*time.Millisecond {
				t.Fatalf("call took %v, past its context deadline", time.Since(start))
			}
		})
	}
}

func read(ctx context.Context, c *Client) error {
	_, err := c.PowerState(ctx)
	return err
}

func TestStuckAndFlappingBMCs(t *testing.T) {
	f := startFleet(t, ipmisim.Options{BMCs: 2})
	stuck, flap := f.BMCs()[0], f.BMCs()[1]
	stuck.SetFault(ipmisim.FaultStuck)
	flap.SetFault(ipmisim.FaultFlap)
	ctx := testCtx(t, 10*time.Second)

	c := clientFor(t, stuck, "password")
	if err := c.SetPowerState(ctx, node.PowerOff, bmc.Policy{}); err != nil {
		t.Fatalf("stuck BMC must accept the command: %v", err)
	}
	if got, _ := c.PowerState(ctx); got != node.PowerOn {
		t.Fatalf("stuck BMC state = %q, want it unchanged (power on)", got)
	}

	fc := clientFor(t, flap, "password")
	a, _ := fc.PowerState(ctx)
	b, _ := fc.PowerState(ctx)
	if a == b {
		t.Fatalf("flapping BMC read %q twice", a)
	}
}

func TestClientIsSafeForConcurrentUse(t *testing.T) {
	f := startFleet(t, ipmisim.Options{})
	c := clientFor(t, f.BMCs()[0], "password")
	ctx := testCtx(t, 20*time.Second)
	var wg sync.WaitGroup
	errs := make(chan error, 8*20)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 20; i++ {
				if _, err := c.PowerState(ctx); err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

func TestSessionIsReopenedAfterMaxAge(t *testing.T) {
	f := startFleet(t, ipmisim.Options{})
	b := f.BMCs()[0]
	c := New(Info{Address: b.Host, Port: b.Port, Username: "admin", Password: "password", CipherSuite: -1}, Options{SessionMaxAge: 50 * time.Millisecond})
	defer c.Close()
	ctx := testCtx(t, 10*time.Second)
	if _, err := c.PowerState(ctx); err != nil {
		t.Fatal(err)
	}
	first := sessionOf(c)
	time.Sleep(80 * time.Millisecond)
	if _, err := c.PowerState(ctx); err != nil {
		t.Fatal(err)
	}
	if sessionOf(c) == first {
		t.Fatal("session older than SessionMaxAge was reused")
	}
}

// BenchmarkGetPowerState is one power read over a reused RMCP+ session
// against the in-process simulator.
func BenchmarkGetPowerState(b *testing.B) {
	f := startFleet(b, ipmisim.Options{})
	c := clientFor(b, f.BMCs()[0], "password")
	ctx := context.Background()
	if _, err := c.PowerState(ctx); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := c.PowerState(ctx); err != nil {
			b.Fatal(err)
		}
	}
}
