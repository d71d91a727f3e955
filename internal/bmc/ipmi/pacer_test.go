package ipmi

import (
	"context"
	"sync"
	"testing"
	"time"
)

// command is one paced command as the BMC would see it.
type command struct {
	key        string
	start, end time.Time
}

// TestPacerSpacesFromTheEndOfTheLastCommand: commands to one BMC never
// overlap, and each starts at least the interval after the previous one
// ended (Ironic's LAST_CMD_TIME is taken when ipmitool returns), however
// long the previous one ran; BMCs on other ports or addresses keep their
// own pace.
func TestPacerSpacesFromTheEndOfTheLastCommand(t *testing.T) {
	const interval = 200 * time.Millisecond
	p := NewPacer(interval)
	keys := []string{"10.0.0.1:623", "10.0.0.1:624", "10.0.0.2:623"}
	var mu sync.Mutex
	var log []command
	var wg sync.WaitGroup
	for _, key := range keys {
		for i := 0; i < 3; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				release, err := p.Acquire(context.Background(), key)
				if err != nil {
					t.Error(err)
					return
				}
				c := command{key: key, start: time.Now()}
				time.Sleep(30 * time.Millisecond) // a slow command
				c.end = time.Now()
				release()
				mu.Lock()
				log = append(log, c)
				mu.Unlock()
			}()
		}
	}
	wg.Wait()
	byKey := map[string][]command{}
	for _, c := range log {
		byKey[c.key] = append(byKey[c.key], c)
	}
	for key, cs := range byKey {
		if len(cs) != 3 {
			t.Fatalf("%s: %d commands", key, len(cs))
		}
		for i, a := range cs {
			for j, b := range cs {
				if i == j || b.start.Before(a.start) {
					continue
				}
				if gap := b.start.Sub(a.end); gap < interval {
					t.Errorf("%s: a command started %v after the previous one ended, want at least %v", key, gap, interval)
				}
			}
		}
	}
	// Each BMC has a pace of its own: with a command to one held open,
	// the others still get theirs.
	hold, err := p.Acquire(context.Background(), keys[0])
	if err != nil {
		t.Fatal(err)
	}
	defer hold()
	for _, key := range keys[1:] {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		release, err := p.Acquire(ctx, key)
		cancel()
		if err != nil {
			t.Fatalf("%s waited for %s: %v", key, keys[0], err)
		}
		release()
	}
}

func TestPacerCancelledWaitSendsNothing(t *testing.T) {
	p := NewPacer(time.Hour)
	release, err := p.Acquire(context.Background(), "b")
	if err != nil {
		t.Fatal(err)
	}
	release()
	release() // twice is harmless
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if _, err := p.Acquire(ctx, "b"); err == nil {
		t.Fatal("a wait of an hour did not end with its context")
	}
	p.mu.Lock()
	b := p.bmcs["b"]
	p.mu.Unlock()
	if len(b.turn) != 0 || b.users != 0 {
		t.Fatalf("a cancelled wait kept the turn (%d) or its place (%d)", len(b.turn), b.users)
	}
	var none *Pacer
	release, err = none.Acquire(context.Background(), "x")
	if err != nil || none.Interval() != 0 {
		t.Fatal(err)
	}
	release()
}
