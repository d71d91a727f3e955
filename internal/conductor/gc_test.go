package conductor

import (
	"runtime/debug"
	"testing"
)

func TestTuneGCLeavesAnOperatorsGOGCAlone(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	for _, tc := range []struct {
		env     string
		running int // the percent the runtime took from GOGC at start
		want    int
	}{
		{"", 100, GCPercent},
		{"150", 150, 150},
		{"off", -1, -1},
	} {
		t.Setenv("GOGC", tc.env)
		debug.SetGCPercent(tc.running)
		TuneGC()
		if got := debug.SetGCPercent(100); got != tc.want {
			t.Errorf("GOGC=%q: GC percent %d, want %d", tc.env, got, tc.want)
		}
	}
}
