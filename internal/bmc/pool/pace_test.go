package pool

import (
	"context"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/metalpower/metalpower/internal/bmc/ipmi"
	"github.com/metalpower/metalpower/internal/config"
	"github.com/metalpower/metalpower/internal/node"
	"github.com/metalpower/metalpower/internal/store"
	"github.com/metalpower/metalpower/internal/testbed/sim/ipmisim"
)

// TestMinCommandIntervalAcrossProcesses: two pools that share nothing but
// the node store (two worker processes, as far as the BMC can tell) send
// commands to one BMC at once; each command reaches it at least
// min_command_interval after the previous answer, whichever pool sent it.
func TestMinCommandIntervalAcrossProcesses(t *testing.T) {
	// [ipmi] min_command_interval is whole seconds.
	const interval = time.Second
	f, err := ipmisim.Start(ipmisim.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.Close)
	b := f.BMCs()[0]
	url := "sqlite://" + filepath.Join(t.TempDir(), "nodes.db")
	n := node.New("", "shared", ipmi.Name, node.DriverInfo{
		"ipmi_address": b.Host, "ipmi_port": float64(b.Port), "ipmi_username": "admin", "ipmi_password": "password"})
	var wg sync.WaitGroup
	for range 2 {
		st, err := store.Open(context.Background(), url) // each process its own handle
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		var cfg config.Config
		cfg.IPMI.MinCommandInterval = int(interval / time.Second)
		p := New(Options{Config: cfg, SharedPace: st})
		t.Cleanup(func() { p.Close() })
		pm, err := p.For(n)
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			for range 3 {
				if _, err := pm.PowerState(ctx); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	cmds := ipmisim.Commands(b.Traffic(), interval/2)
	if len(cmds) != 6 {
		t.Fatalf("%d commands reached the BMC, want 6", len(cmds))
	}
	for i := 1; i < len(cmds); i++ {
		prev, next := cmds[i-1], cmds[i]
		if gap := next[0].At.Sub(prev[len(prev)-1].At); gap < interval {
			t.Errorf("command %d came %v after the previous answer, want at least %v", i, gap, interval)
		}
	}
}
