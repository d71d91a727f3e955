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
	var none *Pacer
	if err := none.Wait(ctx, "x"); err != nil {
		t.Fatal(err)
	}
}
