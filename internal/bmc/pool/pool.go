// Package pool hands out BMC clients by node and keeps them for reuse, so a
// sync pass reuses RMCP+ sessions and HTTP connections instead of paying a
// handshake per read.
package pool

import (
	"context"
	"crypto/sha256"
	"strconv"
	"sync"
	"time"

	"github.com/metalpower/metalpower/internal/bmc"
	// Every driver this build has: the pool hands out their clients.
	_ "github.com/metalpower/metalpower/internal/bmc/drivers"
	"github.com/metalpower/metalpower/internal/config"
	"github.com/metalpower/metalpower/internal/node"
)

// FromConfig sizes the pool from the configuration.
func FromConfig(cfg config.Config) Options { return Options{Config: cfg} }

// Options configures the drivers the pool creates.
type Options struct {
	// Config gives each driver its section ([ipmi], [snmp], ...) and the
	// worker's [conductor] group and sync workers. In the zero value every
	// option is 0 or empty: no pacing, no retries.
	Config config.Config
	// SharedPace, when set, keeps a BMC's command spacing across
	// processes (the node store every worker and API process shares).
	SharedPace bmc.SharedPace
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
	opts       Options
	mu         sync.Mutex
	connectors map[string]bmc.Connector // by driver, made on first use
	clients    map[[sha256.Size]byte]*entry
	stop       chan struct{}
	done       chan struct{}
}

// entry is a pooled connection: an IPMI client, a Redfish service whose
// systems are handed out as cheap handles, a PDU.
type entry struct {
	conn     bmc.Conn
	lastUsed time.Time
}

// New starts a pool; Close it to end every session.
func New(opts Options) *Pool {
	if opts.IdleTimeout <= 0 {
		opts.IdleTimeout = 2 * time.Minute
	}
	p := &Pool{opts: opts, connectors: map[string]bmc.Connector{}, clients: map[[sha256.Size]byte]*entry{},
		stop: make(chan struct{}), done: make(chan struct{})}
	go p.reap()
	return p
}

// For returns the client for n's BMC, creating it on first use. A changed
// address, user or password gives a new client, because the key includes a
// hash of them (never the secrets themselves). Systems behind one service
// share its connection.
func (p *Pool) For(n *node.Node) (bmc.PowerManager, error) {
	a, err := n.Access()
	if err != nil {
		return nil, &bmc.Error{Kind: bmc.Config, Op: "load driver_info", BMC: n.UUID, Err: err}
	}
	c, err := p.connector(n.Driver)
	if err != nil {
		return nil, &bmc.Error{Kind: bmc.Config, Op: "load driver", BMC: n.UUID, Err: err}
	}
	e := p.entry(keyOf(a.Key()...), func() *entry { return &entry{conn: c.Dial(a)} })
	return p.observe(n.Driver, e.conn.PowerManager(a)), nil
}

// Paced reports whether a call to n's BMC may wait for its driver's
// spacing between commands.
func (p *Pool) Paced(n *node.Node) bool {
	c, err := p.connector(n.Driver)
	return err == nil && c.Paced()
}

func (p *Pool) connector(driver string) (bmc.Connector, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if c, ok := p.connectors[driver]; ok {
		return c, nil
	}
	d, err := bmc.Lookup(driver)
	if err != nil {
		return nil, err
	}
	cfg := p.opts.Config
	c := d.NewConnector(bmc.Env{Options: cfg.Section(d.Section), Group: cfg.Conductor.ConductorGroup,
		SyncWorkers: cfg.Conductor.SyncPowerStateWorkers, SharedPace: p.opts.SharedPace})
	p.connectors[driver] = c
	return c, nil
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
			e.conn.Close()
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
