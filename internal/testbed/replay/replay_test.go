package replay_test

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/metalpower/metalpower/activities"
	"github.com/metalpower/metalpower/internal/testbed/replay"
	"github.com/metalpower/metalpower/workflows"
)

// TestReplayCorpus replays every recorded history with the workflows as
// the worker registers them: a change that makes any of them
// nondeterministic fails here.
func TestReplayCorpus(t *testing.T) {
	root, err := replay.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	files, err := filepath.Glob(filepath.Join(root, replay.Dir, "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for _, f := range files {
		typ, err := replay.WorkflowType(f)
		if err != nil {
			t.Fatal(err)
		}
		seen[typ]++
		t.Run(strings.TrimSuffix(filepath.Base(f), ".json"), func(t *testing.T) {
			if err := replay.ReplayFile(replay.NewReplayer(), f); err != nil {
				t.Fatalf("%s (%s) no longer replays: %v", filepath.Base(f), typ, err)
			}
		})
	}
	for _, typ := range []string{workflows.PowerChangeWorkflow, activities.NovaNotifyWorkflow, workflows.PowerSyncWorkflow,
		workflows.NodePowerSyncWorkflow, workflows.PowerFailureRecoveryWorkflow} {
		if seen[typ] == 0 {
			t.Errorf("no history of %s in %s: refresh the corpus (make replay-refresh)", typ, replay.Dir)
		}
	}
	t.Logf("replayed %d histories: %v", len(files), seen)
}
