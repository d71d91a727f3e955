package nodelock

import (
	"context"
	"errors"
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

func TestRefusal(t *testing.T) {
	var app *temporal.ApplicationError
	err := Refusal("n1", ID("n1"))
	if !errors.As(err, &app) || app.Type() != ErrType || !app.NonRetryable() {
		t.Fatalf("Refusal = %v, want a non-retryable %s application error", err, ErrType)
	}
	var holder string
	if err := app.Details(&holder); err != nil || holder != "node-power/n1" {
		t.Fatalf("holder = %q, %v", holder, err)
	}
	e := &Error{NodeUUID: "n1", Holder: ID("n1")}
	if got := e.Error(); got != "node n1 is locked by running workflow node-power/n1: a power change or sync is in progress" {
		t.Fatalf("Error() = %q", got)
	}
}
