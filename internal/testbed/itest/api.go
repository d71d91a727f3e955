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
func (s *Stack) StartAPI(t testing.TB, auth api.Authenticator) string {
	t.Helper()
	return s.StartAPIServer(t, &api.Server{Auth: auth})
}

// StartAPIServer serves srv, with the stack's store, Temporal client,
// task queue and log, and returns its base URL.
func (s *Stack) StartAPIServer(t testing.TB, srv *api.Server) string {
	t.Helper()
	ts := httptest.NewServer(s.APIHandler(srv))
	t.Cleanup(ts.Close)
	return ts.URL
}

// APIHandler is srv's handler over the stack, for a test that serves it
// itself (behind a recorder, say).
func (s *Stack) APIHandler(srv *api.Server) http.Handler {
	srv.Store, srv.Temporal, srv.TaskQueue, srv.Log = s.Store, s.Client, s.Config.Temporal.TaskQueue, zerolog.New(s.Log)
	return srv.Handler()
}
