// Package ipmisim runs a fleet of simulated IPMI BMCs on go-ipmi's reference
// BMC (pkg/server), one UDP port per BMC on 127.0.0.1, with a power state
// that follows every chassis control command and knobs for latency,
// power-transition delay and faults.
package ipmisim

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bougou/go-ipmi/pkg/bmc"
	"github.com/bougou/go-ipmi/pkg/clock"
	"github.com/bougou/go-ipmi/pkg/hal"
	"github.com/bougou/go-ipmi/pkg/hal/mock"
	"github.com/bougou/go-ipmi/pkg/server"
	"github.com/bougou/go-ipmi/pkg/transport"
	"github.com/bougou/go-ipmi/pkg/transport/udp"
	"github.com/bougou/go-ipmi/pkg/types"
)

// Fault is an injected misbehaviour of one BMC.
type Fault string

const (
	FaultNone Fault = ""
	// FaultHang: chassis commands never answer (the client times out).
	FaultHang Fault = "hang"
	// FaultError: chassis commands fail with completion code 0xFF.
	FaultError Fault = "error"
	// FaultBusy: chassis commands fail with "node busy" (0xC0), as a BMC
	// still handling the previous command answers.
	FaultBusy Fault = "busy"
	// FaultStuck: power commands are accepted but the state never changes.
	FaultStuck Fault = "stuck"
	// FaultFlap: the reported power state alternates on every read.
	FaultFlap Fault = "flap"
)

// Options configures a fleet.
type Options struct {
	BMCs               int
	Username, Password string
	// Latency is added to every chassis command.
	Latency time.Duration
	// TransitionDelay: a power change takes effect this long after the
	// command is accepted, as real hardware does.
	TransitionDelay time.Duration
	// Addresses are the loopback addresses BMC i listens on, in turn
	// (default 127.0.0.1 for all): BMCs that share an address on
	// different ports, or each on its own.
	Addresses []string
}

// Fleet is a set of running BMCs.
type Fleet struct {
	ctx    context.Context
	opts   Options
	cancel context.CancelFunc
	wg     sync.WaitGroup
	bmcs   []*BMC
}

// BMC is one simulated BMC and the server it manages.
type BMC struct {
	Host  string
	Port  int
	ch    *chassis
	wire  *wire
	index int

	mu  sync.Mutex
	srv *server.Server
	sim *bmc.BMC
}

// Start runs opts.BMCs simulated BMCs, each powered on.
func Start(opts Options) (*Fleet, error) {
	if opts.BMCs <= 0 {
		opts.BMCs = 1
	}
	if opts.Username == "" {
		opts.Username, opts.Password = "admin", "password"
	}
	ctx, cancel := context.WithCancel(context.Background())
	f := &Fleet{ctx: ctx, cancel: cancel, opts: opts}
	for i := 0; i < opts.BMCs; i++ {
		ch := &chassis{Chassis: &mock.Chassis{}, on: true, opts: opts, done: ctx.Done()}
		host := "127.0.0.1"
		if len(opts.Addresses) > 0 {
			host = opts.Addresses[i%len(opts.Addresses)]
		}
		b := &BMC{Host: host, ch: ch, wire: &wire{}, index: i}
		if err := f.serve(b); err != nil {
			f.Close()
			return nil, err
		}
		f.bmcs = append(f.bmcs, b)
	}
	return f, nil
}

// serve starts b's server on b.Port (a free port when 0) with a fresh
// session table, and the chassis b already has.
func (f *Fleet) serve(b *BMC) error {
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP(b.Host), Port: b.Port})
	if err != nil {
		return fmt.Errorf("bmc %d: listen: %w", b.index, err)
	}
	h := &halWithChassis{HAL: mock.New(), ch: b.ch}
	var guid [16]byte
	copy(guid[:], fmt.Sprintf("metalpower-%05d", b.index))
	info := bmc.DeviceInfo{DeviceID: 32, DeviceRevision: 1, FirmwareMajor: 1, IPMIVersion: 0x20, ManufacturerID: 0x000157, ProductID: 1, AdditionalDeviceSupport: 0x39}
	sim := bmc.New(info, guid, h, bmc.WithClock(clock.Real))
	user, err := sim.Users.Add(2, f.opts.Username)
	if err != nil {
		conn.Close()
		return fmt.Errorf("bmc %d: add user: %w", b.index, err)
	}
	user.SetPassword([]byte(f.opts.Password))
	user.Enabled = true
	user.ChannelAccess[1] = bmc.UserChannelAccess{MaxPrivilege: bmc.PrivilegeLevelAdministrator, Enabled: true}
	b.Port = conn.LocalAddr().(*net.UDPAddr).Port
	b.wire.swap(udp.Wrap(conn))
	srv := server.NewServer(sim, b.wire)
	b.mu.Lock()
	b.srv, b.sim = srv, sim
	b.mu.Unlock()
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		srv.Serve(f.ctx)
	}()
	return nil
}

// Restart stops b's BMC and starts it again on the same port, as a BMC
// reboot does: the power state stays, every session is forgotten.
func (f *Fleet) Restart(b *BMC) error {
	b.mu.Lock()
	srv := b.srv
	b.mu.Unlock()
	srv.Close()
	return f.serve(b)
}

// BMCs returns the fleet's BMCs in start order.
func (f *Fleet) BMCs() []*BMC { return f.bmcs }

// Close stops every BMC.
func (f *Fleet) Close() {
	f.cancel()
	for _, b := range f.bmcs {
		b.mu.Lock()
		b.srv.Close()
		b.mu.Unlock()
	}
	f.wg.Wait()
}

// PowerOn reports the real power state (not affected by FaultFlap).
func (b *BMC) PowerOn() bool { return b.ch.isOn() }

// SetPowerOn sets the power state directly, as someone at the server would.
func (b *BMC) SetPowerOn(on bool) {
	b.ch.mu.Lock()
	defer b.ch.mu.Unlock()
	b.ch.on, b.ch.pendingAt = on, time.Time{}
}

// SetFault injects a fault; FaultNone clears it.
func (b *BMC) SetFault(f Fault) {
	b.ch.mu.Lock()
	defer b.ch.mu.Unlock()
	b.ch.fault = f
}

// SetSilent makes the BMC drop every datagram unanswered, as a BMC does
// for a session it has dropped, or one that is down; false restores it.
func (b *BMC) SetSilent(silent bool) { b.wire.silent.Store(silent) }

// SetDuplicate makes the BMC send every answer twice, as a BMC retrying
// on a lossy link does; false restores it.
func (b *BMC) SetDuplicate(dup bool) { b.wire.dup.Store(dup) }

// Received counts the datagrams that reached the BMC, answered or not.
func (b *BMC) Received() int64 { return b.wire.received.Load() }

// Commands splits traffic into commands: packets closer than gap belong
// to one command (a session's set-up and its request, say).
func Commands(traffic []Packet, gap time.Duration) [][]Packet {
	var out [][]Packet
	for i, p := range traffic {
		if i == 0 || p.At.Sub(traffic[i-1].At) >= gap {
			out = append(out, nil)
		}
		out[len(out)-1] = append(out[len(out)-1], p)
	}
	return out
}

// Traffic returns the datagrams the BMC received and sent so far, in
// order (the first 10,000).
func (b *BMC) Traffic() []Packet {
	b.wire.mu.Lock()
	defer b.wire.mu.Unlock()
	return append([]Packet(nil), b.wire.traffic...)
}

// Sessions is the number of sessions the BMC holds open.
func (b *BMC) Sessions() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.sim.Sessions.Count()
}

// wire is a BMC's socket: it counts datagrams, drops them while the BMC is
// silent and doubles answers on request. It outlives restarts.
type wire struct {
	mu       sync.Mutex
	conn     transport.PacketConn
	silent   atomic.Bool
	dup      atomic.Bool
	received atomic.Int64
	traffic  []Packet // guarded by mu; the first maxTraffic packets
}

// Packet is one datagram on a BMC's wire.
type Packet struct {
	At time.Time
	In bool // received from a client (otherwise sent to one)
}

const maxTraffic = 10000

func (w *wire) record(in bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.traffic) < maxTraffic {
		w.traffic = append(w.traffic, Packet{At: time.Now(), In: in})
	}
}

func (w *wire) swap(c transport.PacketConn) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.conn = c
}

func (w *wire) current() transport.PacketConn {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.conn
}

func (w *wire) ReadFrom(buf []byte) (int, net.Addr, error) {
	c := w.current()
	for {
		n, addr, err := c.ReadFrom(buf)
		if err == nil {
			w.received.Add(1)
			w.record(true)
			if w.silent.Load() {
				continue
			}
		}
		return n, addr, err
	}
}

func (w *wire) WriteTo(data []byte, addr net.Addr) (int, error) {
	c := w.current()
	w.record(false)
	if w.dup.Load() {
		c.WriteTo(data, addr)
	}
	return c.WriteTo(data, addr)
}

func (w *wire) Close() error { return w.current().Close() }

// Actions lists the chassis controls received, in order: "on", "off",
// "cycle", "reset", "soft".
func (b *BMC) Actions() []string {
	b.ch.mu.Lock()
	defer b.ch.mu.Unlock()
	return append([]string(nil), b.ch.actions...)
}

// halWithChassis replaces the mock HAL's chassis, whose power does not
// follow cycle or soft shutdown.
type halWithChassis struct {
	*mock.HAL
	ch *chassis
}

func (h *halWithChassis) Chassis() hal.ChassisHAL { return h.ch }

// chassis keeps one server's power. A pending change is applied lazily when
// its time comes, so a fleet needs no timers.
type chassis struct {
	*mock.Chassis // identify, boot flags: unchanged from the reference
	opts          Options
	done          <-chan struct{}

	mu        sync.Mutex
	on        bool
	pendingOn bool
	pendingAt time.Time
	fault     Fault
	flapped   bool
	actions   []string
}

var errUnspecified = types.CodeUnspecifiedError

// enter applies latency and faults common to every chassis command.
func (c *chassis) enter(ctx context.Context) error {
	c.mu.Lock()
	fault := c.fault
	c.mu.Unlock()
	if c.opts.Latency > 0 {
		select {
		case <-time.After(c.opts.Latency):
		case <-c.done:
		}
	}
	switch fault {
	case FaultHang:
		select {
		case <-ctx.Done():
		case <-c.done:
		}
		return errors.New("hung")
	case FaultError:
		return errUnspecified
	case FaultBusy:
		return types.CodeNodeBusy
	}
	return nil
}

func (c *chassis) isOn() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.settle()
	return c.on
}

// settle applies a pending change whose time has come. Callers hold mu.
func (c *chassis) settle() {
	if !c.pendingAt.IsZero() && !time.Now().Before(c.pendingAt) {
		c.on, c.pendingAt = c.pendingOn, time.Time{}
	}
}

// change records an action and schedules the resulting state.
func (c *chassis) change(action string, on bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.settle()
	c.actions = append(c.actions, action)
	if c.fault == FaultStuck {
		return
	}
	if c.opts.TransitionDelay <= 0 {
		c.on = on
		return
	}
	c.pendingOn, c.pendingAt = on, time.Now().Add(c.opts.TransitionDelay)
}

func (c *chassis) PowerState(ctx context.Context) (bool, error) {
	if err := c.enter(ctx); err != nil {
		return false, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.settle()
	if c.fault == FaultFlap {
		c.flapped = !c.flapped
		return c.flapped, nil
	}
	return c.on, nil
}

func (c *chassis) SetPower(ctx context.Context, on bool) error {
	if err := c.enter(ctx); err != nil {
		return err
	}
	c.change(map[bool]string{true: "on", false: "off"}[on], on)
	return nil
}

// PowerCycle, like a real chassis, ends powered on; from off it powers on.
func (c *chassis) PowerCycle(ctx context.Context) error {
	if err := c.enter(ctx); err != nil {
		return err
	}
	c.change("cycle", true)
	return nil
}

// ColdReset is the hard reset: a pulse, the server stays (or comes) on.
func (c *chassis) ColdReset(ctx context.Context) error {
	if err := c.enter(ctx); err != nil {
		return err
	}
	c.change("reset", true)
	return nil
}

// WarmReset is what go-ipmi's server calls for a soft shutdown (ACPI
// power button): the OS shuts down and the server ends off.
func (c *chassis) WarmReset(ctx context.Context) error {
	if err := c.enter(ctx); err != nil {
		return err
	}
	c.change("soft", false)
	return nil
}
