package openstack_test

import (
	"context"
	"net/http"
	"slices"
	"testing"
	"time"
)

// BenchmarkNovaSeesPowerChange measures how long a power change made
// through metalpower's API takes to show in Nova: from the API's 202 to
// nova-api showing the server's new status (SHUTOFF or ACTIVE, reached
// through metalpower's power-update event), over 20 changes alternating
// off and on, on a real OpenStack. Between changes it waits two of
// Nova's cache refreshes, so no change meets Nova's stale-cache window
// (docs/openstack.md). It reports p50 and p95 in milliseconds. `make
// bench-openstack` runs it (about 8 minutes).
func BenchmarkNovaSeesPowerChange(b *testing.B) {
	const changes = 20
	w := startWorld(b, "os-bench")
	w.deploy("os-bench")
	w.waitAgree("os-bench", true, 2*time.Minute, "the new server")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	token := w.adminToken(ctx)
	var took []time.Duration
	b.ResetTimer()
	for range b.N {
		took = took[:0]
		for i := range changes {
			b.StopTimer()
			w.waitRefresh(2)
			b.StartTimer()
			target, status := `{"target": "power off"}`, "SHUTOFF"
			if i%2 == 1 {
				target, status = `{"target": "power on"}`, "ACTIVE"
			}
			if got := w.put(ctx, token, "/v1/nodes/os-bench/states/power", target); got != http.StatusAccepted {
				b.Fatalf("change %d: %d, want 202", i, got)
			}
			start := time.Now()
			for {
				s, err := w.cloud.Server(ctx, w.server["os-bench"])
				if err != nil {
					b.Fatal(err)
				}
				if s.Status == status {
					break
				}
				if time.Since(start) > time.Minute {
					b.Fatalf("change %d: Nova still shows %s after a minute", i, s.Status)
				}
				time.Sleep(20 * time.Millisecond)
			}
			took = append(took, time.Since(start))
		}
	}
	b.StopTimer()
	slices.Sort(took)
	pct := func(p float64) float64 { return float64(took[int(p*float64(len(took)-1))].Microseconds()) / 1000 }
	b.ReportMetric(pct(0.5), "p50-ms")
	b.ReportMetric(pct(0.95), "p95-ms")
	b.ReportMetric(float64(took[len(took)-1].Microseconds())/1000, "max-ms")
}
