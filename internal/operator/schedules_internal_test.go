package operator

import (
	"strings"
	"testing"
	"time"

	"go.temporal.io/sdk/client"
)

func TestScheduleDrift(t *testing.T) {
	have := func(every time.Duration, queue string) client.Schedule {
		return client.Schedule{
			Spec:   &client.ScheduleSpec{Intervals: []client.ScheduleIntervalSpec{{Every: every}}},
			Action: &client.ScheduleWorkflowAction{TaskQueue: queue},
		}
	}
	spec := scheduleSpec{id: "power-sync", every: 2 * time.Minute}
	tests := []struct {
		name string
		want scheduleSpec
		have client.Schedule
		say  []string // substrings, one per difference
	}{
		{"agrees", spec, have(2*time.Minute, "metalpower"), nil},
		{"other interval", spec, have(time.Hour, "metalpower"), []string{"runs every 1h0m0s, this configuration says 2m0s"}},
		{"other task queue", spec, have(2*time.Minute, "old"), []string{`task queue "old", this configuration says "metalpower"`}},
		{"both", spec, have(time.Hour, "old"), []string{"runs every 1h0m0s", `task queue "old"`}},
		{"disabled here", scheduleSpec{id: "power-sync"}, have(time.Hour, "metalpower"), []string{"this configuration disables it"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := scheduleDrift(tt.want, tt.have, "metalpower")
			if len(got) != len(tt.say) {
				t.Fatalf("drift = %q, want %d differences", got, len(tt.say))
			}
			for i, s := range tt.say {
				if !strings.Contains(got[i], s) {
					t.Errorf("difference %d = %q, want it to say %q", i, got[i], s)
				}
			}
		})
	}
}
