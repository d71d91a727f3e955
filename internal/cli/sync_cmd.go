package cli

import (
	"context"
	"encoding/json"
	"fmt"

	"go.temporal.io/sdk/client"

	"github.com/metalpower/metalpower/internal/config"
	"github.com/metalpower/metalpower/internal/operator"
)

func init() {
	register("sync now", "sync now                start a power sync pass at once (skipped if one is running)", syncCmd(func(ctx context.Context, env *Env, c client.Client) error {
		if err := operator.SyncNow(ctx, c); err != nil {
			return err
		}
		fmt.Fprintln(env.Stdout, "power sync pass requested")
		return nil
	}))
	register("sync pause", "sync pause              stop starting power sync passes", syncCmd(func(ctx context.Context, env *Env, c client.Client) error {
		if err := operator.SyncPause(ctx, c, "paused with starter sync pause"); err != nil {
			return err
		}
		fmt.Fprintln(env.Stdout, "power sync paused")
		return nil
	}))
	register("sync resume", "sync resume             resume power sync passes", syncCmd(func(ctx context.Context, env *Env, c client.Client) error {
		if err := operator.SyncResume(ctx, c, "resumed with starter sync resume"); err != nil {
			return err
		}
		fmt.Fprintln(env.Stdout, "power sync resumed")
		return nil
	}))
	register("sync apply", "sync apply              make the sync and recovery schedules follow this configuration (create, change, or delete when disabled)", syncCmd(func(ctx context.Context, env *Env, c client.Client) error {
		cfg, err := env.Config()
		if err != nil {
			return err
		}
		if err := operator.ApplySchedules(ctx, c, cfg); err != nil {
			return err
		}
		fmt.Fprintf(env.Stdout, "schedules applied: sync every %ds, recovery every %ds (0 or less: none)\n",
			cfg.Conductor.SyncPowerStateInterval, cfg.Conductor.PowerFailureRecoveryInterval)
		return nil
	}))
	register("sync status", "sync status             the schedule, the last pass and its counts, the next run", syncCmd(func(ctx context.Context, env *Env, c client.Client) error {
		st, err := operator.GetSyncStatus(ctx, c)
		if err != nil {
			return err
		}
		b, _ := json.MarshalIndent(st, "", "  ")
		fmt.Fprintln(env.Stdout, string(b))
		return nil
	}))
}

func syncCmd(fn func(context.Context, *Env, client.Client) error) func(context.Context, *Env, []string) error {
	return func(ctx context.Context, env *Env, args []string) error {
		if len(args) > 0 {
			return errUsage
		}
		return withTemporal(ctx, env, func(_ config.Config, c client.Client) error {
			return fn(ctx, env, c)
		})
	}
}
