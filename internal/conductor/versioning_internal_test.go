package conductor

import (
	"strings"
	"testing"

	"github.com/metalpower/metalpower/internal/config"
)

func TestDeploymentOptions(t *testing.T) {
	tests := []struct {
		name    string
		cfg     config.Temporal
		linked  string
		want    string // "" with UseVersioning off
		wantErr string
	}{
		{name: "unversioned", cfg: config.Temporal{}, linked: "abc"},
		{name: "configured build id wins", cfg: config.Temporal{DeploymentName: "mp", BuildID: "v2"}, linked: "abc", want: "v2"},
		{name: "linked build id", cfg: config.Temporal{DeploymentName: "mp"}, linked: "abc", want: "abc"},
		// go test binaries record no VCS revision.
		{name: "no build id", cfg: config.Temporal{DeploymentName: "mp"}, wantErr: "[temporal] build_id is empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			old := linkedBuildID
			linkedBuildID = tt.linked
			defer func() { linkedBuildID = old }()
			got, err := deploymentOptions(tt.cfg)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.UseVersioning != (tt.want != "") || got.Version.BuildID != tt.want || (tt.want != "" && got.Version.DeploymentName != "mp") {
				t.Fatalf("options = %+v, want build %q", got, tt.want)
			}
		})
	}
}
