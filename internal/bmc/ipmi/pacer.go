package ipmi

import (
	"context"
	"sync"
	"time"
)

// Pacer keeps a minimum interval between commands to one BMC, keyed by its
// address and port, as Ironic's [ipmi] min_command_interval: some BMCs
// stop answering when driven faster. One Pacer is shared by every client
// of a process, so two nodes behind one BMC share its pace.
type Pacer struct {
	interval time.Duration
	mu       sync.Mutex
	next     map[string]time.Time
}

// NewPacer returns a pacer; an interval of 0 never waits.
func NewPacer(interval time.Duration) *Pacer {
	return &Pacer{interval: interval, next: map[string]time.Time{}}
}

// Wait blocks until key may receive a command, and books the slot.
func (p *Pacer) Wait(ctx context.Context, key string) error {
	if p == nil || p.interval <= 0 {
		return nil
	}
	p.mu.Lock()
	now := time.Now()
	slot := now
	if next, ok := p.next[key]; ok && next.After(now) {
		slot = next
	}
	p.next[key] = slot.Add(p.interval)
	// Forget BMCs not used for a while, so the map stays small.
	if len(p.next) > 4096 {
		for k, t := range p.next {
			if t.Before(now) {
				delete(p.next, k)
			}
		}
	}
	p.mu.Unlock()
	if d := time.Until(slot); d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-ctx.Done():
			// Give the slot back unless a later command booked after it,
			// so calls cancelled while waiting do not push the BMC's pace
			// ever further out.
			p.mu.Lock()
			if p.next[key].Equal(slot.Add(p.interval)) {
				p.next[key] = slot
			}
			p.mu.Unlock()
			return ctx.Err()
		case <-t.C:
		}
	}
	return nil
}
