package redfish

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
	"github.com/metalpower/metalpower/internal/testbed/sim/redfishsim"
)

func startSim(t testing.TB, opts redfishsim.Options) (*redfishsim.Sim, string) {
	t.Helper()
	sim := redfishsim.New(opts)
	url := sim.Start()
	t.Cleanup(sim.Close)
	return sim, url
}

func newClient(t testing.TB, endpoint, system, password, auth string) *Client {
	t.Helper()
	c := New(Info{Endpoint: endpoint, SystemID: system, Username: "admin", Password: password, VerifyCA: true, AuthType: auth},
		Options{PollInterval: 10 * time.Millisecond})
	t.Cleanup(func() { c.Close() })
	return c
}

func testCtx(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func TestEveryActionMapsAsIronicDoes(t *testing.T) {
	noOff := bmc.Policy{DisablePowerOff: true}
	tests := []struct {
		target    string
		policy    bmc.Policy
		start     string
		wantReset []string
		wantState string
	}{
		{node.PowerOn, bmc.Policy{}, "Off", []string{"On"}, "On"},
		{node.PowerOff, bmc.Policy{}, "On", []string{"ForceOff"}, "Off"},
		{node.SoftPowerOff, bmc.Policy{}, "On", []string{"GracefulShutdown"}, "Off"},
		// Ironic's redfish reboot: ForceOff, wait until off, then On.
		{node.Reboot, bmc.Policy{}, "On", []string{"ForceOff", "On"}, "On"},
		{node.Reboot, bmc.Policy{}, "Off", []string{"On"}, "On"},
		{node.SoftReboot, bmc.Policy{}, "On", []string{"GracefulRestart"}, "On"},
		{node.SoftReboot, bmc.Policy{}, "Off", []string{"On"}, "On"},
		// disable_power_off: ForceRestart only, never an off state.
		{node.Reboot, noOff, "On", []string{"ForceRestart"}, "On"},
		{node.Reboot, noOff, "Off", []string{"On"}, "On"},
		{node.SoftReboot, noOff, "On", []string{"GracefulRestart"}, "On"},
		{node.PowerOn, noOff, "Off", []string{"On"}, "On"},
	}
	sim, url := startSim(t, redfishsim.Options{Systems: len(tests)})
	for i, tt := range tests {
		id := sim.SystemIDs()[i]
		t.Run(fmt.Sprintf("%s from %s %+v", tt.target, tt.start, tt.policy), func(t *testing.T) {
			sim.SetPowerState(id, tt.start)
			c := newClient(t, url, sim.SystemPath(id), "password", "basic")
			ctx := testCtx(t, 10*time.Second)
			if err := c.SetPowerState(ctx, tt.target, tt.policy); err != nil {
				t.Fatalf("SetPowerState: %v", err)
			}
			if got := sim.Resets(id); !slices.Equal(got, tt.wantReset) {
				t.Fatalf("resets = %v, want %v", got, tt.wantReset)
			}
			if got := sim.PowerState(id); got != tt.wantState {
				t.Fatalf("state = %s, want %s", got, tt.wantState)
			}
			want := map[string]string{"On": node.PowerOn, "Off": node.PowerOff}[tt.wantState]
			if got, err := c.PowerState(ctx); err != nil || got != want {
				t.Fatalf("PowerState() = %q, %v", got, err)
			}
		})
	}
}

// TestDisablePowerOffNeverPowersOff reads the hardware throughout each
// action on a node with disable_power_off: it never reads off, and the
// actions that would power it off are refused before anything is sent.
func TestDisablePowerOffNeverPowersOff(t *testing.T) {
	sim, url := startSim(t, redfishsim.Options{Systems: 1, TransitionDelay: 200 * time.Millisecond})
	id := sim.SystemIDs()[0]
	c := newClient(t, url, sim.SystemPath(id), "password", "basic")
	ctx := testCtx(t, 20*time.Second)
	noOff := bmc.Policy{DisablePowerOff: true}
	for _, target := range []string{node.Reboot, node.PowerOff, node.SoftPowerOff, node.Reboot} {
		sawOff := poll.Watch(func() bool { return sim.PowerState(id) == "Off" })
		err := c.SetPowerState(ctx, target, noOff)
		if target == node.Reboot && err != nil {
			t.Fatalf("reboot: %v", err)
		}
		if target != node.Reboot && !errors.Is(err, bmc.ErrPowerOffDisabled) {
			t.Fatalf("%s: err = %v, want ErrPowerOffDisabled", target, err)
		}
		time.Sleep(400 * time.Millisecond) // past the transition
		if sawOff() {
			t.Fatalf("%s: the hardware read off", target)
		}
	}
	if got := sim.Resets(id); !slices.Equal(got, []string{"ForceRestart", "ForceRestart"}) {
		t.Fatalf("resets = %v", got)
	}
}

func TestHonoursAdvertisedResetTypes(t *testing.T) {
	sim, url := startSim(t, redfishsim.Options{Systems: 3, TransitionDelay: 30 * time.Millisecond})
	ctx := testCtx(t, 10*time.Second)

	// A reboot is ForceOff, wait, On, also where ForceRestart is missing.
	sim.SetAllowableResetTypes("1", []string{"On", "ForceOff"})
	if err := newClient(t, url, sim.SystemPath("1"), "password", "basic").SetPowerState(ctx, node.Reboot, bmc.Policy{}); err != nil {
		t.Fatal(err)
	}
	if got := sim.Resets("1"); !slices.Equal(got, []string{"ForceOff", "On"}) {
		t.Fatalf("resets = %v", got)
	}

	// No ForceOff: the system's own restart is all there is.
	sim.SetAllowableResetTypes("2", []string{"On", "PowerCycle"})
	if err := newClient(t, url, sim.SystemPath("2"), "password", "basic").SetPowerState(ctx, node.Reboot, bmc.Policy{}); err != nil {
		t.Fatal(err)
	}
	if got := sim.Resets("2"); !slices.Equal(got, []string{"PowerCycle"}) {
		t.Fatalf("resets = %v", got)
	}

	// No GracefulRestart: a soft reboot is unsupported, and nothing is sent.
	sim.SetAllowableResetTypes("3", []string{"On", "ForceOff"})
	err := newClient(t, url, sim.SystemPath("3"), "password", "basic").SetPowerState(ctx, node.SoftReboot, bmc.Policy{})
	if k, ok := bmc.KindOf(err); !ok || k != bmc.Unsupported {
		t.Fatalf("err = %v, want unsupported", err)
	}
	if len(sim.Resets("3")) != 0 {
		t.Fatalf("resets = %v, want none", sim.Resets("3"))
	}
}

func TestFindsTheOnlySystem(t *testing.T) {
	_, one := startSim(t, redfishsim.Options{Systems: 1})
	if got, err := newClient(t, one, "", "password", "basic").PowerState(testCtx(t, 5*time.Second)); err != nil || got != node.PowerOn {
		t.Fatalf("PowerState() = %q, %v", got, err)
	}
	_, two := startSim(t, redfishsim.Options{Systems: 2})
	_, err := newClient(t, two, "", "password", "basic").PowerState(testCtx(t, 5*time.Second))
	if k, ok := bmc.KindOf(err); !ok || k != bmc.Config || !strings.Contains(err.Error(), "redfish_system_id") {
		t.Fatalf("err = %v, want a configuration error naming redfish_system_id", err)
	}
}

func TestErrorsAreClassified(t *testing.T) {
	sim, url := startSim(t, redfishsim.Options{Systems: 6, ConflictWindow: time.Minute})
	sim.SetFault("1", redfishsim.FaultHang)
	sim.SetFault("2", redfishsim.FaultServerError)
	sim.SetFault("3", redfishsim.FaultUnauthorized)
	sim.SetFault("4", redfishsim.FaultConflictAfterOff)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + ln.Addr().String()
	ln.Close()

	read := func(ctx context.Context, c *Client) error { _, err := c.PowerState(ctx); return err }
	tests := []struct {
		name   string
		client *Client
		call   func(context.Context, *Client) error
		want   bmc.Kind
	}{
		{"hang", newClient(t, url, sim.SystemPath("1"), "password", "basic"), read, bmc.Transient},
		{"500", newClient(t, url, sim.SystemPath("2"), "password", "basic"), read, bmc.Transient},
		{"401 fault", newClient(t, url, sim.SystemPath("3"), "password", "basic"), read, bmc.Auth},
		{"wrong password", newClient(t, url, sim.SystemPath("5"), "not-the-password", "basic"), read, bmc.Auth},
		{"wrong password, session", newClient(t, url, sim.SystemPath("5"), "not-the-password", "session"), read, bmc.Auth},
		{"409 on power on after off", newClient(t, url, sim.SystemPath("4"), "password", "basic"),
			func(ctx context.Context, c *Client) error {
				if err := c.SetPowerState(ctx, node.PowerOff, bmc.Policy{}); err != nil {
					return err
				}
				return c.SetPowerState(ctx, node.PowerOn, bmc.Policy{})
			}, bmc.Transient},
		{"unknown system", newClient(t, url, "/redfish/v1/Systems/nope", "password", "basic"), read, bmc.Config},
		{"connection refused", newClient(t, dead, "/redfish/v1/Systems/1", "password", "basic"), read, bmc.Transient},
		{"unknown target", newClient(t, url, sim.SystemPath("6"), "password", "basic"),
			func(ctx context.Context, c *Client) error { return c.SetPowerState(ctx, "explode", bmc.Policy{}) }, bmc.Unsupported},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			err := tt.call(testCtx(t, time.Second), tt.client)
			var be *bmc.Error
			if !errors.As(err, &be) {
				t.Fatalf("err = %v (%T), want *bmc.Error", err, err)
			}
			if be.Kind != tt.want {
				t.Fatalf("kind = %s, want %s: %v", be.Kind, tt.want, err)
			}
			if strings.Contains(err.Error(), "not-the-password") {
				t.Fatalf("error leaks the password: %v", err)
			}
			if time.Since(start) > 1500*time.Millisecond {
				t.Fatalf("took %v, past the context deadline", time.Since(start))
			}
		})
	}
}

func TestStuckAndFlappingSystems(t *testing.T) {
	sim, url := startSim(t, redfishsim.Options{Systems: 2})
	sim.SetFault("1", redfishsim.FaultStuck)
	sim.SetFault("2", redfishsim.FaultFlap)
	ctx := testCtx(t, 5*time.Second)
	c := newClient(t, url, sim.SystemPath("1"), "password", "basic")
	if err := c.SetPowerState(ctx, node.PowerOff, bmc.Policy{}); err != nil {
		t.Fatalf("stuck system must accept the reset: %v", err)
	}
	if got, _ := c.PowerState(ctx); got != node.PowerOn {
		t.Fatalf("stuck system reads %q", got)
	}
	f := newClient(t, url, sim.SystemPath("2"), "password", "basic")
	a, _ := f.PowerState(ctx)
	b, _ := f.PowerState(ctx)
	if a == b {
		t.Fatalf("flapping system read %q twice", a)
	}
}

func TestSessionsAreLoggedOut(t *testing.T) {
	sim, url := startSim(t, redfishsim.Options{Systems: 1})
	ctx := testCtx(t, 5*time.Second)
	c := New(Info{Endpoint: url, SystemID: sim.SystemPath("1"), Username: "admin", Password: "password", AuthType: "session"}, Options{})
	for i := 0; i < 5; i++ {
		if _, err := c.PowerState(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if got := sim.ActiveSessions(); got != 1 {
		t.Fatalf("active sessions while in use = %d, want 1 (reused)", got)
	}
	c.Close()
	if got := sim.ActiveSessions(); got != 0 {
		t.Fatalf("active sessions after Close = %d, want 0", got)
	}
	// Basic auth opens no session at all.
	b := newClient(t, url, sim.SystemPath("1"), "password", "basic")
	if _, err := b.PowerState(ctx); err != nil || sim.ActiveSessions() != 0 {
		t.Fatalf("basic auth: err %v, sessions %d", err, sim.ActiveSessions())
	}
}

func TestReadsReuseTheConnectionAndCostOneRequest(t *testing.T) {
	sim, url := startSim(t, redfishsim.Options{Systems: 1})
	c := newClient(t, url, sim.SystemPath("1"), "password", "basic")
	ctx := testCtx(t, 5*time.Second)
	if _, err := c.PowerState(ctx); err != nil {
		t.Fatal(err)
	}
	before := sim.Requests()
	for i := 0; i < 10; i++ {
		if _, err := c.PowerState(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if got := sim.Requests() - before; got != 10 {
		t.Fatalf("10 reads cost %d requests", got)
	}
}

func TestTLSVerification(t *testing.T) {
	sim := redfishsim.New(redfishsim.Options{Systems: 1})
	url := sim.StartTLS()
	defer sim.Close()
	ctx := testCtx(t, 5*time.Second)
	verify := New(Info{Endpoint: url, SystemID: sim.SystemPath("1"), Username: "admin", Password: "password", VerifyCA: true}, Options{})
	defer verify.Close()
	if _, err := verify.PowerState(ctx); err == nil {
		t.Fatal("self-signed certificate accepted with redfish_verify_ca true")
	} else if k, _ := bmc.KindOf(err); k != bmc.Config {
		t.Fatalf("err = %v, want a configuration error", err)
	}
	insecure := New(Info{Endpoint: url, SystemID: sim.SystemPath("1"), Username: "admin", Password: "password", VerifyCA: false}, Options{})
	defer insecure.Close()
	if got, err := insecure.PowerState(ctx); err != nil || got != node.PowerOn {
		t.Fatalf("PowerState() = %q, %v", got, err)
	}
}

func TestClientIsSafeForConcurrentUse(t *testing.T) {
	sim, url := startSim(t, redfishsim.Options{Systems: 1})
	c := newClient(t, url, sim.SystemPath("1"), "password", "session")
	ctx := testCtx(t, 10*time.Second)
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for g := 0; g < 10; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 10; i++ {
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
	if sim.ActiveSessions() != 1 {
		t.Fatalf("sessions = %d, want 1", sim.ActiveSessions())
	}
}

// BenchmarkGetPowerState is one power read over a kept-alive connection
// against the simulator.
func BenchmarkGetPowerState(b *testing.B) {
	sim, url := startSim(b, redfishsim.Options{Systems: 1})
	c := newClient(b, url, sim.SystemPath("1"), "password", "basic")
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

func TestPowerOnConflictIsRetried(t *testing.T) {
	sim, url := startSim(t, redfishsim.Options{Systems: 1, ConflictWindow: 300 * time.Millisecond})
	sim.SetFault("1", redfishsim.FaultConflictAfterOff)
	c := New(Info{Endpoint: url, SystemID: sim.SystemPath("1"), Username: "admin", Password: "password", AuthType: "basic"},
		Options{PowerOnConflictRetries: 10, PowerOnConflictInterval: 100 * time.Millisecond})
	defer c.Close()
	ctx := testCtx(t, 10*time.Second)
	if err := c.SetPowerState(ctx, node.PowerOff, bmc.Policy{}); err != nil {
		t.Fatal(err)
	}
	// Refused with 409 while the window lasts, then accepted.
	if err := c.SetPowerState(ctx, node.PowerOn, bmc.Policy{}); err != nil {
		t.Fatalf("power on after the conflict window: %v", err)
	}
	if sim.PowerState("1") != "On" {
		t.Fatalf("state = %s", sim.PowerState("1"))
	}
}

// TestUnmappedPowerStateIsNoState: a PowerState outside Ironic's
// GET_POWER_STATE_MAP (Paused) reads as no state, not "error".
func TestUnmappedPowerStateIsNoState(t *testing.T) {
	sim, url := startSim(t, redfishsim.Options{Systems: 1})
	sim.SetPowerState("1", "Paused")
	got, err := newClient(t, url, sim.SystemPath("1"), "password", "basic").PowerState(testCtx(t, 5*time.Second))
	if err != nil || got != "" {
		t.Fatalf("PowerState() = %q, %v; want no state", got, err)
	}
}
