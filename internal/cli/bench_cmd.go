package cli

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/metalpower/metalpower/internal/bench"
)

func init() {
	register("bench sync", "bench sync [--driver redfish|ipmi] [--nodes N] [--bmc-latency D] [--drift F] [--ipmi-sim] [--passes K --gap D]   sync passes over a simulated fleet", benchSync)
	register("bench power", "bench power [-parallel 1,10,100] [-changes 20] [-bmc-latency D]   measure power changes against [temporal] address", benchPower)
	register("bench api", "bench api [--nodes N] [--clients C] [--database sqlite|postgres] [--duration D] [--puts P]   the REST API at fleet size, as Nova calls it", benchAPI)
}

func benchAPI(ctx context.Context, env *Env, args []string) error {
	fs := flags("bench api", env)
	var o bench.APIOptions
	fs.IntVar(&o.Nodes, "nodes", 10000, "nodes to enroll")
	fs.IntVar(&o.Clients, "clients", 20, "concurrent clients")
	fs.StringVar(&o.Database, "database", "sqlite", "node store: sqlite (a file of its own) or postgres (a database of its own on 127.0.0.1:5432)")
	fs.DurationVar(&o.Duration, "duration", 10*time.Second, "how long each read call is measured")
	fs.IntVar(&o.Puts, "puts", 200, "power changes requested (each on a node of its own)")
	fs.StringVar(&o.CPUProfile, "cpuprofile", "", "write a CPU profile of the calls to this file (go tool pprof FILE)")
	if err := fs.Parse(args); err != nil || fs.NArg() > 0 {
		return errUsage
	}
	cfg, err := env.Config()
	if err != nil {
		return err
	}
	return bench.API(ctx, cfg, o, env.Stdout)
}

func benchPower(ctx context.Context, env *Env, args []string) error {
	fs := flags("bench power", env)
	parallel := fs.String("parallel", "1,10,100", "node counts changed at once, comma-separated")
	changes := fs.Int("changes", 20, "changes per level (at least one round)")
	latency := fs.Duration("bmc-latency", 0, "latency the simulated BMCs add to each request")
	floor := fs.Int("floor", 40, "no-op workflows timed for the server's floor")
	if err := fs.Parse(args); err != nil || fs.NArg() > 0 {
		return errUsage
	}
	var levels []int
	for _, s := range strings.Split(*parallel, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 || n > 1000 {
			return fmt.Errorf("-parallel %q: want counts between 1 and 1000", *parallel)
		}
		levels = append(levels, n)
	}
	cfg, err := env.Config()
	if err != nil {
		return err
	}
	return bench.Power(ctx, cfg, bench.PowerOptions{Parallel: levels, Changes: *changes, BMCLatency: *latency, FloorWorkflows: *floor}, env.Stdout)
}

func benchSync(ctx context.Context, env *Env, args []string) error {
	fs := flags("bench sync", env)
	driver := fs.String("driver", "redfish", "redfish or ipmi")
	nodes := fs.Int("nodes", 1000, "number of nodes, each on its own simulated BMC or system")
	latency := fs.Duration("bmc-latency", 100*time.Millisecond, "latency the simulated BMCs add to each request")
	drift := fs.Float64("drift", 0, "fraction of nodes whose record differs from the hardware (0-1)")
	ipmiSim := fs.Bool("ipmi-sim", false, "IPMI BMCs on Debian's OpenIPMI ipmi_sim (--driver ipmi implied; --bmc-latency ignored)")
	processes := fs.Int("ipmi-sim-processes", 0, "ipmi_sim processes sharing the BMCs, each on its own loopback address (default one per 100 BMCs)")
	passes := fs.Int("passes", 1, "passes to run")
	gap := fs.Duration("gap", 2*time.Minute, "time between the starts of two passes (with --passes > 1)")
	warm := fs.Duration("warm", 6*time.Second, "after the passes, one more started this long after the last, on warm sessions (0: none; with --passes > 1)")
	cpuprofile := fs.String("cpuprofile", "", "write a CPU profile of the passes (worker included) to this file (go tool pprof FILE)")
	if err := fs.Parse(args); err != nil || fs.NArg() > 0 {
		return errUsage
	}
	if *ipmiSim {
		*driver = "ipmi"
	}
	cfg, err := env.Config()
	if err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	return bench.Sync(ctx, cfg, bench.SyncOptions{Driver: *driver, Nodes: *nodes, BMCLatency: *latency, Drift: *drift, Starter: self,
		IPMISim: *ipmiSim, IPMISimProcesses: *processes, Passes: *passes, Gap: *gap, Warm: *warm, CPUProfile: *cpuprofile}, env.Stdout)
}
