package itest

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/rs/zerolog"

	"github.com/metalpower/metalpower/internal/api"
)

// StartAPI serves the REST API over the stack (noauth unless auth is set)
// and returns its base URL, e.g. http://127.0.0.1:PORT.
func (s *Stack) StartAPI(t testing.TB, auth func(r *http.Request) bool) string {
	t.Helper()
	srv := &api.Server{Store: s.Store, Temporal: s.Client, TaskQueue: s.Config.Temporal.TaskQueue, Log: zerolog.New(s.Log), Auth: auth}
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	return ts.URL
}
