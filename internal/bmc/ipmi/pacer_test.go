package ipmi

import (
	"context"
	"testing"
	"time"
)

func TestPacerSpacesCommandsPerBMC(t *testing.T) {
	p := NewPacer(40 * time.Millisecond)
	ctx := context.Background()
	start := time.Now()
	for i := 0; i < 3; i++ {
		if err := p.Wait(ctx, "10.0.0.1:623"); err != nil {
			t.Fatal(err)
		}
	}
	// Three commands to one BMC need at least two intervals.
	if d := time.Since(start); d < 80*time.Millisecond {
		t.Fatalf("three commands to one BMC within %v", d)
	}
	// Another BMC has its own pace, and a cancelled wait gives up.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := p.Wait(cctx, "10.0.0.1:623"); err == nil {
		t.Fatal("a cancelled wait did not fail")
	}
	// A command cancelled while it waits gives its slot back: the next one
	// goes at the same time the cancelled one would have.
	p2 := NewPacer(time.Hour)
	if err := p2.Wait(ctx, "b"); err != nil {
		t.Fatal(err)
	}
	short, cancel2 := context.WithTimeout(ctx, 10*time.Millisecond)
	defer cancel2()
	if err := p2.Wait(short, "b"); err == nil {
		t.Fatal("a wait of an hour did not end with its context")
	}
	p2.mu.Lock()
	next := p2.next["b"]
	p2.mu.Unlock()
	if until := time.Until(next); until > time.Hour || until < 59*time.Minute {
		t.Fatalf("next slot in %v, want the cancelled slot given back (about an hour away)", until)
	}
	var none *Pacer
	if err := none.Wait(ctx, "x"); err != nil {
		t.Fatal(err)
	}
}
