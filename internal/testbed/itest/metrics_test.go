package itest_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/rs/zerolog"

	"github.com/metalpower/metalpower/activities"
	"github.com/metalpower/metalpower/internal/conductor"
	"github.com/metalpower/metalpower/internal/node"
	"github.com/metalpower/metalpower/internal/testbed/itest"
	"github.com/metalpower/metalpower/workflows"
)

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestWorkerServesMetrics runs a short demo on a worker with a metrics
// listener (a power change with a Nova instance, then a sync pass that
// corrects a drifted node) and scrapes /metrics for the SDK's and the
// domain's series; /healthz and /readyz answer 200.
func TestWorkerServesMetrics(t *testing.T) {
	t.Parallel()
	s := itest.NewStack(t, srv, itest.StackOptions{NoWorker: true, RedfishSystems: 2, IPMIBMCs: 1})
	log := zerolog.New(s.Log).Level(zerolog.DebugLevel)
	// The stack's task queue has no other worker: this one runs it all.
	w, err := conductor.NewWorker(context.Background(), s.Config, log, conductor.WorkerOptions{
		Client: s.Client, NoSchedules: true, MetricsAddr: "127.0.0.1:0",
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Stop(); w.Close() })
	base := "http://" + w.MetricsAddr()
	if code, body := httpGet(t, base+"/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "not polling") {
		t.Fatalf("/readyz before Start = %d %s", code, body)
	}
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	s.WaitForWorker(t, "")

	inst := uuid.NewString()
	n := s.AddRedfishNode(t, "metrics-change", s.Redfish.SystemIDs()[0], inst)
	s.Redfish.SetPowerState(s.Redfish.SystemIDs()[0], "On")
	res, err := s.Change(t, n.Name, node.PowerOff, 0)
	if err != nil {
		t.Fatalf("power change: %v", err)
	}
	if res.Nova != activities.NovaDelivered {
		t.Fatalf("result = %+v", res)
	}
	s.AddRedfishNode(t, "metrics-drifted", s.Redfish.SystemIDs()[1], "")
	s.Redfish.SetPowerState(s.Redfish.SystemIDs()[1], "Off")
	counts := s.SyncPass(t)
	if counts.Corrected != 1 {
		t.Fatalf("sync counts = %+v", counts.SyncCounts)
	}

	for _, path := range []string{"/healthz", "/readyz"} {
		if code, body := httpGet(t, base+path); code != http.StatusOK {
			t.Fatalf("%s = %d %s", path, code, body)
		}
	}
	// [debug] pprof is off by default.
	if code, _ := httpGet(t, base+"/debug/pprof/"); code != http.StatusNotFound {
		t.Fatalf("/debug/pprof/ without [debug] pprof = %d, want 404", code)
	}
	want := []string{
		// The Temporal SDK's metrics, through the OpenTelemetry handler.
		"temporal_request_total{",
		"temporal_request_latency_seconds_bucket{",
		"temporal_workflow_completed_total{",
		`workflow_type="` + workflows.PowerChangeWorkflow + `"`,
		`workflow_type="` + workflows.PowerSyncWorkflow + `"`,
		"temporal_activity_execution_latency_seconds_bucket{",
		"temporal_workflow_task_queue_poll_succeed_total{",
		// The domain's.
		`metalpower_bmc_call_duration_seconds_count{driver="redfish",op="get_power_state",outcome="ok"}`,
		`metalpower_bmc_call_duration_seconds_count{driver="redfish",op="set_power_state",outcome="ok"}`,
		"metalpower_sync_pass_duration_seconds_count 1",
		`metalpower_sync_nodes_total{result="corrected"} 1`,
		`metalpower_sync_nodes_total{result="skipped_locked"} 0`,
		"metalpower_nodes_out_of_sync 1",
		`metalpower_nova_notifications_total{outcome="delivered"}`,
		"metalpower_nova_notification_queue_age_seconds_count",
	}
	// Results are recorded as workflows complete, which can trail the
	// client seeing them: poll briefly.
	var body string
	deadline := time.Now().Add(10 * time.Second)
	for {
		var code int
		code, body = httpGet(t, base+"/metrics")
		if code != http.StatusOK {
			t.Fatalf("/metrics = %d", code)
		}
		missing := ""
		for _, w := range want {
			if !strings.Contains(body, w) {
				missing = w
				break
			}
		}
		if missing == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/metrics has no %q:\n%s", missing, body)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestWorkerServesPprofWhenAsked: with [debug] pprof the worker's metrics
// listener serves Go's profiles.
func TestWorkerServesPprofWhenAsked(t *testing.T) {
	t.Parallel()
	s := itest.NewStack(t, srv, itest.StackOptions{NoWorker: true, RedfishSystems: 1, IPMIBMCs: 1})
	cfg := s.Config
	cfg.Debug.Pprof = true
	w, err := conductor.NewWorker(context.Background(), cfg, zerolog.Nop(), conductor.WorkerOptions{
		Client: s.Client, NoSchedules: true, MetricsAddr: "127.0.0.1:0",
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	base := "http://" + w.MetricsAddr()
	for path, want := range map[string]string{
		"/debug/pprof/":                  "Types of profiles available",
		"/debug/pprof/heap?debug=1":      "heap profile",
		"/debug/pprof/goroutine?debug=1": "goroutine profile",
	} {
		if code, body := httpGet(t, base+path); code != http.StatusOK || !strings.Contains(body, want) {
			t.Errorf("%s = %d %.200s", path, code, body)
		}
	}
}
