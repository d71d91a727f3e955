// Package pool hands out BMC clients by node and keeps them for reuse, so a
// sync pass reuses RMCP+ sessions and HTTP connections instead of paying a
// handshake per read.
package pool

import (
	"context"
	"crypto/sha256"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/metalpower/metalpower/internal/bmc"
	"github.com/metalpower/metalpower/internal/bmc/ipmi"
	"github.com/metalpower/metalpower/internal/bmc/redfish"
	"github.com/metalpower/metalpower/internal/config"
	"github.com/metalpower/metalpower/internal/node"
)

// FromConfig sizes the pool from the configuration.
func FromConfig(cfg config.Config) Options {
	return Options{
		IPMIMinCommandInterval: time.Duration(cfg.IPMI.MinCommandInterval) * time.Second,
		// One Redfish service may manage many of a pass's systems.
		Redfish: redfish.Options{
			MaxConcurrentRequests:   max(4, cfg.Conductor.SyncPowerStateWorkers),
			PowerOnConflictRetries:  cfg.Redfish.PowerOnConflictRetryAttempts,
			PowerOnConflictInterval: time.Duration(cfg.Redfish.PowerOnConflictRetryInterval) * time.Second,
			UserAgent:               UserAgent(cfg.Conductor.ConductorGroup),
		},
	}
}

// UserAgent is what a worker of group tells Redfish BMCs it is.
func UserAgent(group string) string {
	return fmt.Sprintf("metalpower (conductor_group=%q)", strings.ToLower(group))
}

// Options configures the drivers the pool creates.
type Options struct {
	IPMI    ipmi.Options
	Redfish redfish.Options
	// IPMIMinCommandInterval spaces commands to one IPMI BMC ([ipmi]
	// min_command_interval).
	IPMIMinCommandInterval time.Duration
	// SharedPace, when set, keeps that spacing across processes (the node
	// store every worker and API process shares).
	SharedPace ipmi.Shared
	// IdleTimeout closes a client unused for this long (default 2 min).
	IdleTimeout time.Duration
	// Observer, when set, is told of every PowerState and SetPowerState
	// call made through a client the pool hands out (metrics).
	Observer Observer
}

// Observer learns each BMC call's driver, operation ("get_power_state",
// "set_power_state"), latency and error.
type Observer interface {
	ObserveBMCCall(driver, op string, d time.Duration, err error)
}

// BMC operations reported to an Observer.
const (
	OpGetPowerState = "get_power_state"
	OpSetPowerState = "set_power_state"
)

// observed times a client's calls for the pool's Observer.
type observed struct {
	bmc.PowerManager
	driver string
	obs    Observer
}

func (o observed) PowerState(ctx context.Context) (string, error) {
	start := time.Now()
	state, err := o.PowerManager.PowerState(ctx)
	o.obs.ObserveBMCCall(o.driver, OpGetPowerState, time.Since(start), err)
	return state, err
}

func (o observed) SetPowerState(ctx context.Context, target string, p bmc.Policy) error {
	start := time.Now()
	err := o.PowerManager.SetPowerState(ctx, target, p)
	o.obs.ObserveBMCCall(o.driver, OpSetPowerState, time.Since(start), err)
	return err
}

// observe wraps pm when the pool has an Observer.
func (p *Pool) observe(driver string, pm bmc.PowerManager) bmc.PowerManager {
	if p.opts.Observer == nil {
		return pm
	}
	return observed{PowerManager: pm, driver: driver, obs: p.opts.Observer}
}

// Pool is safe for concurrent use.
type Pool struct {
	opts    Options
	mu      sync.Mutex
	clients map[[sha256.Size]byte]*entry
	stop    chan struct{}
	done    chan struct{}
}

// entry is a pooled client: an IPMI client, or a Redfish connection whose
// systems are handed out as cheap handles.
type entry struct {
	pm       bmc.PowerManager
	conn     *redfish.Conn
	lastUsed time.Time
}

func (e *entry) close() {
	if e.conn != nil {
		e.conn.Close()
		return
	}
	e.pm.Close()
}

// sharedPaceLease bounds how long one command holds a BMC's shared pace:
// longer than any command (three attempts of at most 5 s each, or of the
// interval), so only a process that died holding it makes others wait it
// out.
const sharedPaceLease = time.Minute

// New starts a pool; Close it to end every session.
func New(opts Options) *Pool {
	if opts.IdleTimeout <= 0 {
		opts.IdleTimeout = 2 * time.Minute
	}
	opts.IPMI.Pacer = ipmi.NewPacer(opts.IPMIMinCommandInterval)
	if opts.SharedPace != nil {
		opts.IPMI.Pacer.WithShared(opts.SharedPace, sharedPaceLease)
	}
	opts.IPMI.Sessions = ipmi.NewSessions(0)
	p := &Pool{opts: opts, clients: map[[sha256.Size]byte]*entry{}, stop: make(chan struct{}), done: make(chan struct{})}
	go p.reap()
	return p
}

// For returns the client for n's BMC, creating it on first use. A changed
// address, user or password gives a new client, because the key includes a
// hash of them (never the password itself). Redfish systems behind one
// service share its connection.
func (p *Pool) For(n *node.Node) (bmc.PowerManager, error) {
	switch n.Driver {
	case node.DriverIPMI:
		info, err := n.DriverInfo.IPMI()
		if err != nil {
			return nil, &bmc.Error{Kind: bmc.Config, Op: "load driver_info", BMC: n.UUID, Err: err}
		}
		key := keyOf("ipmi", info.HostPort(), info.Username, info.Password, strconv.Itoa(info.CipherSuite))
		e := p.entry(key, func() *entry { return &entry{pm: ipmi.New(info, p.opts.IPMI)} })
		return p.observe(node.DriverIPMI, e.pm), nil
	case node.DriverRedfish:
		info, err := n.DriverInfo.Redfish()
		if err != nil {
			return nil, &bmc.Error{Kind: bmc.Config, Op: "load driver_info", BMC: n.UUID, Err: err}
		}
		key := keyOf("redfish", info.Endpoint, info.Username, info.Password, info.AuthType, strconv.FormatBool(info.VerifyCA), info.CAFile)
		e := p.entry(key, func() *entry { return &entry{conn: redfish.Dial(info, p.opts.Redfish)} })
		return p.observe(node.DriverRedfish, e.conn.System(info.SystemID)), nil
	}
	return nil, &bmc.Error{Kind: bmc.Config, Op: "load driver", BMC: n.UUID, Err: fmt.Errorf("%w: %q", node.ErrUnknownDriver, n.Driver)}
}

func (p *Pool) entry(key [sha256.Size]byte, create func() *entry) *entry {
	p.mu.Lock()
	defer p.mu.Unlock()
	e, ok := p.clients[key]
	if !ok {
		e = create()
		p.clients[key] = e
	}
	e.lastUsed = time.Now()
	return e
}

// keyOf hashes parts, each prefixed by its length so no two lists share
// a key. It runs on every BMC call of a pass, hence no fmt.
func keyOf(parts ...string) [sha256.Size]byte {
	b := make([]byte, 0, 128)
	for _, s := range parts {
		b = strconv.AppendInt(b, int64(len(s)), 10)
		b = append(append(append(b, ':'), s...), '|')
	}
	return sha256.Sum256(b)
}

// Len is the number of clients held.
func (p *Pool) Len() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.clients)
}

func (p *Pool) reap() {
	defer close(p.done)
	t := time.NewTicker(p.opts.IdleTimeout / 4)
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			return
		case now := <-t.C:
			p.closeIdle(now.Add(-p.opts.IdleTimeout))
		}
	}
}

func (p *Pool) closeIdle(before time.Time) {
	p.mu.Lock()
	var idle []*entry
	for k, e := range p.clients {
		if e.lastUsed.Before(before) {
			idle = append(idle, e)
			delete(p.clients, k)
		}
	}
	p.mu.Unlock()
	// Concurrently: each close may wait for its BMC's answer to Close
	// Session (one attempt), and a fleet of silent BMCs must not add up.
	var wg sync.WaitGroup
	for _, e := range idle {
		wg.Add(1)
		go func() {
			defer wg.Done()
			e.close()
		}()
	}
	wg.Wait()
}

// Close ends every session and stops the pool.
func (p *Pool) Close() error {
	close(p.stop)
	<-p.done
	p.closeIdle(time.Now().Add(time.Hour))
	return nil
}
