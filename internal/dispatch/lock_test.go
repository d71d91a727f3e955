package dispatch

import (
	"context"
	"errors"
	"fmt"
	"testing"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	workflowpb "go.temporal.io/api/workflow/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/temporal"
)

type describer struct {
	status enumspb.WorkflowExecutionStatus
	err    error
	asked  string
}

func (d *describer) DescribeWorkflowExecution(_ context.Context, id, _ string) (*workflowservice.DescribeWorkflowExecutionResponse, error) {
	d.asked = id
	if d.err != nil {
		return nil, d.err
	}
	return &workflowservice.DescribeWorkflowExecutionResponse{WorkflowExecutionInfo: &workflowpb.WorkflowExecutionInfo{Status: d.status}}, nil
}

func TestHeld(t *testing.T) {
	unreachable := errors.New("connection refused")
	tests := []struct {
		name     string
		d        describer
		wantHeld bool
		wantErr  error
	}{
		{"running", describer{status: enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING}, true, nil},
		{"completed", describer{status: enumspb.WORKFLOW_EXECUTION_STATUS_COMPLETED}, false, nil},
		{"terminated", describer{status: enumspb.WORKFLOW_EXECUTION_STATUS_TERMINATED}, false, nil},
		{"never ran", describer{err: serviceerror.NewNotFound("workflow not found")}, false, nil},
		{"cannot tell", describer{err: unreachable}, false, unreachable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			held, err := Held(context.Background(), &tt.d, "6c1a4f0e")
			if held != tt.wantHeld || !errors.Is(err, tt.wantErr) {
				t.Fatalf("Held = %v, %v; want %v, %v", held, err, tt.wantHeld, tt.wantErr)
			}
			if tt.d.asked != "node-power/6c1a4f0e" {
				t.Fatalf("asked about %q", tt.d.asked)
			}
		})
	}
}

// TestLockedRefusal: the one refusal reads the same wherever it is met,
// and survives the trip through a workflow as an application error.
func TestLockedRefusal(t *testing.T) {
	want := "Node n1 is locked by host metalpower, please retry after the current operation is completed. (workflow node-power/n1)"
	for _, tt := range []struct {
		name string
		err  error
	}{
		{"as returned by a start", Locked(LockID("n1"), "run-1")},
		{"wrapped", fmt.Errorf("power off: %w", Locked(LockID("n1"), ""))},
		{"as a workflow returns it", Locked(LockID("n1"), "").Application()},
		{"through a child workflow", temporal.NewApplicationErrorWithCause("child failed", "ChildWorkflowFailure", Locked(LockID("n1"), "").Application())},
	} {
		t.Run(tt.name, func(t *testing.T) {
			locked, ok := AsLocked(tt.err)
			if !ok || locked.NodeUUID != "n1" || locked.Holder != "node-power/n1" || locked.Error() != want {
				t.Fatalf("AsLocked(%v) = %+v, %v", tt.err, locked, ok)
			}
		})
	}
	var app *temporal.ApplicationError
	if err := Locked(LockID("n1"), "").Application(); !errors.As(err, &app) || app.Type() != LockedType || !app.NonRetryable() {
		t.Fatalf("Application() = %v, want a non-retryable %s application error", err, LockedType)
	}
	if _, ok := AsLocked(errors.New("node-power/n1 is busy")); ok {
		t.Fatal("a plain error was taken for the refusal")
	}
}
