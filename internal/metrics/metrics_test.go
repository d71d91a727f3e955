package metrics_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/metalpower/metalpower/internal/bmc"
	"github.com/metalpower/metalpower/internal/metrics"
)

func scrape(t *testing.T, h http.Handler) string {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("GET /metrics = %d", rec.Code)
	}
	b, _ := io.ReadAll(rec.Body)
	return string(b)
}

func wantLines(t *testing.T, body string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(body, w) {
			t.Errorf("missing %q", w)
		}
	}
	if t.Failed() {
		t.Logf("scrape:\n%s", body)
	}
}

func TestDomainMetricsAreExported(t *testing.T) {
	m, err := metrics.New()
	if err != nil {
		t.Fatal(err)
	}
	defer m.Shutdown(context.Background())
	m.SyncPass(1500*time.Millisecond, map[string]int{metrics.SyncInSync: 7, metrics.SyncCorrected: 2, metrics.SyncSkippedLocked: 0})
	m.NodesOutOfSync(3)
	m.AddNodesOutOfSync(2)
	m.ObserveBMCCall("redfish", "get_power_state", 20*time.Millisecond, nil)
	m.ObserveBMCCall("ipmi", "set_power_state", time.Second, &bmc.Error{Kind: bmc.Auth, Err: errors.New("bad password")})
	m.NovaDelivered(time.Now().Add(-2 * time.Second))
	m.NovaNotification(metrics.NovaQueued, 1)
	m.NovaNotification(metrics.NovaExpired, 0) // nothing: no series
	m.NovaDeliveryError()
	m.MaintenanceEntered(metrics.MaintenancePowerFailure)
	m.Recovered()
	m.HTTPRequest("GET", "/v1/nodes/{ident}", 200, 5*time.Millisecond)
	// The SDK's handler exports through the same provider.
	m.TemporalHandler().WithTags(map[string]string{"namespace": "default"}).Counter("temporal_request").Inc(1)
	m.TemporalHandler().Timer("temporal_request_latency").Record(30 * time.Millisecond)

	body := scrape(t, m.Handler())
	wantLines(t, body,
		"# TYPE metalpower_sync_pass_duration_seconds histogram",
		"metalpower_sync_pass_duration_seconds_count 1",
		`metalpower_sync_nodes_total{result="in_sync"} 7`,
		`metalpower_sync_nodes_total{result="corrected"} 2`,
		`metalpower_sync_nodes_total{result="skipped_locked"} 0`,
		"metalpower_nodes_out_of_sync 5",
		`metalpower_bmc_call_duration_seconds_count{driver="redfish",op="get_power_state",outcome="ok"} 1`,
		`metalpower_bmc_call_duration_seconds_count{driver="ipmi",op="set_power_state",outcome="auth"} 1`,
		`metalpower_nova_notifications_total{outcome="delivered"} 1`,
		`metalpower_nova_notifications_total{outcome="queued"} 1`,
		"metalpower_nova_notification_queue_age_seconds_count 1",
		"metalpower_nova_delivery_errors_total 1",
		`metalpower_maintenance_entries_total{reason="power_failure"} 1`,
		"metalpower_maintenance_recoveries_total 1",
		`metalpower_api_requests_total{method="GET",route="/v1/nodes/{ident}",status="200"} 1`,
		`metalpower_api_request_duration_seconds_count{method="GET",route="/v1/nodes/{ident}"} 1`,
		"# TYPE temporal_request_total counter",
		`temporal_request_total{namespace="default"} 1`,
		"temporal_request_latency_seconds_bucket",
		"go_goroutines",
	)
	if strings.Contains(body, `outcome="expired"`) {
		t.Error("a zero count created a series")
	}
	// The queue age landed in the 2.5 s bucket, not the first ones.
	wantLines(t, body, `metalpower_nova_notification_queue_age_seconds_bucket{le="1"} 0`)
}

func TestInstancesDoNotShareSeries(t *testing.T) {
	a, b := metrics.MustNew(), metrics.MustNew()
	a.Recovered()
	if body := scrape(t, b.Handler()); strings.Contains(body, "metalpower_maintenance_recoveries_total 1") {
		t.Fatal("b shows a's series")
	}
}

func TestNilMetricsRecordNothing(t *testing.T) {
	var m *metrics.Metrics
	m.SyncPass(time.Second, map[string]int{"in_sync": 1})
	m.ObserveBMCCall("ipmi", "get_power_state", time.Second, nil)
	m.NovaDelivered(time.Now())
	m.MaintenanceEntered("x")
	m.HTTPRequest("GET", "/", 200, time.Second)
	if m.TemporalHandler() != nil {
		t.Fatal("nil metrics gave a handler")
	}
}

func TestOutcome(t *testing.T) {
	for err, want := range map[error]string{
		nil: "ok",
		&bmc.Error{Kind: bmc.Transient, Err: errors.New("x")}:   "transient",
		&bmc.Error{Kind: bmc.Unsupported, Err: errors.New("x")}: "unsupported",
		&bmc.Error{Kind: bmc.Config, Err: errors.New("x")}:      "config",
		context.DeadlineExceeded:                                "transient",
		errors.New("other"):                                     "error",
	} {
		if got := metrics.Outcome(err); got != want {
			t.Errorf("Outcome(%v) = %q, want %q", err, got, want)
		}
	}
}

func TestHealthAndReadiness(t *testing.T) {
	m := metrics.MustNew()
	failing := true
	mux := m.Mux(metrics.Check{Name: "store", Run: func(context.Context) error {
		if failing {
			return errors.New("database is locked")
		}
		return nil
	}})
	get := func(path string) (int, string) {
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		return rec.Code, rec.Body.String()
	}
	if code, _ := get("/healthz"); code != http.StatusOK {
		t.Fatalf("/healthz = %d", code)
	}
	if code, body := get("/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "database is locked") {
		t.Fatalf("/readyz with a failing check = %d %s", code, body)
	}
	failing = false
	if code, body := get("/readyz"); code != http.StatusOK {
		t.Fatalf("/readyz = %d %s", code, body)
	}
	if code, _ := get("/metrics"); code != http.StatusOK {
		t.Fatalf("/metrics = %d", code)
	}
}
