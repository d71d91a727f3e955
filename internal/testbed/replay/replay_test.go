package replay_test

import (
	"io/fs"
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
	// Every history under the corpus: the dev server's recordings, the
	// real server's (real-server/, make replay-record-real), and those
	// earlier builds recorded (kept in subdirectories of their own).
	dir := filepath.Join(root, replay.Dir)
	var files, real []string
	err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || filepath.Ext(path) != ".json" {
			return err
		}
		files = append(files, path)
		if filepath.Base(filepath.Dir(path)) == replay.RealServer {
			real = append(real, path)
		}
		return nil
	})
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
		name, _ := filepath.Rel(filepath.Join(root, replay.Dir), f)
		t.Run(strings.TrimSuffix(name, ".json"), func(t *testing.T) {
			if err := replay.ReplayFile(replay.NewReplayer(), f); err != nil {
				t.Fatalf("%s (%s) no longer replays: %v", filepath.Base(f), typ, err)
			}
		})
	}
	for _, typ := range []string{workflows.PowerChangeWorkflow, activities.NovaNotifyWorkflow, workflows.PowerSyncWorkflow,
		activities.NodePowerSyncWorkflow, workflows.PowerFailureRecoveryWorkflow, workflows.NodeProvisionWorkflow} {
		if seen[typ] == 0 {
			t.Errorf("no history of %s in %s: record one (make replay-record-real)", typ, replay.Dir)
		}
	}
	if len(real) == 0 {
		t.Errorf("no history recorded on the real server in %s/%s (make replay-record-real)", replay.Dir, replay.RealServer)
	}
	t.Logf("replayed %d histories (%d from the real server): %v", len(files), len(real), seen)
}
