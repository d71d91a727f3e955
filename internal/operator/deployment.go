package operator

import (
	"context"
	"fmt"
	"strings"

	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
)

// DeploymentStatus is what `starter deployment status` shows.
type DeploymentStatus struct {
	Name           string          `json:"deployment_name"`
	CurrentBuildID string          `json:"current_build_id"`
	RampingBuildID string          `json:"ramping_build_id,omitempty"`
	RampingPercent float32         `json:"ramping_percent,omitempty"`
	Versions       []VersionStatus `json:"versions"`
}

// VersionStatus is one build of a deployment.
type VersionStatus struct {
	BuildID string `json:"build_id"`
	// Drainage is the server's view: draining while workflows pinned to
	// this version may still run, drained when none can.
	Drainage string `json:"drainage,omitempty"`
	// Running counts the open workflows pinned to or last run on it.
	Running int64 `json:"running_workflows"`
}

// GetDeploymentStatus describes the deployment and counts the open
// workflows of each of its builds.
func GetDeploymentStatus(ctx context.Context, c client.Client, name string) (DeploymentStatus, error) {
	d, err := c.WorkerDeploymentClient().GetHandle(name).Describe(ctx, client.WorkerDeploymentDescribeOptions{})
	if err != nil {
		return DeploymentStatus{}, fmt.Errorf("describe worker deployment %q: %w", name, err)
	}
	st := DeploymentStatus{Name: name, Versions: []VersionStatus{}}
	rc := d.Info.RoutingConfig
	if rc.CurrentVersion != nil {
		st.CurrentBuildID = rc.CurrentVersion.BuildID
	}
	if rc.RampingVersion != nil {
		st.RampingBuildID, st.RampingPercent = rc.RampingVersion.BuildID, rc.RampingVersionPercentage
	}
	for _, v := range d.Info.VersionSummaries {
		vs := VersionStatus{BuildID: v.Version.BuildID, Drainage: drainage(v.DrainageStatus)}
		n, err := c.CountWorkflow(ctx, &workflowservice.CountWorkflowExecutionsRequest{
			// Servers spell a version "<name>:<build>" (1.29) or "<name>.<build>".
			Query: fmt.Sprintf("TemporalWorkerDeploymentVersion IN ('%[1]s:%[2]s', '%[1]s.%[2]s') AND ExecutionStatus = 'Running'", name, v.Version.BuildID),
		})
		if err != nil {
			return st, fmt.Errorf("count the workflows of build %s: %w", v.Version.BuildID, err)
		}
		vs.Running = n.GetCount()
		st.Versions = append(st.Versions, vs)
	}
	return st, nil
}

func drainage(s client.WorkerDeploymentVersionDrainageStatus) string {
	switch s {
	case client.WorkerDeploymentVersionDrainageStatusDraining:
		return "draining"
	case client.WorkerDeploymentVersionDrainageStatusDrained:
		return "drained"
	}
	return ""
}

// Promote makes buildID the deployment's current version (ramp 0) or
// sends it ramp percent of new workflows. It refuses a build whose workers
// have never polled, so a typo cannot send every new workflow nowhere.
func Promote(ctx context.Context, c client.Client, name, buildID string, ramp float32) error {
	if ramp < 0 || ramp > 100 {
		return fmt.Errorf("ramp must be between 0 and 100 (got %v)", ramp)
	}
	h := c.WorkerDeploymentClient().GetHandle(name)
	d, err := h.Describe(ctx, client.WorkerDeploymentDescribeOptions{})
	if err != nil {
		return fmt.Errorf("describe worker deployment %q: %w", name, err)
	}
	known := false
	for _, v := range d.Info.VersionSummaries {
		known = known || v.Version.BuildID == buildID
	}
	if !known {
		return fmt.Errorf("build %q of deployment %q has no workers yet: start them first (known builds: %s)", buildID, name, buildList(d.Info.VersionSummaries))
	}
	if ramp == 0 || ramp == 100 {
		_, err = h.SetCurrentVersion(ctx, client.WorkerDeploymentSetCurrentVersionOptions{BuildID: buildID, ConflictToken: d.ConflictToken})
	} else {
		_, err = h.SetRampingVersion(ctx, client.WorkerDeploymentSetRampingVersionOptions{BuildID: buildID, Percentage: ramp, ConflictToken: d.ConflictToken})
	}
	if err != nil {
		return fmt.Errorf("promote build %q of deployment %q: %w", buildID, name, err)
	}
	return nil
}

func buildList(vs []client.WorkerDeploymentVersionSummary) string {
	if len(vs) == 0 {
		return "none"
	}
	ids := make([]string, len(vs))
	for i, v := range vs {
		ids[i] = v.Version.BuildID
	}
	return strings.Join(ids, ", ")
}
