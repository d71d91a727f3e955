package itest_test

import (
	"testing"

	"github.com/metalpower/metalpower/internal/testbed/itest"
)

// TestRolloutOldBuildToNewBuild: itest.Rollout on the dev server (the
// real server runs it too, internal/testbed/cluster).
func TestRolloutOldBuildToNewBuild(t *testing.T) {
	t.Parallel()
	itest.Rollout(t, srv)
}
