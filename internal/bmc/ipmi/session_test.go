package ipmi

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/metalpower/metalpower/internal/bmc"
	"github.com/metalpower/metalpower/internal/node"
	"github.com/metalpower/metalpower/internal/testbed/sim/ipmisim"
)

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// sessionOf is c's current session, read in turn with calls and the
// client's timer.
func sessionOf(c *Client) *session {
	c.turn <- struct{}{}
	defer func() { <-c.turn }()
	return c.sess
}

func newClient(b *ipmisim.BMC, opts Options) *Client {
	return New(Info{Address: b.Host, Port: b.Port, Username: "admin", Password: "password", CipherSuite: -1}, opts)
}

// warmClient is a client of a new simulated BMC that has read once, and
// the session that read opened.
func warmClient(t *testing.T, fleet ipmisim.Options, opts Options) (*ipmisim.Fleet, *ipmisim.BMC, *Client, *session) {
	t.Helper()
	f := startFleet(t, fleet)
	b := f.BMCs()[0]
	c := newClient(b, opts)
	t.Cleanup(func() { c.Close() })
	if _, err := c.PowerState(testCtx(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	return f, b, c, sessionOf(c)
}

// go-ipmi's keepalive fires 30 s into a session; the gate keeps it off the
// wire, so it never interleaves with a call of ours.
func TestKeepaliveNeverReachesTheWire(t *testing.T) {
	t.Parallel()
	f := startFleet(t, ipmisim.Options{})
	b := f.BMCs()[0]
	opts := Options{}.withDefaults()
	release, err := opts.Sessions.Acquire(context.Background(), "k")
	if err != nil {
		t.Fatal(err)
	}
	s, err := openSession(testCtx(t, 5*time.Second), b.Host, b.Port, "admin", "password", -1, opts, release)
	if err != nil {
		t.Fatal(err)
	}
	before := b.Received()
	waitForStray := time.Now().Add(keepalivePeriod + 5*time.Second)
	for s.sock.stray.Load() == 0 && time.Now().Before(waitForStray) {
		time.Sleep(50 * time.Millisecond)
	}
	if s.sock.stray.Load() == 0 {
		t.Fatal("go-ipmi's keepalive never fired; the test no longer sees it")
	}
	if got := b.Received() - before; got != 0 {
		t.Fatalf("the BMC received %d datagrams from the keepalive", got)
	}
	if s.usable(time.Now(), Options{SessionIdleTimeout: time.Hour, SessionMaxAge: time.Hour}.withDefaults()) {
		t.Fatal("a session whose keepalive fired is still usable")
	}
	s.lapse()
	s.lapse() // twice is harmless
}

func TestIdleSessionIsClosedNotKept(t *testing.T) {
	t.Parallel()
	f := startFleet(t, ipmisim.Options{})
	b := f.BMCs()[0]
	c := newClient(b, Options{SessionIdleTimeout: 100 * time.Millisecond})
	defer c.Close()
	if _, err := c.PowerState(testCtx(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	if b.Sessions() != 1 {
		t.Fatalf("BMC sessions = %d after a read, want 1", b.Sessions())
	}
	// No further call: the client's own timer closes the session, and the
	// BMC is told (Close Session), so its table frees the slot.
	waitFor(t, "the idle session to be closed on the BMC", func() bool { return b.Sessions() == 0 })
	waitFor(t, "the session slot to be released", func() bool { return c.opts.Sessions.Open(c.info.HostPort()) == 0 })
}

func TestSessionIsReusedWhileWarm(t *testing.T) {
	_, b, c, first := warmClient(t, ipmisim.Options{}, Options{})
	before := b.Received()
	if _, err := c.PowerState(testCtx(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	if sessionOf(c) != first {
		t.Fatal("a warm session was replaced")
	}
	if got := b.Received() - before; got != 1 {
		t.Fatalf("a warm read took %d datagrams, want 1", got)
	}
}

// A BMC restart forgets every session; the next call spends one attempt on
// the dead session, then opens a new one and succeeds within the same call.
func TestDeadSessionIsReplacedWithinTheCall(t *testing.T) {
	f, b, c, old := warmClient(t, ipmisim.Options{}, Options{AttemptTimeout: 300 * time.Millisecond, Retries: 3})
	ctx := testCtx(t, 10*time.Second)
	if err := f.Restart(b); err != nil {
		t.Fatal(err)
	}
	before := b.Received()
	if got, err := c.PowerState(ctx); err != nil || got != node.PowerOn {
		t.Fatalf("PowerState after a BMC restart = %q, %v", got, err)
	}
	if sessionOf(c) == old {
		t.Fatal("the dead session was kept")
	}
	// One attempt on the dead session, not Retries+1; Close Session for it
	// (in case the BMC still holds it); a fresh session (channel auth, open
	// session, RAKP 1 and 3, privilege) and the read.
	waitFor(t, "the dead session's close", func() bool { return c.opts.Sessions.Open(c.info.HostPort()) == 1 })
	if got := b.Received() - before; got != 1+1+5+1 {
		t.Fatalf("the call sent %d datagrams, want 8 (one on the dead session)", got)
	}
	if b.Sessions() != 1 {
		t.Fatalf("BMC sessions = %d, want 1", b.Sessions())
	}
}

// A BMC that answered a command with a completion code still holds the
// session: keep it.
func TestRefusedCommandKeepsTheSession(t *testing.T) {
	_, b, c, first := warmClient(t, ipmisim.Options{}, Options{})
	b.SetFault(ipmisim.FaultBusy)
	if err := c.SetPowerState(testCtx(t, 5*time.Second), node.PowerOff, bmc.Policy{}); err == nil {
		t.Fatal("busy BMC accepted the command")
	}
	if sessionOf(c) != first {
		t.Fatal("the session was dropped after the BMC answered")
	}
}

func TestSessionsPerBMCAreBounded(t *testing.T) {
	f := startFleet(t, ipmisim.Options{Latency: 5 * time.Millisecond})
	b := f.BMCs()[0]
	shared := NewSessions(2)
	// Four clients on one BMC (four nodes, say, with their own
	// credentials), each retiring its session after every call.
	var clients []*Client
	for range 4 {
		c := newClient(b, Options{Sessions: shared, SessionMaxAge: time.Nanosecond})
		defer c.Close()
		clients = append(clients, c)
	}
	ctx := testCtx(t, 20*time.Second)
	var wg sync.WaitGroup
	stop, probed := make(chan struct{}), make(chan int)
	go func() {
		peak := 0
		for {
			select {
			case <-stop:
				probed <- peak
				return
			default:
			}
			peak = max(peak, b.Sessions())
			time.Sleep(200 * time.Microsecond)
		}
	}()
	for _, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 10 {
				if _, err := c.PowerState(ctx); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	peak := <-probed
	if peak > 2 {
		t.Fatalf("the BMC held %d sessions at once, want at most 2", peak)
	}
	if peak == 0 {
		t.Fatal("never saw a session: the probe is broken")
	}
}

func TestSessionsAcquireHonoursTheContext(t *testing.T) {
	l := NewSessions(1)
	release, err := l.Acquire(context.Background(), "a")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := l.Acquire(ctx, "a"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want the context's", err)
	}
	if r, err := l.Acquire(context.Background(), "b"); err != nil {
		t.Fatalf("another BMC has its own slots: %v", err)
	} else {
		r()
	}
	got := make(chan error)
	go func() {
		r, err := l.Acquire(context.Background(), "a")
		if err == nil {
			r()
		}
		got <- err
	}()
	release()
	release() // a second release is a no-op, not a second slot
	if err := <-got; err != nil {
		t.Fatal(err)
	}
	if l.Open("a") != 0 {
		t.Fatalf("Open = %d after every release", l.Open("a"))
	}
}

// Calls cancelled at every moment, a BMC that hangs, answers twice or late,
// restarts and goes silent, and clients closed under load: nothing panics,
// every error is a classified transient one, and the client works after.
func TestCancellationsAndMisbehaviourNeverPanic(t *testing.T) {
	f := startFleet(t, ipmisim.Options{BMCs: 3, Latency: 2 * time.Millisecond})
	opts := Options{AttemptTimeout: 40 * time.Millisecond, Retries: 1, SessionIdleTimeout: 30 * time.Millisecond}
	clients := []*Client{newClient(f.BMCs()[0], opts), newClient(f.BMCs()[1], opts), newClient(f.BMCs()[2], opts)}
	var wg sync.WaitGroup
	for g := range 12 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(g), 7))
			for range 40 {
				c := clients[rng.IntN(len(clients))]
				ctx, cancel := context.WithTimeout(context.Background(), time.Duration(rng.IntN(60))*time.Millisecond)
				var err error
				switch rng.IntN(4) {
				case 0:
					err = c.SetPowerState(ctx, node.PowerOn, bmc.Policy{})
				case 1:
					c.Close()
				default:
					_, err = c.PowerState(ctx)
				}
				cancel()
				if err != nil {
					if k, ok := bmc.KindOf(err); !ok || k != bmc.Transient {
						t.Errorf("err = %v, want a transient BMC error", err)
					}
				}
			}
		}()
	}
	faults := []func(b *ipmisim.BMC){
		func(b *ipmisim.BMC) { b.SetFault(ipmisim.FaultHang) },
		func(b *ipmisim.BMC) { b.SetFault(ipmisim.FaultNone) },
		func(b *ipmisim.BMC) { b.SetDuplicate(true) },
		func(b *ipmisim.BMC) { b.SetDuplicate(false) },
		func(b *ipmisim.BMC) { b.SetSilent(true) },
		func(b *ipmisim.BMC) { b.SetSilent(false) },
		func(b *ipmisim.BMC) { f.Restart(b) },
	}
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	rng := rand.New(rand.NewPCG(1, 2))
	for loop := true; loop; {
		select {
		case <-done:
			loop = false
		case <-time.After(15 * time.Millisecond):
			faults[rng.IntN(len(faults))](f.BMCs()[rng.IntN(3)])
		}
	}
	for i, b := range f.BMCs() {
		b.SetFault(ipmisim.FaultNone)
		b.SetSilent(false)
		b.SetDuplicate(false)
		// Sessions closed while the BMC was silent never heard their Close
		// Session and fill its table until its own timeout (60 s): a
		// restart empties it, as it would on real hardware.
		if err := f.Restart(b); err != nil {
			t.Fatal(err)
		}
		if got, err := clients[i].PowerState(testCtx(t, 5*time.Second)); err != nil || got == "" {
			t.Fatalf("BMC %d after the storm: %q, %v", i, got, err)
		}
		clients[i].Close()
		if n := clients[i].opts.Sessions.Open(clients[i].info.HostPort()); n != 0 {
			t.Fatalf("BMC %d: %d session slots held after Close", i, n)
		}
		if n := b.Sessions(); n != 0 {
			t.Fatalf("BMC %d holds %d sessions after Close", i, n)
		}
	}
}

// Answers that arrive after the attempt timed out: the late answer is
// matched to the retry of the same request. (A reused session gets a single
// attempt, so each call here also replaces its session; slow, but right.)
func TestLateAnswers(t *testing.T) {
	f := startFleet(t, ipmisim.Options{Latency: 150 * time.Millisecond})
	b := f.BMCs()[0]
	c := newClient(b, Options{AttemptTimeout: 100 * time.Millisecond, Retries: 3})
	defer c.Close()
	ctx := testCtx(t, 10*time.Second)
	for i := range 3 {
		if got, err := c.PowerState(ctx); err != nil || got != node.PowerOn {
			t.Fatalf("read %d: %q, %v", i, got, err)
		}
	}
}

// Every answer twice: the duplicate is discarded by the next call, and the
// session is kept. (go-ipmi takes the first datagram as the answer during
// session set-up, so a duplicate there fails the set-up: an error, which
// the storm test above covers, never a wrong reading.)
func TestDuplicateAnswers(t *testing.T) {
	_, b, c, first := warmClient(t, ipmisim.Options{}, Options{})
	ctx := testCtx(t, 10*time.Second)
	b.SetDuplicate(true)
	for i, target := range []string{node.PowerOff, node.PowerOn, node.PowerOff} {
		if err := c.SetPowerState(ctx, target, bmc.Policy{}); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		if got, err := c.PowerState(ctx); err != nil || got != target {
			t.Fatalf("step %d: read %q, %v; want %q", i, got, err, target)
		}
	}
	if sessionOf(c) != first {
		t.Fatal("duplicates cost the session")
	}
}

// The retirement timer fires while a call holds the session (here, waiting
// for the pacer until it is cancelled): the session is still closed once
// that call ends, however it ends.
func TestSessionIsRetiredAfterABusyCallEnds(t *testing.T) {
	f := startFleet(t, ipmisim.Options{})
	b := f.BMCs()[0]
	c := newClient(b, Options{SessionIdleTimeout: 50 * time.Millisecond, Pacer: NewPacer(time.Hour)})
	defer c.Close()
	if _, err := c.PowerState(testCtx(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if _, err := c.PowerState(ctx); err == nil {
		t.Fatal("a call paced an hour out succeeded")
	}
	waitFor(t, "the session to be closed on the BMC", func() bool { return b.Sessions() == 0 })
}
