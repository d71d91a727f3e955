package workflows

import (
	"reflect"
	"runtime"
	"strings"
	"testing"

	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

	"github.com/metalpower/metalpower/activities"
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

// registerActivities registers every activity struct, as the worker does,
// for the tests to mock their methods.
func registerActivities(env *testsuite.TestWorkflowEnvironment) {
	for _, a := range []any{&activities.Power{}, &activities.Nova{}, &activities.SyncPass{}, &activities.NodeSync{},
		&activities.Recovery{}, &activities.Provision{}} {
		env.RegisterActivity(a)
	}
}

// nameOf is the name an activity method is registered under, as the SDK
// derives it, so the tests name each activity by its method, never by a
// string of their own.
func nameOf(activity any) string {
	name := runtime.FuncForPC(reflect.ValueOf(activity).Pointer()).Name()
	return strings.TrimSuffix(name[strings.LastIndex(name, ".")+1:], "-fm")
}
