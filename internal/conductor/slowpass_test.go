package conductor

import (
	"errors"
	"testing"
	"time"

	"github.com/metalpower/metalpower/activities"
	"github.com/metalpower/metalpower/workflows"
)

func TestSlowPass(t *testing.T) {
	pass := func(seconds float64) workflows.PowerSyncResult { return workflows.PowerSyncResult{Duration: seconds} }
	tests := []struct {
		name     string
		res      any
		err      error
		interval time.Duration
		want     bool
	}{
		{"three intervals is not slow", pass(360), nil, 2 * time.Minute, false},
		{"past three intervals", pass(360.5), nil, 2 * time.Minute, true},
		{"short pass", pass(1), nil, time.Minute, false},
		{"continued as new", pass(9999), errors.New("continue as new"), time.Minute, false},
		{"sync disabled", pass(9999), nil, 0, false},
		{"another workflow", activities.NodeSyncResult{}, nil, time.Minute, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got, _ := SlowPass(tt.res, tt.err, tt.interval); got != tt.want {
				t.Errorf("SlowPass = %v, want %v", got, tt.want)
			}
		})
	}
}
