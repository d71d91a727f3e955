package workflows

import (
	"testing"

	"go.temporal.io/sdk/workflow"
)

// Every workflow type declares a behaviour: a versioned worker refuses to
// register one without.
func TestEveryWorkflowTypeHasAVersioningBehavior(t *testing.T) {
	for _, wt := range Types() {
		if wt.Behavior == workflow.VersioningBehaviorUnspecified {
			t.Errorf("%s has no versioning behaviour", wt.Name)
		}
	}
}
