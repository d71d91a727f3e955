package pool

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/metalpower/metalpower/internal/bmc"
	"github.com/metalpower/metalpower/internal/bmc/redfish"
	"github.com/metalpower/metalpower/internal/node"
)

type call struct {
	driver, op string
	err        error
}

type recorder struct {
	mu    sync.Mutex
	calls []call
}

func (r *recorder) ObserveBMCCall(driver, op string, _ time.Duration, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, call{driver, op, err})
}

// An Observer sees every call made through a client the pool hands out,
// with the node's driver, and the error as the driver returned it.
func TestPoolReportsCallsToItsObserver(t *testing.T) {
	rec := &recorder{}
	p := New(Options{Observer: rec})
	defer p.Close()
	// Nothing listens on port 1: the read fails at once.
	r := node.New("", "r", redfish.Name, node.DriverInfo{"redfish_address": "http://127.0.0.1:1", "redfish_system_id": "/redfish/v1/Systems/1"})
	pm, err := p.For(r)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, readErr := pm.PowerState(ctx)
	setErr := pm.SetPowerState(ctx, node.PowerOn, bmc.Policy{})
	if readErr == nil || setErr == nil {
		t.Fatalf("calls to a closed port succeeded: %v, %v", readErr, setErr)
	}
	if len(rec.calls) != 2 || rec.calls[0] != (call{"redfish", OpGetPowerState, readErr}) || rec.calls[1] != (call{"redfish", OpSetPowerState, setErr}) {
		t.Fatalf("observed %+v", rec.calls)
	}
	if _, ok := bmc.KindOf(rec.calls[0].err); !ok {
		t.Fatalf("observer got an unclassified error: %v", rec.calls[0].err)
	}
	// Without an Observer the driver's client is handed out as is.
	plain := New(Options{})
	defer plain.Close()
	if pm, _ := plain.For(r); pm == nil {
		t.Fatal("no client")
	} else if _, wrapped := pm.(observed); wrapped {
		t.Fatal("wrapped without an observer")
	}
}
