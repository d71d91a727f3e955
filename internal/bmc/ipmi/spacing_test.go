package ipmi

import (
	"context"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/metalpower/metalpower/internal/bmc"
	"github.com/metalpower/metalpower/internal/node"
	"github.com/metalpower/metalpower/internal/testbed/sim/ipmisim"
)

// TestMinCommandIntervalPerBMC: with [ipmi] min_command_interval, each
// BMC's next command arrives at least the interval after its previous
// answer went out, whether the commands come from one node or from two
// nodes on the same BMC; two BMCs sharing an address on different ports,
// and BMCs on other addresses, are paced each on its own (the spacing key
// is address and port).
func TestMinCommandIntervalPerBMC(t *testing.T) {
	const interval = 600 * time.Millisecond
	f := startFleet(t, ipmisim.Options{BMCs: 4, Addresses: []string{"127.0.0.1", "127.0.0.1", "127.0.0.2", "127.0.0.3"}})
	pacer := NewPacer(interval)
	sessions := NewSessions(0)
	var clients []*Client
	for i, b := range f.BMCs() {
		n := 1
		if i == 0 {
			n = 2 // two nodes behind one BMC
		}
		for range n {
			c := New(Info{Address: b.Host, Port: b.Port, Username: "admin", Password: "password", CipherSuite: -1},
				Options{AttemptTimeout: time.Second, Retries: 1, Pacer: pacer, Sessions: sessions})
			t.Cleanup(func() { c.Close() })
			clients = append(clients, c)
		}
	}
	if f.BMCs()[0].Host != f.BMCs()[1].Host || f.BMCs()[0].Port == f.BMCs()[1].Port || f.BMCs()[2].Host == f.BMCs()[3].Host {
		t.Fatalf("fleet layout: %+v", f.BMCs())
	}
	ctx := testCtx(t, 30*time.Second)
	var wg sync.WaitGroup
	for _, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 3 {
				if _, err := c.PowerState(ctx); err != nil {
					t.Error(err)
				}
			}
			if err := c.SetPowerState(ctx, node.PowerOn, bmc.Policy{}); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	for i, b := range f.BMCs() {
		cmds := ipmisim.Commands(b.Traffic(), interval/2)
		want := 4
		if i == 0 {
			want = 8
		}
		if len(cmds) != want {
			t.Fatalf("BMC %d (%s:%d): %d commands, want %d", i, b.Host, b.Port, len(cmds), want)
		}
		for j := 1; j < len(cmds); j++ {
			prev, next := cmds[j-1], cmds[j]
			if gap := next[0].At.Sub(prev[len(prev)-1].At); gap < interval {
				t.Errorf("BMC %d: command %d came %v after the previous answer, want at least %v", i, j, gap, interval)
			}
		}
	}
	// Each BMC has a pace of its own: with BMC 0 held (a command to it in
	// flight), the BMC on its address at another port and those on other
	// addresses still answer at once.
	hold, err := pacer.Acquire(ctx, f.BMCs()[0].Host+":"+strconv.Itoa(f.BMCs()[0].Port))
	if err != nil {
		t.Fatal(err)
	}
	defer hold()
	for i, c := range clients[2:] {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_, err := c.PowerState(cctx)
		cancel()
		if err != nil {
			t.Errorf("BMC %d waited for BMC 0: %v", i+1, err)
		}
	}
}

// TestRetransmissionsKeepTheInterval: go-ipmi's own retries wait at least
// the interval for an answer before sending again (Ironic's ipmitool -N
// min_command_interval), so a BMC that does not answer is not driven
// faster than its pace.
func TestRetransmissionsKeepTheInterval(t *testing.T) {
	const interval = 300 * time.Millisecond
	f := startFleet(t, ipmisim.Options{})
	b := f.BMCs()[0]
	c := New(Info{Address: b.Host, Port: b.Port, Username: "admin", Password: "password", CipherSuite: -1},
		Options{AttemptTimeout: 50 * time.Millisecond, Retries: 2, Pacer: NewPacer(interval)})
	t.Cleanup(func() { c.Close() })
	b.SetSilent(true)
	if _, err := c.PowerState(testCtx(t, 10*time.Second)); err == nil {
		t.Fatal("a silent BMC answered")
	}
	var in []time.Time
	for _, p := range b.Traffic() {
		if p.In {
			in = append(in, p.At)
		}
	}
	if len(in) != 3 {
		t.Fatalf("%d requests reached the silent BMC, want 3 (one and two retries)", len(in))
	}
	for i := 1; i < len(in); i++ {
		if gap := in[i].Sub(in[i-1]); gap < interval {
			t.Errorf("retransmission %d came %v after the previous request, want at least %v", i, gap, interval)
		}
	}
}
