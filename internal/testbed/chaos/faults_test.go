package chaos_test

import (
	"fmt"
	"math/rand/v2"
	"sort"
	"sync"
	"time"

	"github.com/metalpower/metalpower/internal/node"
	"github.com/metalpower/metalpower/internal/testbed/chaos"
	"github.com/metalpower/metalpower/internal/testbed/itest"
	"github.com/metalpower/metalpower/internal/testbed/sim/novasim"
)

// Kinds of injected failure.
const (
	killWorker    = "worker kill"
	restartServer = "dev server restart"
	restartPG     = "postgres restart"
	bmcFaultStart = "bmc fault window"
	bmcFaultEnd   = "bmc fault window end"
	novaOutage    = "nova outage"
	novaOutageEnd = "nova outage end"
	hardwareDrift = "hardware drift"
	terminate     = "operator terminate"
	// A BMC fault window lasts long enough for more than
	// power_state_sync_max_retries passes to fail on its nodes.
	bmcWindowLen  = 40 * time.Second
	novaOutageLen = 20 * time.Second
)

// Outages alternate between long ones (tens of seconds, as a database
// failover or a Temporal upgrade takes: longer than a step's few quick
// retries) and short ones (a restart), long first.
func downtime(index int, long, short time.Duration) time.Duration {
	if index%2 == 0 {
		return long
	}
	return short
}

// fault is one failure to inject at a time into the chaos window.
type fault struct {
	At    time.Duration
	Kind  string
	Index int // which window (BMC faults, Nova outages)
}

// plan spreads each kind of failure evenly over the window, each kind at
// its own phase so they overlap in varied ways.
func plan(s size) []fault {
	var fs []fault
	spread := func(kind string, count int, phase float64, length time.Duration) {
		for i := 0; i < count; i++ {
			at := time.Duration((float64(i) + phase) / float64(count) * float64(s.Window-length))
			fs = append(fs, fault{At: at, Kind: kind, Index: i})
			switch kind {
			case bmcFaultStart:
				fs = append(fs, fault{At: at + length, Kind: bmcFaultEnd, Index: i})
			case novaOutage:
				fs = append(fs, fault{At: at + length, Kind: novaOutageEnd, Index: i})
			}
		}
	}
	spread(bmcFaultStart, s.BMCWindows, 0.15, bmcWindowLen)
	spread(novaOutage, s.NovaOutages, 0.3, novaOutageLen)
	spread(killWorker, s.WorkerKills, 0.25, 0)
	// While changes are still being requested, so that some nodes are
	// switched just before their change asks for that very state.
	spread(hardwareDrift, s.Drifts, 0.3, 0)
	// Early, so the stale target it leaves is old enough to be cleared
	// by the passes within the window.
	spread(terminate, s.Terminations, 0.2, 0)
	spread(restartPG, s.PGRestarts, 0.55, 0)
	// Inside a Nova outage, at least for the first: notifications can
	// then neither be delivered nor queued.
	spread(restartServer, s.ServerRestarts, 0.4, 0)
	sort.SliceStable(fs, func(i, j int) bool { return fs[i].At < fs[j].At })
	return fs
}

// injector carries out a plan against the running parts.
type injector struct {
	srv    *itest.Server
	pg     *chaos.Postgres
	worker *chaos.Supervisor
	fleet  *fleet
	// broken holds the nodes of each BMC fault window; drifted those
	// whose power each drift switches behind metalpower's back.
	broken, drifted map[int][]*fleetNode
	// terminate terminates a running power change by hand, as an
	// operator who thinks it stuck would, and says which.
	terminate func() (string, error)
	// upcoming names up to k nodes whose change is about to be requested
	// and will switch them, with the state it will ask for.
	upcoming func(k int) []upcomingChange

	mu     sync.Mutex
	counts map[string]int
	log    []string
	errs   []string
}

func (in *injector) note(start time.Time, format string, args ...any) {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.log = append(in.log, fmt.Sprintf("%6.1fs ", time.Since(start).Seconds())+fmt.Sprintf(format, args...))
}

// run injects every fault at its time, each on its own (an outage does
// not hold up the next failure); it returns when the plan is done.
func (in *injector) run(start time.Time, faults []fault) {
	var wg sync.WaitGroup
	for _, f := range faults {
		wg.Add(1)
		go func() {
			defer wg.Done()
			time.Sleep(time.Until(start.Add(f.At)))
			in.inject(start, f)
		}()
	}
	wg.Wait()
}

func (in *injector) inject(start time.Time, f fault) {
	var err error
	detail := ""
	switch f.Kind {
	case restartServer, restartPG:
		in.note(start, "%s begins", f.Kind)
	}
	switch f.Kind {
	case killWorker:
		err = in.worker.Kill()
	case restartServer:
		// Alternate a crash (SIGKILL) with a long outage and a clean
		// stop with a short one.
		err = in.srv.RestartAfter(f.Index%2 == 0, downtime(f.Index, 30*time.Second, 2*time.Second))
	case restartPG:
		err = in.pg.Restart(downtime(f.Index, 40*time.Second, 2*time.Second))
	case bmcFaultStart:
		// A hung BMC makes every pass wait for its read timeout, so
		// fewer passes run: only odd windows have one, so that the
		// others take nodes into maintenance.
		in.fleet.breakBMCs(in.broken[f.Index], f.Index%2 == 1)
	case bmcFaultEnd:
		in.fleet.repairBMCs(in.broken[f.Index])
	case novaOutage:
		if f.Index%2 == 0 {
			in.fleet.Nova.SetOutage(novasim.OutageRefuse)
		} else {
			in.fleet.Nova.SetOutage(novasim.Outage503)
		}
	case novaOutageEnd:
		in.fleet.Nova.SetOutage(novasim.OutageNone)
	case hardwareDrift:
		in.fleet.flip(in.drifted[f.Index])
		// Someone switches servers on or off by hand just before the
		// operator asks for the same: the change finds the hardware
		// there, skips, corrects the record, and Nova must hear of it.
		pre := in.upcoming(2)
		for _, u := range pre {
			in.fleet.setPower(u.node, u.target == node.PowerOn)
		}
		detail = fmt.Sprintf("%d nodes switched by hand, %d of them just before their change", len(in.drifted[f.Index])+len(pre), len(pre))
	case terminate:
		detail, err = in.terminate()
	}
	in.mu.Lock()
	if err != nil {
		in.errs = append(in.errs, fmt.Sprintf("%s: %v", f.Kind, err))
	} else if f.Kind != bmcFaultEnd && f.Kind != novaOutageEnd {
		in.counts[f.Kind]++
	}
	in.mu.Unlock()
	what := f.Kind
	switch f.Kind {
	case restartServer, restartPG:
		what += " ends (up again)"
	}
	switch f.Kind {
	case bmcFaultStart, bmcFaultEnd:
		what += fmt.Sprintf(" (%d nodes)", len(in.broken[f.Index]))
	case hardwareDrift:
		what += " (" + detail + ")"
	case terminate:
		what += " of the power change on " + detail
	}
	if err != nil {
		what += ": " + err.Error()
	}
	in.note(start, "%s", what)
}

// upcomingChange is a node whose change is about to be requested.
type upcomingChange struct {
	node   *fleetNode
	target string
}

// chooseDrifted picks the nodes each drift switches: 3% of the fleet (at
// least 2), different ones each time.
func chooseDrifted(f *fleet, drifts int) map[int][]*fleetNode {
	out := map[int][]*fleetNode{}
	per := max(2, len(f.Nodes)*3/100)
	for d := 0; d < drifts; d++ {
		for _, i := range rand.New(rand.NewPCG(uint64(d), 11)).Perm(len(f.Nodes))[:per] {
			out[d] = append(out[d], f.Nodes[i])
		}
	}
	return out
}

// chooseBroken picks the nodes of each BMC fault window: about 8% of the
// fleet (at least 3), always including an IPMI node when there is one.
func chooseBroken(f *fleet, windows int) map[int][]*fleetNode {
	out := map[int][]*fleetNode{}
	per := max(3, len(f.Nodes)*8/100)
	var rf, ipmi []*fleetNode
	for _, n := range f.Nodes {
		if n.Driver == "ipmi" {
			ipmi = append(ipmi, n)
		} else {
			rf = append(rf, n)
		}
	}
	for w := 0; w < windows; w++ {
		var nodes []*fleetNode
		if len(ipmi) > 0 {
			nodes = append(nodes, ipmi[w%len(ipmi)])
		}
		// A fixed shuffle per window, so windows hit different nodes.
		for _, i := range rand.New(rand.NewPCG(uint64(w), 7)).Perm(len(rf)) {
			if len(nodes) == per {
				break
			}
			nodes = append(nodes, rf[i])
		}
		out[w] = nodes
	}
	return out
}
