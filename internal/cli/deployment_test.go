package cli

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/metalpower/metalpower/internal/config"
	"github.com/metalpower/metalpower/internal/testbed/itest"
)

func TestDeploymentCommands(t *testing.T) {
	dep := "metalpower-cli-" + uuid.NewString()[:8]
	s := itest.NewStack(t, srv, itest.StackOptions{Configure: func(c *config.Config) {
		c.Temporal.DeploymentName, c.Temporal.BuildID = dep, "b1"
	}})
	env := cliEnv(s)

	if code, out, errOut := run(t, env, "version"); code != 0 || strings.TrimSpace(out) != "b1" {
		t.Fatalf("version: %d %q %q", code, out, errOut)
	}
	var st struct {
		Current  string `json:"current_build_id"`
		Versions []struct {
			BuildID string `json:"build_id"`
		} `json:"versions"`
	}
	itest.WaitFor(t, 30*time.Second, "the first worker to be the current version", func() bool {
		code, out, _ := run(t, env, "deployment", "status")
		return code == 0 && json.Unmarshal([]byte(out), &st) == nil && st.Current == "b1"
	})
	if len(st.Versions) != 1 || st.Versions[0].BuildID != "b1" {
		t.Fatalf("versions = %+v", st.Versions)
	}

	tests := []struct {
		args []string
		env  []string
		code int
		want string
	}{
		{[]string{"deployment", "promote", "-build-id", "b1"}, nil, 0, "build b1 is the current version of deployment " + dep},
		{[]string{"deployment", "promote", "-build-id", "b9"}, nil, 1, `build "b9" of deployment "` + dep + `" has no workers yet: start them first (known builds: b1)`},
		{[]string{"deployment", "promote", "-build-id", "b1", "-ramp", "150"}, nil, 1, "ramp must be between 0 and 100 (got 150)"},
		{[]string{"deployment", "promote", "extra"}, nil, 2, "deployment promote"},
		{[]string{"deployment", "status"}, []string{"METALPOWER_TEMPORAL_DEPLOYMENT_NAME=", "METALPOWER_TEMPORAL_BUILD_ID="}, 1,
			"[temporal] deployment_name is empty: the workers are not versioned"},
		{[]string{"version"}, []string{"METALPOWER_TEMPORAL_BUILD_ID=bad id"}, 1, `[temporal] build_id: must be 1-200 letters`},
	}
	for _, tt := range tests {
		code, out, errOut := run(t, append(append([]string{}, env...), tt.env...), tt.args...)
		if code != tt.code || !strings.Contains(out+errOut, tt.want) {
			t.Errorf("%v: exit %d, want %d with %q\nstdout: %s\nstderr: %s", tt.args, code, tt.code, tt.want, out, errOut)
		}
	}
}
