//go:build linux

package soak_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/metalpower/metalpower/internal/bmc/ipmi"
	"github.com/metalpower/metalpower/internal/config"
	"github.com/metalpower/metalpower/internal/node"
	"github.com/metalpower/metalpower/internal/testbed"
	"github.com/metalpower/metalpower/internal/testbed/itest"
	"github.com/metalpower/metalpower/internal/testbed/sim/openipmi"
	"github.com/metalpower/metalpower/workflows"
)

var srv *itest.Server

func TestMain(m *testing.M) { os.Exit(itest.MustMain(m, &srv)) }

// step is what happens before one sync pass.
type step struct {
	// Gap is the idle time between the end of the previous pass and this
	// one: nothing talks to the BMCs meanwhile.
	Gap time.Duration
	// Restart restarts this ipmi_sim process first (-1: none): its BMCs
	// forget every session, keeping their power state.
	Restart int
	// Drift switches this many BMCs' power behind metalpower's back.
	Drift int
	// Cancel runs BMC calls cancelled mid-flight during the pass.
	Cancel bool
}

type plan struct {
	BMCs, Processes int
	// MinCommandInterval is [ipmi] min_command_interval.
	MinCommandInterval int
	Steps              []step
}

// The gaps straddle ipmi_sim's session timeout (30 s, fixed) and go-ipmi's
// keepalive (30 s after a session opened), then 60 s and 125 s (beyond
// Ironic's default 120 s sync interval).
func planFromEnv(t *testing.T) plan {
	switch v := os.Getenv("METALPOWER_SOAK"); v {
	case "":
		return plan{BMCs: 40, Processes: 2, MinCommandInterval: 1, Steps: []step{
			{Restart: -1},
			{Gap: 6 * time.Second, Restart: -1, Drift: 3},
			{Gap: 33 * time.Second, Restart: -1, Drift: 2, Cancel: true},
			{Gap: 2 * time.Second, Restart: 0, Cancel: true},
			{Gap: 31 * time.Second, Restart: 1, Drift: 2},
		}}
	case "long":
		var steps []step
		for i, gap := range []time.Duration{0, 6, 30, 31, 32, 33, 34, 35, 36, 60, 2, 125, 60, 125} {
			steps = append(steps, step{Gap: gap * time.Second, Restart: -1 + (i%4/3)*(1+i%3), Drift: i % 5, Cancel: i%2 == 1})
		}
		return plan{BMCs: 300, Processes: 3, MinCommandInterval: 5, Steps: steps}
	default:
		t.Fatalf("METALPOWER_SOAK=%q: want empty (short run) or long", v)
		return plan{}
	}
}

func TestIPMISessionsSurviveIdleGapsRestartsAndCancellations(t *testing.T) {
	p := planFromEnv(t)
	ctx := context.Background()
	fleet, err := openipmi.Start(ctx, openipmi.Options{BMCs: p.BMCs, Processes: p.Processes, DistinctAddresses: true, Password: testbed.IPMIPassword})
	if err != nil {
		t.Fatal(err)
	}
	defer fleet.Close()

	st := itest.NewStack(t, srv, itest.StackOptions{Configure: func(c *config.Config) {
		// The long run spaces commands as Ironic recommends (5 s); the
		// short one keeps its corrections quick. Ironic's default retry
		// time for one command.
		c.IPMI.MinCommandInterval = p.MinCommandInterval
		c.IPMI.CommandRetryTimeout = 60
	}})
	nodes := make([]*node.Node, p.BMCs)
	for i, b := range fleet.BMCs() {
		instance := ""
		if i%2 == 0 {
			instance = uuid.NewString()
		}
		nodes[i] = st.AddNode(t, node.New("", fmt.Sprintf("soak-%03d", i), ipmi.Name, node.DriverInfo{
			"ipmi_address": b.Host, "ipmi_port": float64(b.Port), "ipmi_username": "admin",
			"ipmi_password": testbed.IPMIPassword, "ipmi_cipher_suite": "3",
		}), instance)
	}

	rng := rand.New(rand.NewPCG(11, 12))
	for i, s := range p.Steps {
		time.Sleep(s.Gap)
		if s.Restart >= 0 {
			if err := fleet.Restart(ctx, s.Restart%p.Processes); err != nil {
				t.Fatal(err)
			}
		}
		drifted := rng.Perm(p.BMCs)[:s.Drift]
		for _, j := range drifted {
			on, err := fleet.PowerOn(fleet.BMCs()[j])
			if err != nil {
				t.Fatal(err)
			}
			if err := fleet.SetPowerOn(fleet.BMCs()[j], !on); err != nil {
				t.Fatal(err)
			}
		}
		stop := make(chan struct{})
		var cancelled sync.WaitGroup
		if s.Cancel {
			cancelled.Add(1)
			go func() {
				defer cancelled.Done()
				cancelMidFlight(t, st, nodes, stop)
			}()
		}
		start := time.Now()
		res := st.SyncPass(t)
		close(stop)
		cancelled.Wait()
		t.Logf("pass %d after %v idle (restart %d, drift %d, cancellations %v): %v, %+v",
			i, s.Gap, s.Restart, s.Drift, s.Cancel, time.Since(start).Round(time.Millisecond), res.SyncCounts)
		checkPass(t, st, nodes, i, res, len(drifted))
		if t.Failed() {
			return
		}
		checkHardware(t, st, fleet, nodes, drifted)
	}
}

// cancelMidFlight reads random nodes through the worker's own BMC pool
// with deadlines of 0 to 20 ms, so calls end at every stage of a session's
// set-up and of a request, on the clients the pass is using.
func cancelMidFlight(t *testing.T, st *itest.Stack, nodes []*node.Node, stop <-chan struct{}) {
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 3))
	for {
		select {
		case <-stop:
			return
		default:
		}
		pm, err := st.Worker.Pool.For(nodes[rng.IntN(len(nodes))])
		if err != nil {
			t.Error(err)
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Duration(rng.IntN(20))*time.Millisecond)
		pm.PowerState(ctx)
		cancel()
	}
}

func checkPass(t *testing.T, st *itest.Stack, nodes []*node.Node, i int, res workflows.PowerSyncResult, drifted int) {
	t.Helper()
	n := len(nodes)
	defer func() {
		if t.Failed() {
			for _, nd := range nodes {
				if got := st.Node(t, nd.UUID); got.LastError != "" {
					t.Logf("%s: %s", got.Name, got.LastError)
				}
			}
		}
	}()
	if res.Checked != n || res.Unreadable != 0 || res.EnteredMaintenance != 0 || res.ForceFailed != 0 || res.SkippedLocked != 0 {
		t.Errorf("pass %d: %+v; want all %d nodes checked and read", i, res.SyncCounts, n)
		return
	}
	if res.Corrected != drifted || res.InSync != n-drifted {
		t.Errorf("pass %d: corrected %d, in sync %d; want %d drifted nodes corrected", i, res.Corrected, res.InSync, drifted)
	}
}

// checkHardware compares every BMC's power (ipmi_sim's state file) with
// the record, which force_power_state_during_sync put back on the drifted
// ones.
func checkHardware(t *testing.T, st *itest.Stack, fleet *openipmi.Fleet, nodes []*node.Node, drifted []int) {
	t.Helper()
	for j, b := range fleet.BMCs() {
		n := st.Node(t, nodes[j].UUID)
		on, err := fleet.PowerOn(b)
		if err != nil {
			t.Fatal(err)
		}
		if want := n.PowerState == node.PowerOn; on != want || n.LastError != "" {
			t.Fatalf("node %s (drifted %v): hardware on=%v, record %q, last_error %q",
				n.Name, slices.Contains(drifted, j), on, n.PowerState, n.LastError)
		}
	}
}
