package operator

import (
	"context"
	"errors"
	"fmt"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

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

// action is what the schedule starts, on taskQueue.
func (s scheduleSpec) action(taskQueue string) *client.ScheduleWorkflowAction {
	return &client.ScheduleWorkflowAction{ID: s.id, Workflow: s.workflow, Args: s.args, TaskQueue: taskQueue, StaticSummary: s.summary}
}

// createSchedule creates s (one created meanwhile by another process is
// fine).
func createSchedule(ctx context.Context, sc client.ScheduleClient, s scheduleSpec, action *client.ScheduleWorkflowAction) error {
	_, err := sc.Create(ctx, client.ScheduleOptions{
		ID:      s.id,
		Spec:    client.ScheduleSpec{Intervals: []client.ScheduleIntervalSpec{{Every: s.every}}},
		Action:  action,
		Overlap: enumspb.SCHEDULE_OVERLAP_POLICY_SKIP,
		Note:    "created by metalpower",
	})
	// Another process created it meanwhile: the SDK says so with
	// ErrScheduleAlreadyRunning, some servers with AlreadyExists.
	var exists *serviceerror.AlreadyExists
	if err != nil && !errors.As(err, &exists) && !errors.Is(err, temporal.ErrScheduleAlreadyRunning) {
		return fmt.Errorf("create schedule %s: %w", s.id, err)
	}
	return nil
}

func schedules(cfg config.Config) []scheduleSpec {
	return []scheduleSpec{
		{workflows.SyncScheduleID, workflows.PowerSyncWorkflow, []any{workflows.PowerSyncInput{}},
			time.Duration(cfg.Conductor.SyncPowerStateInterval) * time.Second, "periodic power sync"},
		{workflows.RecoveryScheduleID, workflows.PowerFailureRecoveryWorkflow, nil,
			time.Duration(cfg.Conductor.PowerFailureRecoveryInterval) * time.Second, "power failure recovery"},
	}
}

// ApplySchedules makes the two schedules match cfg: created when
// missing, their interval and action updated, deleted when the interval
// is 0 or less (disabled, as Ironic's enabled=interval>0). A pause an
// operator set is kept. Overlap policy skip: a pass still running when
// the next is due makes that one skipped, not queued. This is the
// operator's step (`starter sync apply`): the schedules belong to the
// deployment, not to any one worker.
func ApplySchedules(ctx context.Context, c client.Client, cfg config.Config) error {
	sc := c.ScheduleClient()
	for _, s := range schedules(cfg) {
		h := sc.GetHandle(ctx, s.id)
		_, err := h.Describe(ctx)
		var notFound *serviceerror.NotFound
		exists := err == nil
		if err != nil && !errors.As(err, &notFound) {
			return fmt.Errorf("describe schedule %s: %w", s.id, err)
		}
		action := s.action(cfg.Temporal.TaskQueue)
		switch {
		case s.every <= 0 && exists:
			if err := h.Delete(ctx); err != nil {
				return fmt.Errorf("delete disabled schedule %s: %w", s.id, err)
			}
		case s.every <= 0:
		case !exists:
			if err := createSchedule(ctx, sc, s, action); err != nil {
				return err
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

// EnsureSchedules is what a worker does at start: it creates a schedule
// that is missing (so a first deployment syncs without an operator step)
// and never changes or deletes one that exists, whatever this worker's
// configuration says, so one worker started with other settings cannot
// rewrite or remove the schedule every other worker relies on. It
// returns how the existing schedules differ from cfg, for the worker to
// warn about.
func EnsureSchedules(ctx context.Context, c client.Client, cfg config.Config) ([]string, error) {
	sc := c.ScheduleClient()
	var drift []string
	for _, s := range schedules(cfg) {
		h := sc.GetHandle(ctx, s.id)
		desc, err := h.Describe(ctx)
		var notFound *serviceerror.NotFound
		switch {
		case errors.As(err, &notFound):
			if s.every <= 0 {
				continue
			}
			if err := createSchedule(ctx, sc, s, s.action(cfg.Temporal.TaskQueue)); err != nil {
				return drift, err
			}
		case err != nil:
			return drift, fmt.Errorf("describe schedule %s: %w", s.id, err)
		default:
			drift = append(drift, scheduleDrift(s, desc.Schedule, cfg.Temporal.TaskQueue)...)
		}
	}
	return drift, nil
}

// scheduleDrift lists how an existing schedule differs from what cfg
// asks for: its interval, the task queue its workflows start on, or that
// cfg disables it.
func scheduleDrift(want scheduleSpec, have client.Schedule, taskQueue string) []string {
	var drift []string
	if want.every <= 0 {
		return []string{fmt.Sprintf("schedule %s exists, but this configuration disables it (interval %v)", want.id, want.every)}
	}
	var every time.Duration
	if have.Spec != nil && len(have.Spec.Intervals) == 1 {
		every = have.Spec.Intervals[0].Every
	}
	if every != want.every {
		drift = append(drift, fmt.Sprintf("schedule %s runs every %v, this configuration says %v", want.id, every, want.every))
	}
	if a, ok := have.Action.(*client.ScheduleWorkflowAction); ok && a.TaskQueue != taskQueue {
		drift = append(drift, fmt.Sprintf("schedule %s starts its workflows on task queue %q, this configuration says %q", want.id, a.TaskQueue, taskQueue))
	}
	return drift
}
