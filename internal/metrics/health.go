package metrics

import (
	"context"
	"encoding/json"
	"net/http"
	"time"
)

// Check is one readiness check: nil when the dependency answers.
type Check struct {
	Name string
	Run  func(ctx context.Context) error
}

// CheckTimeout bounds each readiness check.
const CheckTimeout = 3 * time.Second

// Healthz answers 200 while the process serves HTTP at all (liveness).
func Healthz() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		writeStatus(w, http.StatusOK, map[string]string{"status": "ok"})
	})
}

// Readyz answers 200 when every check passes, else 503 naming the
// failures (readiness: Temporal reachable, store answering, ...).
func Readyz(checks ...Check) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		status, body := http.StatusOK, map[string]string{}
		for _, c := range checks {
			ctx, cancel := context.WithTimeout(r.Context(), CheckTimeout)
			err := c.Run(ctx)
			cancel()
			if err != nil {
				status, body[c.Name] = http.StatusServiceUnavailable, err.Error()
			} else {
				body[c.Name] = "ok"
			}
		}
		writeStatus(w, status, body)
	})
}

func writeStatus(w http.ResponseWriter, status int, body any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(body)
}

// Mux serves /metrics, /healthz and /readyz, as the worker's metrics
// listener does.
func (m *Metrics) Mux(checks ...Check) *http.ServeMux {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", m.Handler())
	mux.Handle("GET /healthz", Healthz())
	mux.Handle("GET /readyz", Readyz(checks...))
	return mux
}
