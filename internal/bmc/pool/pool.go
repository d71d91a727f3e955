// Package pool hands out BMC clients by node and keeps them for reuse, so a
// sync pass reuses RMCP+ sessions and HTTP connections instead of paying a
// handshake per read.
package pool

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sync"
	"time"

	"github.com/metalpower/metalpower/internal/bmc"
	"github.com/metalpower/metalpower/internal/bmc/ipmi"
	"github.com/metalpower/metalpower/internal/bmc/redfish"
	"github.com/metalpower/metalpower/internal/node"
)

// Options configures the drivers the pool creates.
type Options struct {
	IPMI    ipmi.Options
	Redfish redfish.Options
	// IdleTimeout closes a client unused for this long (default 2 min).
	IdleTimeout time.Duration
}

// Pool is safe for concurrent use.
type Pool struct {
	opts    Options
	mu      sync.Mutex
	clients map[string]*entry
	stop    chan struct{}
	done    chan struct{}
}

type entry struct {
	pm       bmc.PowerManager
	lastUsed time.Time
}

// New starts a pool; Close it to end every session.
func New(opts Options) *Pool {
	if opts.IdleTimeout <= 0 {
		opts.IdleTimeout = 2 * time.Minute
	}
	p := &Pool{opts: opts, clients: map[string]*entry{}, stop: make(chan struct{}), done: make(chan struct{})}
	go p.reap()
	return p
}

// For returns the client for n's BMC, creating it on first use. A changed
// address, user or password gives a new client, because the key includes a
// hash of them (never the password itself).
func (p *Pool) For(n *node.Node) (bmc.PowerManager, error) {
	key, create, err := p.factory(n)
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	e, ok := p.clients[key]
	if !ok {
		e = &entry{pm: create()}
		p.clients[key] = e
	}
	e.lastUsed = time.Now()
	return e.pm, nil
}

func (p *Pool) factory(n *node.Node) (string, func() bmc.PowerManager, error) {
	switch n.Driver {
	case node.DriverIPMI:
		info, err := n.DriverInfo.IPMI()
		if err != nil {
			return "", nil, &bmc.Error{Kind: bmc.Config, Op: "load driver_info", BMC: n.UUID, Err: err}
		}
		key := keyOf("ipmi", info.HostPort(), info.Username, info.Password, fmt.Sprint(info.CipherSuite))
		return key, func() bmc.PowerManager { return ipmi.New(info, p.opts.IPMI) }, nil
	case node.DriverRedfish:
		info, err := n.DriverInfo.Redfish()
		if err != nil {
			return "", nil, &bmc.Error{Kind: bmc.Config, Op: "load driver_info", BMC: n.UUID, Err: err}
		}
		key := keyOf("redfish", info.Endpoint, info.SystemID, info.Username, info.Password, info.AuthType, fmt.Sprint(info.VerifyCA), info.CAFile)
		return key, func() bmc.PowerManager { return redfish.New(info, p.opts.Redfish) }, nil
	}
	return "", nil, &bmc.Error{Kind: bmc.Config, Op: "load driver", BMC: n.UUID, Err: fmt.Errorf("%w: %q", node.ErrUnknownDriver, n.Driver)}
}

func keyOf(parts ...string) string {
	h := sha256.New()
	for _, s := range parts {
		fmt.Fprintf(h, "%d:%s|", len(s), s)
	}
	return hex.EncodeToString(h.Sum(nil))
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
	var idle []bmc.PowerManager
	for k, e := range p.clients {
		if e.lastUsed.Before(before) {
			idle = append(idle, e.pm)
			delete(p.clients, k)
		}
	}
	p.mu.Unlock()
	for _, pm := range idle {
		pm.Close()
	}
}

// Close ends every session and stops the pool.
func (p *Pool) Close() error {
	close(p.stop)
	<-p.done
	p.closeIdle(time.Now().Add(time.Hour))
	return nil
}
