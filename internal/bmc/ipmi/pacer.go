package ipmi

import (
	"context"
	"sync"
	"time"

	"github.com/metalpower/metalpower/internal/bmc"
)

// Pacer is Ironic's [ipmi] min_command_interval: a command to a BMC
// starts no sooner than the interval after the previous command to it
// ended (Ironic records LAST_CMD_TIME when ipmitool returns), and never
// while another command to it runs. Some BMCs stop answering when driven
// faster. With a Shared pace (the node store) the guarantee holds across
// every process that talks to BMCs, not only within this one.
//
// BMCs are keyed by address and port, where Ironic keys by address
// alone: several BMCs may answer on one address at different ports (a
// chassis manager or a port-forwarding gateway in front of blades, the
// simulators), and each is paced on its own. One Pacer is shared by
// every client of a process, so nodes behind one BMC share its pace.
type Pacer struct {
	interval time.Duration
	shared   bmc.SharedPace
	lease    time.Duration
	mu       sync.Mutex
	bmcs     map[string]*paced
}

// WithShared makes the pacer also wait for, and hold, the BMC's shared
// pace, each hold lasting at most lease (a process that dies holding it
// delays the BMC by lease, no more).
func (p *Pacer) WithShared(s bmc.SharedPace, lease time.Duration) *Pacer {
	p.shared, p.lease = s, lease
	return p
}

// paced is one BMC's pace.
type paced struct {
	turn    chan struct{} // held while a command to the BMC runs
	lastEnd time.Time     // guarded by Pacer.mu
	users   int           // commands holding or awaiting the turn; guarded by Pacer.mu
}

// NewPacer returns a pacer; an interval of 0 never waits.
func NewPacer(interval time.Duration) *Pacer {
	return &Pacer{interval: interval, bmcs: map[string]*paced{}}
}

// Interval is the pacer's minimum interval (0 for a nil pacer).
func (p *Pacer) Interval() time.Duration {
	if p == nil {
		return 0
	}
	return p.interval
}

// Acquire waits until key's BMC may receive a command: no other command
// to it runs in this process, and the interval has passed since the last
// one ended. The caller runs its command, then calls release (a no-op
// when Acquire failed, so a deferred call is always safe).
func (p *Pacer) Acquire(ctx context.Context, key string) (release func(), err error) {
	release, err = p.acquire(ctx, key)
	if err != nil {
		return func() {}, err
	}
	return release, nil
}

func (p *Pacer) acquire(ctx context.Context, key string) (release func(), err error) {
	if p == nil || p.interval <= 0 {
		return func() {}, nil
	}
	p.mu.Lock()
	b := p.bmcs[key]
	if b == nil {
		b = &paced{turn: make(chan struct{}, 1)}
		p.bmcs[key] = b
	}
	b.users++
	p.mu.Unlock()
	leave := func() {
		p.mu.Lock()
		b.users--
		p.sweepLocked()
		p.mu.Unlock()
	}
	select {
	case b.turn <- struct{}{}:
	case <-ctx.Done():
		leave()
		return nil, ctx.Err()
	}
	p.mu.Lock()
	wait := time.Until(b.lastEnd.Add(p.interval))
	p.mu.Unlock()
	if wait > 0 {
		t := time.NewTimer(wait)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			// Nothing was sent: the last end stays as it was.
			<-b.turn
			leave()
			return nil, ctx.Err()
		}
	}
	token := ""
	if p.shared != nil {
		// This process's own pace first, so its commands do not contend
		// for the shared one.
		if token, err = p.shared.AcquirePace(ctx, key, p.interval, p.lease); err != nil {
			<-b.turn
			leave()
			return nil, err
		}
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			if p.shared != nil {
				// A release that fails leaves the hold to expire.
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				p.shared.ReleasePace(ctx, key, token)
				cancel()
			}
			// The end is recorded before the turn is given back, so the
			// next command waits from it.
			p.mu.Lock()
			b.lastEnd = time.Now()
			p.mu.Unlock()
			<-b.turn
			leave()
		})
	}, nil
}

// sweepLocked forgets BMCs nobody uses whose interval has passed, once
// the map is large, so it stays small.
func (p *Pacer) sweepLocked() {
	if len(p.bmcs) <= 4096 {
		return
	}
	for k, b := range p.bmcs {
		if b.users == 0 && time.Since(b.lastEnd) >= p.interval {
			delete(p.bmcs, k)
		}
	}
}
