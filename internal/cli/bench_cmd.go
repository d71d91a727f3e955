package cli

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/metalpower/metalpower/internal/bench"
)

func init() {
	register("bench power", "bench power [-parallel 1,10,100] [-changes 20] [-bmc-latency D]   measure power changes against [temporal] address", benchPower)
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
