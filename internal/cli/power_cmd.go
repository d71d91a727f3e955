package cli

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"strings"

	"go.temporal.io/sdk/client"

	"github.com/metalpower/metalpower/internal/config"
	"github.com/metalpower/metalpower/internal/node"
	"github.com/metalpower/metalpower/internal/operator"
	"github.com/metalpower/metalpower/internal/store"
	"github.com/metalpower/metalpower/workflows"
)

// powerVerbs maps the CLI's verbs to Ironic's targets.
var powerVerbs = map[string]string{
	"on": node.PowerOn, "off": node.PowerOff, "reboot": node.Reboot,
	"soft-off": node.SoftPowerOff, "soft-reboot": node.SoftReboot,
}

func init() {
	for verb, target := range powerVerbs {
		register("power "+verb, "power "+verb+" NODE [--timeout S] [--wait]   "+target, powerCommand(verb, target))
	}
}

func powerCommand(verb, target string) func(context.Context, *Env, []string) error {
	return func(ctx context.Context, env *Env, args []string) error {
		fs := flags("power "+verb, env)
		timeout := fs.Int("timeout", 0, "seconds to reach the state (default [conductor] power_state_change_timeout, soft_power_off_timeout for soft actions)")
		wait := fs.Bool("wait", false, "wait for the outcome; exit non-zero on failure")
		if err := fs.Parse(reorder(fs, args)); err != nil || fs.NArg() != 1 {
			return errUsage
		}
		return withStore(ctx, env, func(s store.Store) error {
			n, err := s.Get(ctx, fs.Arg(0))
			if err != nil {
				return err
			}
			return withTemporal(ctx, env, func(cfg config.Config, c client.Client) error {
				run, err := operator.StartPowerChange(ctx, c, s, cfg.Temporal.TaskQueue, n, operator.PowerRequest{Target: target, Timeout: *timeout, Via: "cli"})
				if err != nil {
					return err
				}
				fmt.Fprintf(env.Stdout, "workflow %s run %s: %s %s\n", run.GetID(), run.GetRunID(), target, n.Ident())
				if !*wait {
					return nil
				}
				var res workflows.PowerChangeResult
				if err := run.Get(ctx, &res); err != nil {
					return fmt.Errorf("power %s %s failed: %w", verb, n.Ident(), err)
				}
				b, _ := json.MarshalIndent(res, "", "  ")
				fmt.Fprintln(env.Stdout, string(b))
				return nil
			})
		})
	}
}

// reorder lets flags follow the node argument (power off r1-n07 --wait,
// maintenance set r1-n07 --reason "BMC swap"), as operators type them: a
// flag of fs that is not boolean takes the next argument as its value.
func reorder(fs *flag.FlagSet, args []string) []string {
	var flagArgs, rest []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if len(a) < 2 || a[0] != '-' {
			rest = append(rest, a)
			continue
		}
		flagArgs = append(flagArgs, a)
		name := strings.TrimLeft(a, "-")
		if strings.Contains(name, "=") {
			continue
		}
		if f := fs.Lookup(name); f != nil && !isBool(f) && i+1 < len(args) {
			flagArgs = append(flagArgs, args[i+1])
			i++
		}
	}
	return append(flagArgs, rest...)
}

func isBool(f *flag.Flag) bool {
	b, ok := f.Value.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}
