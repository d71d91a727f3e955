// Package replay checks that the workflows still replay the histories
// recorded from real runs (testdata/histories): any nondeterminism a code
// change introduces fails the test. generate_test.go refreshes the corpus
// (METALPOWER_REFRESH_REPLAY=1, `make replay-refresh`).
package replay

import (
	"fmt"
	"os"
	"path/filepath"

	historypb "go.temporal.io/api/history/v1"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/metalpower/metalpower/workflows"
)

// Dir is the corpus, relative to the repository root: histories recorded
// on the dev server (make replay-refresh), and in RealServer those
// recorded on the real Temporal server on PostgreSQL (make
// replay-record-real), kept apart so that refreshing one leaves the other.
const (
	Dir        = "testdata/histories"
	RealServer = "real-server"
)

// RepoRoot walks up from the working directory to the directory holding
// go.mod.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for ; ; dir = filepath.Dir(dir) {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		if dir == filepath.Dir(dir) {
			return "", fmt.Errorf("go.mod not found above the working directory")
		}
	}
}

// Registry lets workflows.Register, which the worker uses, register the
// workflows on a replayer: workflows go to the replayer under the same
// names, activities are not needed to replay (their results are in the
// history).
type Registry struct {
	worker.Registry // nil: only the methods below are called
	Replayer        worker.WorkflowReplayer
}

func (r Registry) RegisterWorkflow(w any) { r.Replayer.RegisterWorkflow(w) }
func (r Registry) RegisterWorkflowWithOptions(w any, o workflow.RegisterOptions) {
	r.Replayer.RegisterWorkflowWithOptions(w, o)
}
func (r Registry) RegisterDynamicWorkflow(w any, o workflow.DynamicRegisterOptions) {
	r.Replayer.RegisterDynamicWorkflow(w, o)
}
func (r Registry) RegisterActivity(any)                                         {}
func (r Registry) RegisterActivityWithOptions(any, activity.RegisterOptions)    {}
func (r Registry) RegisterDynamicActivity(any, activity.DynamicRegisterOptions) {}

// NewReplayer is a replayer with every workflow the worker registers.
func NewReplayer() worker.WorkflowReplayer {
	r := worker.NewWorkflowReplayer()
	workflows.Register(Registry{Replayer: r}, nil)
	return r
}

// ReplayFile replays one history file (the format of `temporal workflow
// show --output json`) under the workflow ID and run ID it was recorded
// with. ReplayWorkflowHistoryFromJSONFile would replay it as workflow
// "ReplayId", and PowerChange takes another path when its ID is not the
// node's lock ID.
func ReplayFile(r worker.WorkflowReplayer, file string) error {
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	h, err := client.HistoryFromJSON(f, client.HistoryJSONOptions{})
	if err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	if err := ReplayHistory(r, h); err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	return nil
}

// ReplayHistory replays one history under the workflow ID and run ID it
// was recorded with.
func ReplayHistory(r worker.WorkflowReplayer, h *historypb.History) error {
	if len(h.GetEvents()) == 0 {
		return fmt.Errorf("empty history")
	}
	started := h.GetEvents()[0].GetWorkflowExecutionStartedEventAttributes()
	if started.GetWorkflowId() == "" {
		return fmt.Errorf("the first event is not a WorkflowExecutionStarted carrying the workflow ID")
	}
	return r.ReplayWorkflowHistoryWithOptions(nil, h, worker.ReplayWorkflowHistoryOptions{
		OriginalExecution: workflow.Execution{ID: started.GetWorkflowId(), RunID: started.GetOriginalExecutionRunId()},
	})
}

// WorkflowType is the type a history file records.
func WorkflowType(file string) (string, error) {
	f, err := os.Open(file)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h, err := client.HistoryFromJSON(f, client.HistoryJSONOptions{})
	if err != nil {
		return "", fmt.Errorf("%s: %w", file, err)
	}
	if len(h.GetEvents()) == 0 {
		return "", fmt.Errorf("%s: empty history", file)
	}
	return h.GetEvents()[0].GetWorkflowExecutionStartedEventAttributes().GetWorkflowType().GetName(), nil
}
