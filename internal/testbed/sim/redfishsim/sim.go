// Package redfishsim simulates a fleet of Redfish BMCs behind one HTTP(S)
// server, so that power drivers and real Redfish clients (gofish, sushy,
// redfishtool) can be tested without hardware.
//
// Systems are numbered "1".."N" and reached at /redfish/v1/Systems/<id>.
// Each system is a small struct in a slice; JSON is generated per request
// and power transitions are resolved lazily on read, so a single process
// can serve tens of thousands of systems without a goroutine or timer each.
//
// Each system stands for one BMC, which also serves /redfish/v1/Chassis/<id>
// and /redfish/v1/Managers/<id>; an injected fault affects all three. The
// methods taking a system ID panic on an unknown one, as that is a bug in
// the calling test.
package redfishsim

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Options configures a Sim. The zero value is usable.
type Options struct {
	Systems            int    // number of systems, IDs "1".."N" (default 1)
	Username, Password string // required credentials (default "admin"/"password")
	// Latency is added to every request.
	Latency time.Duration
	// TransitionDelay is how long after a reset is accepted the power state
	// changes, as on real hardware.
	TransitionDelay time.Duration
	// ConflictWindow is how long after a power-off a reset that powers the
	// system on is refused with 409 under FaultConflictAfterOff (default 2s).
	ConflictWindow time.Duration
}

// Fault is a misbehaviour injected into one system.
type Fault string

const (
	FaultNone Fault = ""
	// FaultHang: requests for the system never answer; each blocks until
	// the client gives up or the Sim is closed.
	FaultHang Fault = "hang"
	// FaultServerError: every request for the system answers 500.
	FaultServerError Fault = "500"
	// FaultUnauthorized: every request for the system answers 401, even
	// with the right credentials.
	FaultUnauthorized Fault = "401"
	// FaultConflictAfterOff: a reset that would power the system on within
	// ConflictWindow after a power-off answers 409
	// ActionParameterValueConflict, as Dell iDRAC10 does while it finishes
	// powering off.
	FaultConflictAfterOff Fault = "409-after-off"
	// FaultStuck: resets are accepted (204) but PowerState never changes.
	FaultStuck Fault = "stuck"
	// FaultFlap: the reported PowerState alternates On/Off on every read.
	FaultFlap Fault = "flap"
)

// Power states as Redfish spells them.
const (
	powerOn  = "On"
	powerOff = "Off"
)

// defaultResetTypes is what a system advertises unless
// SetAllowableResetTypes says otherwise.
var defaultResetTypes = []string{
	"On", "ForceOff", "GracefulShutdown", "GracefulRestart",
	"ForceRestart", "PowerCycle", "Nmi", "PushPowerButton",
}

// system is one simulated computer system. It is kept small because a Sim
// may hold tens of thousands of them; all fields are guarded by Sim.mu.
type system struct {
	power     string // state in effect before pendingAt
	pending   string // state that takes effect at pendingAt; "" if none
	pendingAt time.Time
	offAt     time.Time // when the last power-off reset was accepted
	fault     Fault
	flapReads uint32   // reads so far, for FaultFlap
	allowed   []string // nil means defaultResetTypes
	resets    []string
	callers   []string // distinct User-Agents of requests on the system

	bootEnabled, bootTarget, bootMode string
}

// resolve applies a pending transition whose time has come. Doing it on
// read instead of with a timer keeps idle systems free.
func (sys *system) resolve(now time.Time) {
	if sys.pending != "" && !now.Before(sys.pendingAt) {
		sys.power = sys.pending
		sys.pending = ""
	}
}

// intended is the state the system is heading to: the pending state if a
// transition is under way, otherwise the current one. Toggles and restarts
// are computed from it so that two quick button presses cancel out.
func (sys *system) intended() string {
	if sys.pending != "" {
		return sys.pending
	}
	return sys.power
}

func (sys *system) allowedResetTypes() []string {
	if sys.allowed != nil {
		return sys.allowed
	}
	return defaultResetTypes
}

// Sim is a simulated Redfish service. It is safe for concurrent use.
type Sim struct {
	opts     Options
	requests atomic.Int64
	// dropReused: a request on a kept-alive connection closes it unanswered.
	dropReused atomic.Bool
	dropped    atomic.Int64

	// done is closed by Close to release hanging and sleeping handlers.
	done      chan struct{}
	closeOnce sync.Once

	mu       sync.Mutex
	systems  []system            // systems[i] has ID strconv.Itoa(i+1)
	sessions map[string]*session // by token
	nextSess int
	srv      *http.Server
	closed   bool
}

// New returns a Sim with opts.Systems systems, all powered on.
func New(opts Options) *Sim {
	if opts.Systems <= 0 {
		opts.Systems = 1
	}
	if opts.Username == "" {
		opts.Username = "admin"
	}
	if opts.Password == "" {
		opts.Password = "password"
	}
	if opts.ConflictWindow <= 0 {
		opts.ConflictWindow = 2 * time.Second
	}
	s := &Sim{
		opts:     opts,
		done:     make(chan struct{}),
		systems:  make([]system, opts.Systems),
		sessions: make(map[string]*session),
	}
	for i := range s.systems {
		s.systems[i] = system{
			power:       powerOn,
			bootEnabled: "Disabled",
			bootTarget:  "None",
			bootMode:    "UEFI",
		}
	}
	return s
}

// Handler returns the http.Handler serving the Redfish API, for callers
// that run their own server.
func (s *Sim) Handler() http.Handler {
	return http.HandlerFunc(s.serveHTTP)
}

// Start serves plain HTTP on a random loopback port and returns the base
// URL, "http://127.0.0.1:PORT".
func (s *Sim) Start() string {
	ln := s.listen()
	if _, err := s.serve(ln); err != nil {
		panic("redfishsim: " + err.Error())
	}
	return "http://" + ln.Addr().String()
}

// StartTLS is Start over HTTPS with a fresh self-signed certificate, so
// clients must skip verification (as they usually must with BMCs).
func (s *Sim) StartTLS() string {
	cert, err := selfSignedCert()
	if err != nil {
		panic("redfishsim: " + err.Error())
	}
	ln := s.listen()
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}}
	if _, err := s.serve(tls.NewListener(ln, cfg)); err != nil {
		panic("redfishsim: " + err.Error())
	}
	return "https://" + ln.Addr().String()
}

// StartOn serves plain HTTP on ln in the background and returns the
// base URL.
func (s *Sim) StartOn(ln net.Listener) (string, error) {
	if _, err := s.serve(ln); err != nil {
		return "", err
	}
	return "http://" + ln.Addr().String(), nil
}

// ListenAndServe serves plain HTTP on addr until Close, like
// http.ListenAndServe; after Close it returns http.ErrServerClosed.
func (s *Sim) ListenAndServe(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	errc, err := s.serve(ln)
	if err != nil {
		return err
	}
	return <-errc
}

func (s *Sim) listen() net.Listener {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic("redfishsim: failed to listen on a port: " + err.Error())
	}
	return ln
}

// serve serves on ln in the background; the channel gets Serve's result.
// A Sim runs one server at most, because Close must know what to stop.
func (s *Sim) serve(ln net.Listener) (<-chan error, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		ln.Close()
		return nil, http.ErrServerClosed
	}
	if s.srv != nil {
		ln.Close()
		return nil, errors.New("Sim already started")
	}
	srv := &http.Server{Handler: s.Handler(), ConnContext: func(ctx context.Context, _ net.Conn) context.Context {
		return context.WithValue(ctx, connKey{}, new(atomic.Int64))
	}}
	s.srv = srv
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	return errc, nil
}

// connKey holds the number of requests a connection has carried.
type connKey struct{}

// SetDropReusedConnections makes the service close a kept-alive connection
// when the next request arrives on it, unanswered: what a client sees when
// the BMC's keep-alive timeout closes the connection as the request goes
// out. Requests on new connections are served. false restores it.
func (s *Sim) SetDropReusedConnections(drop bool) { s.dropReused.Store(drop) }

// DroppedConnections counts connections closed by SetDropReusedConnections.
func (s *Sim) DroppedConnections() int64 { return s.dropped.Load() }

// dropIfReused closes r's connection unanswered when it is a kept-alive one
// and SetDropReusedConnections is on.
func (s *Sim) dropIfReused(w http.ResponseWriter, r *http.Request) bool {
	n, _ := r.Context().Value(connKey{}).(*atomic.Int64)
	if n == nil || n.Add(1) == 1 || !s.dropReused.Load() {
		return false
	}
	if hj, ok := w.(http.Hijacker); ok {
		if conn, _, err := hj.Hijack(); err == nil {
			s.dropped.Add(1)
			conn.Close()
			return true
		}
	}
	return false
}

// Close stops the server, if one was started, and releases every request
// still blocked in a hang or in Latency.
func (s *Sim) Close() {
	s.closeOnce.Do(func() {
		close(s.done)
		s.mu.Lock()
		s.closed = true
		srv := s.srv
		s.mu.Unlock()
		if srv == nil {
			return
		}
		// Shutdown lets handlers woken by done finish writing; Close then
		// drops whatever is left, such as idle keep-alive connections.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		srv.Close()
	})
}

// SystemIDs returns the IDs of all systems, "1".."N".
func (s *Sim) SystemIDs() []string {
	ids := make([]string, len(s.systems))
	for i := range ids {
		ids[i] = strconv.Itoa(i + 1)
	}
	return ids
}

// SystemPath returns the URL path of system id, "/redfish/v1/Systems/<id>".
func (s *Sim) SystemPath(id string) string {
	return "/redfish/v1/Systems/" + id
}

// lookup returns the system with the given ID, or nil. Callers hold s.mu.
// Only canonical decimal IDs match, so "01" is not system 1.
func (s *Sim) lookup(id string) *system {
	n, err := strconv.Atoi(id)
	if err != nil || n < 1 || n > len(s.systems) || strconv.Itoa(n) != id {
		return nil
	}
	return &s.systems[n-1]
}

// called records the User-Agent of a request on system id.
func (s *Sim) called(id, agent string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if sys := s.lookup(id); sys != nil && !slices.Contains(sys.callers, agent) {
		sys.callers = append(sys.callers, agent)
	}
}

// Callers returns the distinct User-Agents that called system id (its
// resource and its actions), so a test can tell which workers talked to
// it.
func (s *Sim) Callers(id string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.mustLookup(id).callers)
}

// mustLookup is lookup for the test-facing API, where an unknown ID is a
// bug in the test.
func (s *Sim) mustLookup(id string) *system {
	sys := s.lookup(id)
	if sys == nil {
		panic("redfishsim: no system with ID " + strconv.Quote(id))
	}
	return sys
}

// PowerState returns the real state of system id, "On" or "Off", after any
// transition whose delay has passed. FaultFlap does not affect it.
func (s *Sim) PowerState(id string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	sys := s.mustLookup(id)
	sys.resolve(time.Now())
	return sys.power
}

// SetPowerState sets the state of system id at once, dropping any pending
// transition.
func (s *Sim) SetPowerState(id, state string) {
	if state != powerOn && state != powerOff && state != "Paused" {
		panic("redfishsim: power state must be On, Off or Paused, not " + strconv.Quote(state))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	sys := s.mustLookup(id)
	sys.power = state
	sys.pending = ""
}

// SetFault injects f into the BMC of system id; FaultNone clears it.
func (s *Sim) SetFault(id string, f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sys := s.mustLookup(id)
	sys.fault = f
	sys.flapReads = 0
}

// SetAllowableResetTypes sets the reset types system id advertises and
// accepts. A nil slice restores the default list.
func (s *Sim) SetAllowableResetTypes(id string, types []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sys := s.mustLookup(id)
	if types == nil {
		sys.allowed = nil
		return
	}
	sys.allowed = append([]string{}, types...)
}

// Resets returns the reset types system id accepted so far, in order.
func (s *Sim) Resets(id string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string{}, s.mustLookup(id).resets...)
}

// ActiveSessions returns the number of open SessionService sessions.
func (s *Sim) ActiveSessions() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.sessions)
}

// Requests returns the number of HTTP requests received so far.
func (s *Sim) Requests() int64 {
	return s.requests.Load()
}

// errClosed is returned by wait when the Sim is closed.
var errClosed = errors.New("redfishsim: closed")

// wait sleeps for d, returning early with an error if the request is
// cancelled or the Sim closed. d <= 0 waits until one of those happens.
func (s *Sim) wait(ctx context.Context, d time.Duration) error {
	var timeout <-chan time.Time
	if d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		timeout = t.C
	}
	select {
	case <-timeout:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-s.done:
		return errClosed
	}
}
