package operator

import (
	"context"
	"errors"
	"fmt"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"

	"github.com/metalpower/metalpower/workflows"
)

// SyncStatus is what `starter sync status` shows.
type SyncStatus struct {
	Paused   bool      `json:"paused"`
	Note     string    `json:"note,omitempty"`
	Interval string    `json:"interval"`
	NextRun  time.Time `json:"next_run,omitempty"`
	// LastPass is the most recent pass the schedule started.
	LastPass *PassStatus `json:"last_pass,omitempty"`
}

// PassStatus is one pass: running (with its progress) or finished.
type PassStatus struct {
	WorkflowID string                     `json:"workflow_id"`
	RunID      string                     `json:"run_id"`
	StartedAt  time.Time                  `json:"started_at"`
	Status     string                     `json:"status"`
	Result     *workflows.PowerSyncResult `json:"result,omitempty"`
	Progress   *workflows.SyncProgress    `json:"progress,omitempty"`
	Error      string                     `json:"error,omitempty"`
}

// ErrSyncDisabled: the power-sync schedule does not exist.
var ErrSyncDisabled = errors.New("the power-sync schedule does not exist: [conductor] sync_power_state_interval is 0 or less, or no worker has started yet")

func syncHandle(ctx context.Context, c client.Client) (client.ScheduleHandle, error) {
	h := c.ScheduleClient().GetHandle(ctx, workflows.SyncScheduleID)
	if _, err := h.Describe(ctx); err != nil {
		return nil, fmt.Errorf("%w (%v)", ErrSyncDisabled, err)
	}
	return h, nil
}

// SyncNow starts a pass at once, unless one is running (overlap skip).
func SyncNow(ctx context.Context, c client.Client) error {
	h, err := syncHandle(ctx, c)
	if err != nil {
		return err
	}
	return h.Trigger(ctx, client.ScheduleTriggerOptions{Overlap: enumspb.SCHEDULE_OVERLAP_POLICY_SKIP})
}

// SyncPause stops the schedule from starting passes; the worker keeps the
// pause across restarts.
func SyncPause(ctx context.Context, c client.Client, note string) error {
	h, err := syncHandle(ctx, c)
	if err != nil {
		return err
	}
	return h.Pause(ctx, client.SchedulePauseOptions{Note: note})
}

// SyncResume lifts a pause.
func SyncResume(ctx context.Context, c client.Client, note string) error {
	h, err := syncHandle(ctx, c)
	if err != nil {
		return err
	}
	return h.Unpause(ctx, client.ScheduleUnpauseOptions{Note: note})
}

// GetSyncStatus describes the schedule and its last pass.
func GetSyncStatus(ctx context.Context, c client.Client) (SyncStatus, error) {
	h, err := syncHandle(ctx, c)
	if err != nil {
		return SyncStatus{}, err
	}
	d, err := h.Describe(ctx)
	if err != nil {
		return SyncStatus{}, err
	}
	st := SyncStatus{}
	if s := d.Schedule.State; s != nil {
		st.Paused, st.Note = s.Paused, s.Note
	}
	if spec := d.Schedule.Spec; spec != nil && len(spec.Intervals) > 0 {
		st.Interval = spec.Intervals[0].Every.String()
	}
	if len(d.Info.NextActionTimes) > 0 {
		st.NextRun = d.Info.NextActionTimes[0]
	}
	if n := len(d.Info.RecentActions); n > 0 {
		last := d.Info.RecentActions[n-1]
		if w := last.StartWorkflowResult; w != nil {
			st.LastPass = passStatus(ctx, c, w.WorkflowID, last.ActualTime)
		}
	}
	return st, nil
}

func passStatus(ctx context.Context, c client.Client, id string, started time.Time) *PassStatus {
	p := &PassStatus{WorkflowID: id, StartedAt: started}
	desc, err := c.DescribeWorkflowExecution(ctx, id, "")
	if err != nil {
		p.Error = err.Error()
		return p
	}
	info := desc.GetWorkflowExecutionInfo()
	p.RunID, p.Status = info.GetExecution().GetRunId(), info.GetStatus().String()
	if info.GetStatus() == enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING {
		if v, err := c.QueryWorkflow(ctx, id, "", "progress"); err == nil {
			var prog workflows.SyncProgress
			if v.Get(&prog) == nil {
				p.Progress = &prog
			}
		}
		return p
	}
	var res workflows.PowerSyncResult
	if err := c.GetWorkflow(ctx, id, "").Get(ctx, &res); err != nil {
		p.Error = err.Error()
	} else {
		p.Result = &res
	}
	return p
}
