package conductor

import (
	"context"
	"errors"
	"runtime/debug"
	"time"

	"github.com/rs/zerolog"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"

	"github.com/metalpower/metalpower/internal/config"
)

// linkedBuildID is set at link time where the source has no git metadata
// (the Dockerfile's BUILD_ID argument).
var linkedBuildID string

// BuildID is [temporal] build_id, or else the build ID linked into the
// binary, or else the VCS revision it was built from ("+dirty" when the
// tree had changes), which `go build` records in a git checkout.
func BuildID(cfg config.Temporal) (string, error) {
	if cfg.BuildID != "" {
		return cfg.BuildID, nil
	}
	if linkedBuildID != "" {
		return linkedBuildID, nil
	}
	if id := vcsBuildID(); id != "" {
		return id, nil
	}
	return "", errors.New("[temporal] build_id is empty and this binary records no VCS revision (built outside a git checkout?): set build_id (METALPOWER_TEMPORAL_BUILD_ID) or build with -ldflags \"-X github.com/metalpower/metalpower/internal/conductor.linkedBuildID=<id>\", a new one for every build")
}

func vcsBuildID() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return ""
	}
	var rev, dirty string
	for _, s := range info.Settings {
		switch {
		case s.Key == "vcs.revision":
			rev = s.Value
		case s.Key == "vcs.modified" && s.Value == "true":
			dirty = "+dirty"
		}
	}
	if rev == "" {
		return ""
	}
	return rev[:min(12, len(rev))] + dirty
}

// deploymentOptions opts the worker into Worker Deployment Versioning when
// [temporal] deployment_name is set.
func deploymentOptions(cfg config.Temporal) (worker.DeploymentOptions, error) {
	if cfg.DeploymentName == "" {
		return worker.DeploymentOptions{}, nil
	}
	id, err := BuildID(cfg)
	if err != nil {
		return worker.DeploymentOptions{}, err
	}
	return worker.DeploymentOptions{
		UseVersioning: true,
		Version:       worker.WorkerDeploymentVersion{DeploymentName: cfg.DeploymentName, BuildID: id},
	}, nil
}

// promoteIfFirst makes this worker's version the deployment's current one
// when the deployment has none yet: on a first start nothing else could
// run the workflows. Otherwise promoting is the operator's step (starter
// deployment promote), taken once the new build's workers are up.
func promoteIfFirst(ctx context.Context, c client.Client, v worker.WorkerDeploymentVersion, log zerolog.Logger) {
	h := c.WorkerDeploymentClient().GetHandle(v.DeploymentName)
	// The version exists once the server has seen this worker poll.
	for attempt := 0; ; attempt++ {
		d, err := h.Describe(ctx, client.WorkerDeploymentDescribeOptions{})
		if err == nil {
			cur := d.Info.RoutingConfig.CurrentVersion
			switch {
			case cur != nil && *cur == v:
				log.Info().Str("deployment", v.DeploymentName).Str("build_id", v.BuildID).Msg("this build is the deployment's current version")
				return
			case cur != nil:
				log.Warn().Str("deployment", v.DeploymentName).Str("build_id", v.BuildID).Str("current_build_id", cur.BuildID).
					Msg("this build is not the current version: new workflows go to the current one until `starter deployment promote` names this build")
				return
			}
			_, err = h.SetCurrentVersion(ctx, client.WorkerDeploymentSetCurrentVersionOptions{BuildID: v.BuildID, ConflictToken: d.ConflictToken})
			if err == nil {
				log.Info().Str("deployment", v.DeploymentName).Str("build_id", v.BuildID).Msg("first build of the deployment: made it the current version")
				return
			}
		}
		if ctx.Err() != nil || attempt == 60 {
			log.Error().Err(err).Str("deployment", v.DeploymentName).Str("build_id", v.BuildID).
				Msg("could not check or set the deployment's current version: promote it with `starter deployment promote`")
			return
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}
