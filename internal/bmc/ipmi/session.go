package ipmi

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bougou/go-ipmi/pkg/client"
	"github.com/bougou/go-ipmi/pkg/types"
)

// metalpower owns the RMCP+ session lifecycle rather than go-ipmi, because
// two of go-ipmi's own behaviours are unsafe for a long-running process:
//
//   - Connect starts a keepalive goroutine that sends Get Session Info every
//     30 s with a context that is never cancelled. It races our requests on
//     the session, and if it is in flight while the client closes, its
//     exchange goroutine writes to the nil connection Close left behind: a
//     panic in a library goroutine, which no recover can catch.
//   - Close sends Close Session and waits for the answer, which a BMC that
//     already dropped the session never sends.
//
// So every session runs on a socket of ours, handed to go-ipmi through its
// proxy dialer (sessionConn), which:
//
//   - refuses writes unless metalpower opened the gate for one of its own
//     calls, so the keepalive never reaches the wire;
//   - on Close closes the socket and reports an error, so go-ipmi keeps its
//     connection field (it clears it only when Close succeeds) and any late
//     exchange gets net.ErrClosed instead of a nil dereference.
//
// and every session is retired by our own timers, idle after
// Options.SessionIdleTimeout and always before go-ipmi's keepalive period,
// so the keepalive never even fires on a live session.

// keepalivePeriod is go-ipmi's client.DefaultKeepAliveIntervalSec: the age
// at which the library's keepalive first fires on a session.
const keepalivePeriod = time.Duration(client.DefaultKeepAliveIntervalSec) * time.Second

var (
	// errGateClosed refuses a write metalpower did not make (go-ipmi's
	// keepalive).
	errGateClosed = errors.New("ipmi: write outside a metalpower call refused")
	// errSocketKept is what sessionConn.Close reports so that go-ipmi keeps
	// its (now closed) connection rather than a nil one.
	errSocketKept = errors.New("ipmi: socket closed, connection kept")
	// errLibraryPanic wraps a panic raised by go-ipmi on our goroutine.
	errLibraryPanic = errors.New("ipmi: library panic")
)

// sessionConn is the UDP socket under one session.
type sessionConn struct {
	*net.UDPConn
	gate   atomic.Bool
	stray  atomic.Int64 // writes refused because the gate was shut
	closed sync.Once
}

func (c *sessionConn) Write(b []byte) (int, error) {
	if !c.gate.Load() {
		c.stray.Add(1)
		return 0, errGateClosed
	}
	return c.UDPConn.Write(b)
}

// Close closes the socket; see errSocketKept for the error it returns.
func (c *sessionConn) Close() error {
	c.closed.Do(func() { c.UDPConn.Close() })
	return errSocketKept
}

// dialer hands go-ipmi the socket we made (client.WithUDPProxy).
type dialer struct{ conn *sessionConn }

func (d dialer) Dial(network, addr string) (net.Conn, error) { return d.conn, nil }

// session is one RMCP+ session and its socket.
type session struct {
	conn     *client.Client
	sock     *sessionConn
	release  func() // gives the slot back to the per-BMC limit
	opened   time.Time
	lastUsed time.Time
	closing  sync.Once
}

// openSession dials the BMC and establishes a session. The caller holds a
// slot of the per-BMC session limit and passes its release.
func openSession(ctx context.Context, host string, port int, user, password string, suite int, opts Options, release func()) (*session, error) {
	raddr, err := net.ResolveUDPAddr("udp", net.JoinHostPort(host, strconv.Itoa(port)))
	if err != nil {
		release()
		return nil, err
	}
	udp, err := net.DialUDP("udp", nil, raddr)
	if err != nil {
		release()
		return nil, err
	}
	sock := &sessionConn{UDPConn: udp}
	conn, err := client.NewClient(host, port, user, password)
	if err != nil {
		udp.Close()
		release()
		return nil, err
	}
	conn.WithUDPProxy(dialer{sock}).WithTimeout(opts.spacedAttempt()).WithRetry(opts.Retries)
	if suite >= 0 {
		conn.WithCipherSuiteID(types.CipherSuiteID(suite))
	} else {
		// Suite 17 (SHA-256) first, then 3 (SHA-1), as ipmitool does; a
		// pinned list also skips the cipher suite discovery that BMCs
		// ignoring it (ipmi_sim) answer only after a long stall.
		conn.WithCipherSuiteID(types.CipherSuiteID17, types.CipherSuiteID3)
	}
	s := &session{conn: conn, sock: sock, release: release, opened: time.Now()}
	s.lastUsed = s.opened
	if err := s.run(ctx, func(ctx context.Context, c *client.Client) error { return c.Connect(ctx) }); err != nil {
		s.lapse()
		return nil, err
	}
	return s, nil
}

// run makes one call on the session with the gate open. A panic in go-ipmi
// on this goroutine becomes an error.
func (s *session) run(ctx context.Context, fn func(context.Context, *client.Client) error) (err error) {
	s.sock.gate.Store(true)
	defer s.sock.gate.Store(false)
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: %v", errLibraryPanic, r)
		}
	}()
	return fn(ctx, s.conn)
}

// usable reports whether a call may start on the session at now: it was
// used recently enough that the BMC still holds it, go-ipmi's keepalive
// has not fired (no stray write), and the call will end, even after all
// its attempts, before the keepalive would.
func (s *session) usable(now time.Time, opts Options) bool {
	return s.sock.stray.Load() == 0 &&
		now.Sub(s.lastUsed) < opts.SessionIdleTimeout &&
		now.Sub(s.opened) < opts.maxAge()
}

// retireAt is when the session must be closed if it is not used again.
func (s *session) retireAt(opts Options) time.Time {
	idle := s.lastUsed.Add(opts.SessionIdleTimeout)
	if age := s.opened.Add(opts.maxAge()); age.Before(idle) {
		return age
	}
	return idle
}

// closeAsync ends a session: Close Session goes out, and its answer is
// awaited (one attempt) on a goroutine of its own, so no caller ever waits
// for it, even when the BMC dropped the session and never answers. It is
// sent whatever the session's state, because a BMC that still holds the
// session would otherwise keep a slot of its small session table until its
// own timeout. The slot of the per-BMC limit is released when the close is
// over, and then the returned channel is closed.
func (s *session) closeAsync(attempt time.Duration) <-chan struct{} {
	done := make(chan struct{})
	s.closing.Do(func() {
		go func() {
			defer func() {
				recover() // contained: a close that panics is still a close
				s.sock.Close()
				s.release()
				close(done)
			}()
			// Two attempts' time: an exchange abandoned by a cancelled call
			// may hold the socket for one attempt before Close Session goes.
			ctx, cancel := context.WithTimeout(context.Background(), 2*attempt)
			defer cancel()
			s.conn.WithRetry(0)
			s.sock.gate.Store(true)
			s.conn.Close(ctx)
		}()
	})
	return done
}

// lapse ends a session that never got established, without a word to the
// BMC: the socket closes first, which ends any exchange still reading, then
// go-ipmi's Close stops its keepalive with a cancelled context, so it sends
// nothing and returns at once.
func (s *session) lapse() {
	s.closing.Do(func() {
		s.sock.Close()
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		func() {
			defer func() { recover() }()
			s.conn.Close(ctx)
		}()
		s.release()
	})
}

// Sessions bounds the RMCP+ sessions a process holds open per BMC
// (address and port), counting those still being closed. BMCs have small
// session tables (often 4 to 16, shared with every other tool), so one
// process must not fill them. One Sessions is shared by every client of a
// process, as the Pacer is.
type Sessions struct {
	max  int
	mu   sync.Mutex
	used map[string]int
	wake map[string]chan struct{}
}

// DefaultMaxSessionsPerBMC leaves room for one session being retired while
// its successor opens.
const DefaultMaxSessionsPerBMC = 2

// NewSessions returns a limit of max sessions per BMC (max < 1 takes
// DefaultMaxSessionsPerBMC).
func NewSessions(max int) *Sessions {
	if max < 1 {
		max = DefaultMaxSessionsPerBMC
	}
	return &Sessions{max: max, used: map[string]int{}, wake: map[string]chan struct{}{}}
}

// Acquire waits for a free session slot at key and returns its release.
func (l *Sessions) Acquire(ctx context.Context, key string) (func(), error) {
	for {
		l.mu.Lock()
		if l.used[key] < l.max {
			l.used[key]++
			l.mu.Unlock()
			var once sync.Once
			return func() { once.Do(func() { l.put(key) }) }, nil
		}
		ch, ok := l.wake[key]
		if !ok {
			ch = make(chan struct{})
			l.wake[key] = ch
		}
		l.mu.Unlock()
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for one of the %d sessions this process may hold on the BMC: %w", l.max, ctx.Err())
		case <-ch:
		}
	}
}

func (l *Sessions) put(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.used[key]--; l.used[key] <= 0 {
		delete(l.used, key)
	}
	if ch, ok := l.wake[key]; ok {
		close(ch)
		delete(l.wake, key)
	}
}

// Open is the number of sessions held at key.
func (l *Sessions) Open(key string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.used[key]
}
