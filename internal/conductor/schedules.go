package conductor

import (
	"context"
	"errors"
	"fmt"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"

	"github.com/metalpower/metalpower/internal/config"
	"github.com/metalpower/metalpower/workflows"
)

type scheduleSpec struct {
	id       string
	workflow string
	args     []any
	every    time.Duration
	summary  string
}

func schedules(cfg config.Config) []scheduleSpec {
	return []scheduleSpec{
		{workflows.SyncScheduleID, workflows.PowerSyncWorkflow, []any{workflows.PowerSyncInput{}},
			time.Duration(cfg.Conductor.SyncPowerStateInterval) * time.Second, "periodic power sync"},
		{workflows.RecoveryScheduleID, workflows.PowerFailureRecoveryWorkflow, nil,
			time.Duration(cfg.Conductor.PowerFailureRecoveryInterval) * time.Second, "power failure recovery"},
	}
}

// ReconcileSchedules makes the two schedules match the configuration:
// created when missing, their interval and action updated, deleted when
// the interval is 0 or less (disabled, as Ironic's enabled=interval>0). A
// pause an operator set is kept. Overlap policy skip: a pass still running
// when the next is due makes that one skipped, not queued.
func ReconcileSchedules(ctx context.Context, c client.Client, cfg config.Config) error {
	sc := c.ScheduleClient()
	for _, s := range schedules(cfg) {
		h := sc.GetHandle(ctx, s.id)
		_, err := h.Describe(ctx)
		var notFound *serviceerror.NotFound
		exists := err == nil
		if err != nil && !errors.As(err, &notFound) {
			return fmt.Errorf("describe schedule %s: %w", s.id, err)
		}
		action := &client.ScheduleWorkflowAction{
			ID: s.id, Workflow: s.workflow, Args: s.args, TaskQueue: cfg.Temporal.TaskQueue,
			StaticSummary: s.summary, WorkflowRunTimeout: 0,
		}
		switch {
		case s.every <= 0 && exists:
			if err := h.Delete(ctx); err != nil {
				return fmt.Errorf("delete disabled schedule %s: %w", s.id, err)
			}
		case s.every <= 0:
		case !exists:
			_, err := sc.Create(ctx, client.ScheduleOptions{
				ID:      s.id,
				Spec:    client.ScheduleSpec{Intervals: []client.ScheduleIntervalSpec{{Every: s.every}}},
				Action:  action,
				Overlap: enumspb.SCHEDULE_OVERLAP_POLICY_SKIP,
				Note:    "created by the metalpower worker",
			})
			var exists *serviceerror.AlreadyExists
			if err != nil && !errors.As(err, &exists) {
				return fmt.Errorf("create schedule %s: %w", s.id, err)
			}
		default:
			err := h.Update(ctx, client.ScheduleUpdateOptions{DoUpdate: func(in client.ScheduleUpdateInput) (*client.ScheduleUpdate, error) {
				sched := in.Description.Schedule
				sched.Spec = &client.ScheduleSpec{Intervals: []client.ScheduleIntervalSpec{{Every: s.every}}}
				sched.Action = action
				if sched.Policy == nil {
					sched.Policy = &client.SchedulePolicies{}
				}
				sched.Policy.Overlap = enumspb.SCHEDULE_OVERLAP_POLICY_SKIP
				// State (paused, note) is left as the operator set it.
				return &client.ScheduleUpdate{Schedule: &sched}, nil
			}})
			if err != nil {
				return fmt.Errorf("update schedule %s: %w", s.id, err)
			}
		}
	}
	return nil
}
