package api_test

import (
	"context"
	"golang.org/x/crypto/bcrypt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/metalpower/metalpower/internal/api"
	"github.com/metalpower/metalpower/internal/metrics"
	"github.com/metalpower/metalpower/internal/node"
	"github.com/metalpower/metalpower/internal/store"
	"github.com/metalpower/metalpower/internal/testbed/itest"
)

// TestMetricsAndHealthNeedNoAuth: /metrics, /healthz and /readyz answer
// without credentials (and without a microversion), every other route
// still needs them; requests are counted by route pattern.
func TestMetricsAndHealthNeedNoAuth(t *testing.T) {
	t.Parallel()
	s := itest.NewStack(t, srv, itest.StackOptions{})
	m := metrics.MustNew()
	auth := basicAuth(t, "admin", "pw")
	h := (&api.Server{Store: s.Store, Temporal: s.Client, TaskQueue: s.Config.Temporal.TaskQueue,
		Log: zerolog.Nop(), Auth: auth, Metrics: m}).Handler()
	ts := httptest.NewServer(h)
	defer ts.Close()

	for _, path := range []string{"/healthz", "/readyz", "/metrics"} {
		// An unsupported microversion does not matter either.
		if status, _, body := do(t, http.MethodGet, ts.URL+path, "9.99", ""); status != http.StatusOK {
			t.Fatalf("%s without credentials: %d %s", path, status, body)
		}
	}
	if status, _, _ := do(t, http.MethodGet, ts.URL+"/v1/nodes", "", ""); status != http.StatusUnauthorized {
		t.Fatalf("/v1/nodes without credentials: %d", status)
	}

	n := s.AddRedfishNode(t, "enrolled", "1", "")
	if _, err := store.Modify(context.Background(), s.Store, n.UUID, func(n *node.Node) error {
		n.ProvisionState = node.Enroll
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	authed := func(method, path, body string) int {
		t.Helper()
		req, _ := http.NewRequest(method, ts.URL+path, strings.NewReader(body))
		req.SetBasicAuth("admin", "pw")
		req.Header.Set("X-OpenStack-Ironic-API-Version", "1.95")
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if status := authed(http.MethodGet, "/v1/nodes", ""); status != http.StatusOK {
		t.Fatalf("/v1/nodes with credentials: %d", status)
	}
	if status := authed(http.MethodPut, "/v1/nodes/"+n.UUID+"/states/provision", `{"target":"manage"}`); status != http.StatusAccepted {
		t.Fatalf("manage: %d", status)
	}

	_, _, body := do(t, http.MethodGet, ts.URL+"/metrics", "", "")
	for _, want := range []string{
		`metalpower_api_requests_total{method="GET",route="/v1/nodes",status="401"} 1`,
		`metalpower_api_requests_total{method="GET",route="/v1/nodes",status="200"} 1`,
		`metalpower_api_requests_total{method="PUT",route="/v1/nodes/{ident}/states/provision",status="202"} 1`,
		`metalpower_api_request_duration_seconds_count{method="PUT",route="/v1/nodes/{ident}/states/provision"} 1`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics has no %s", want)
		}
	}
	if strings.Contains(body, n.UUID) {
		t.Error("a node UUID became a label value")
	}
	if t.Failed() {
		t.Logf("/metrics:\n%s", body)
	}
}

// TestPprofIsOffByDefaultAndBehindAuth: /debug/pprof/ does not exist
// unless [debug] pprof is on; then it needs the API's credentials.
func TestPprofIsOffByDefaultAndBehindAuth(t *testing.T) {
	t.Parallel()
	auth := basicAuth(t, "admin", "pw")
	for _, on := range []bool{false, true} {
		ts := httptest.NewServer((&api.Server{Log: zerolog.Nop(), Auth: auth, Pprof: on}).Handler())
		get := func(path string, creds bool) (int, string) {
			req, _ := http.NewRequest(http.MethodGet, ts.URL+path, nil)
			if creds {
				req.SetBasicAuth("admin", "pw")
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			return resp.StatusCode, string(b)
		}
		if code, _ := get("/debug/pprof/", false); code != http.StatusUnauthorized {
			t.Errorf("pprof %v, no credentials: %d, want 401", on, code)
		}
		code, body := get("/debug/pprof/goroutine?debug=1", true)
		switch {
		case !on && code != http.StatusNotFound:
			t.Errorf("pprof off: %d, want 404", code)
		case on && (code != http.StatusOK || !strings.Contains(body, "goroutine profile")):
			t.Errorf("pprof on: %d %.200s", code, body)
		}
		ts.Close()
	}
}

// basicAuth is an htpasswd of one user, as http_basic loads it.
func basicAuth(t *testing.T, user, password string) api.Htpasswd {
	t.Helper()
	hash, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return api.Htpasswd{user: hash}
}
