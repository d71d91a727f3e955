package redfish

import (
	"slices"
	"testing"
	"time"

	"github.com/metalpower/metalpower/internal/bmc"
	"github.com/metalpower/metalpower/internal/node"
	"github.com/metalpower/metalpower/internal/testbed/sim/redfishsim"
)

// The BMC expires the session between two calls (its SessionTimeout, a
// reboot): the next read and the next reset log in again within the call,
// and the BMC ends up with one session, not a growing number.
func TestExpiredSessionIsReplacedWithinTheCall(t *testing.T) {
	sim, url := startSim(t, redfishsim.Options{Systems: 1})
	c := newClient(t, url, sim.SystemPath("1"), "password", "session")
	ctx := testCtx(t, 5*time.Second)
	if _, err := c.PowerState(ctx); err != nil {
		t.Fatal(err)
	}
	sim.ExpireSessions()
	if got, err := c.PowerState(ctx); err != nil || got != node.PowerOn {
		t.Fatalf("read after the session expired: %q, %v", got, err)
	}
	sim.ExpireSessions()
	if err := c.SetPowerState(ctx, node.PowerOff, bmc.Policy{}); err != nil {
		t.Fatalf("reset after the session expired: %v", err)
	}
	if got := sim.Resets("1"); !slices.Equal(got, []string{"ForceOff"}) {
		t.Fatalf("resets = %v, want one ForceOff", got)
	}
	if got := sim.ActiveSessions(); got != 1 {
		t.Fatalf("active sessions = %d, want 1", got)
	}
}

// A 401 on a session this very call made means wrong credentials: one
// login, an authentication error, no second try that could lock the account.
func TestRejectedLoginIsNotRetried(t *testing.T) {
	sim, url := startSim(t, redfishsim.Options{Systems: 1})
	c := newClient(t, url, sim.SystemPath("1"), "wrong", "session")
	before := sim.Requests()
	_, err := c.PowerState(testCtx(t, 5*time.Second))
	if k, ok := bmc.KindOf(err); !ok || k != bmc.Auth {
		t.Fatalf("err = %v, want an authentication error", err)
	}
	// The service root, then the login.
	if got := sim.Requests() - before; got > 2 {
		t.Fatalf("a rejected login cost %d requests, want at most 2", got)
	}
}

// The BMC closes kept-alive connections as the next request arrives (its
// keep-alive timeout): reads and the reset POSTs are sent again on a new
// connection, once, and succeed.
func TestConnectionClosedByTheBMCIsRedialled(t *testing.T) {
	for _, auth := range []string{"basic", "session"} {
		t.Run(auth, func(t *testing.T) {
			sim, url := startSim(t, redfishsim.Options{Systems: 1})
			c := newClient(t, url, sim.SystemPath("1"), "password", auth)
			ctx := testCtx(t, 5*time.Second)
			if _, err := c.PowerState(ctx); err != nil {
				t.Fatal(err)
			}
			sim.SetDropReusedConnections(true)
			for i, target := range []string{node.PowerOff, node.PowerOn} {
				if err := c.SetPowerState(ctx, target, bmc.Policy{}); err != nil {
					t.Fatalf("step %d: %v", i, err)
				}
				if got, err := c.PowerState(ctx); err != nil || got != target {
					t.Fatalf("step %d: read %q, %v", i, got, err)
				}
			}
			if sim.DroppedConnections() == 0 {
				t.Fatal("the BMC never closed a connection: the test tests nothing")
			}
			if got := sim.Resets("1"); !slices.Equal(got, []string{"ForceOff", "On"}) {
				t.Fatalf("resets = %v, want each sent once", got)
			}
		})
	}
}
