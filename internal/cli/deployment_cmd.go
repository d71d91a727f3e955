package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"go.temporal.io/sdk/client"

	"github.com/metalpower/metalpower/internal/conductor"
	"github.com/metalpower/metalpower/internal/config"
	"github.com/metalpower/metalpower/internal/operator"
)

func init() {
	register("version", "version                 this binary's build ID (the default [temporal] build_id)", version)
	register("deployment status", "deployment status       the worker deployment's current and ramping build, and each build's open workflows", deploymentStatus)
	register("deployment promote", "deployment promote [-build-id ID] [-ramp PERCENT]  send new workflows to a build (default: this binary's)", deploymentPromote)
}

func version(ctx context.Context, env *Env, args []string) error {
	if len(args) > 0 {
		return errUsage
	}
	cfg, err := env.Config()
	if err != nil {
		return err
	}
	id, err := conductor.BuildID(cfg.Temporal)
	if err != nil {
		return err
	}
	fmt.Fprintln(env.Stdout, id)
	return nil
}

// errNoDeployment: the deployment commands mean nothing to unversioned
// workers.
var errNoDeployment = errors.New("[temporal] deployment_name is empty: the workers are not versioned (docs/operating.md, \"Upgrading\")")

func deploymentConfig(env *Env) (config.Config, error) {
	cfg, err := env.Config()
	if err == nil && cfg.Temporal.DeploymentName == "" {
		err = errNoDeployment
	}
	return cfg, err
}

func deploymentStatus(ctx context.Context, env *Env, args []string) error {
	if len(args) > 0 {
		return errUsage
	}
	cfg, err := deploymentConfig(env)
	if err != nil {
		return err
	}
	return withTemporal(ctx, env, func(_ config.Config, c client.Client) error {
		st, err := operator.GetDeploymentStatus(ctx, c, cfg.Temporal.DeploymentName)
		if err != nil {
			return err
		}
		b, _ := json.MarshalIndent(st, "", "  ")
		fmt.Fprintln(env.Stdout, string(b))
		return nil
	})
}

func deploymentPromote(ctx context.Context, env *Env, args []string) error {
	fs := flags("deployment promote", env)
	buildID := fs.String("build-id", "", "build to promote (default: this binary's build ID)")
	ramp := fs.Float64("ramp", 0, "send only this percentage of new workflows to the build (0: all, as the current version)")
	if err := fs.Parse(args); err != nil || fs.NArg() != 0 {
		return errUsage
	}
	cfg, err := deploymentConfig(env)
	if err != nil {
		return err
	}
	if *buildID == "" {
		if *buildID, err = conductor.BuildID(cfg.Temporal); err != nil {
			return err
		}
	}
	return withTemporal(ctx, env, func(_ config.Config, c client.Client) error {
		if err := operator.Promote(ctx, c, cfg.Temporal.DeploymentName, *buildID, float32(*ramp)); err != nil {
			return err
		}
		if *ramp > 0 && *ramp < 100 {
			fmt.Fprintf(env.Stdout, "build %s of deployment %s now gets %v%% of new workflows\n", *buildID, cfg.Temporal.DeploymentName, *ramp)
		} else {
			fmt.Fprintf(env.Stdout, "build %s is the current version of deployment %s: new workflows and auto-upgrading ones run on it\n", *buildID, cfg.Temporal.DeploymentName)
		}
		return nil
	})
}
