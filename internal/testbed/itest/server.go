// Package itest assembles what integration tests run against, for a
// testing.TB: a shared dev server (internal/testbed/devserver) and, per
// test, a stack of simulators, store and worker (internal/testbed).
// Tests never skip: a missing part fails with how to get it.
package itest

import (
	"context"
	"testing"

	"go.temporal.io/sdk/client"

	"github.com/metalpower/metalpower/internal/testbed/devserver"
)

// Server is a dev server that tests share.
type Server struct{ *devserver.Server }

// ServerOptions shapes a dev server.
type ServerOptions = devserver.Options

// StartServer runs a dev server as opts say.
func StartServer(opts ServerOptions) (*Server, error) {
	s, err := devserver.Start(opts)
	if err != nil {
		return nil, err
	}
	return &Server{s}, nil
}

// StartTemporal runs a headless dev server with its database in dbFile
// ("" keeps it in memory).
func StartTemporal(dbFile string) (*Server, error) {
	return StartServer(ServerOptions{DBFile: dbFile})
}

// Attach names a Temporal server the test bed did not start (the real
// cluster of internal/testbed/cluster): Stop and Restart do nothing to it.
func Attach(address string) *Server {
	return &Server{&devserver.Server{Address: address}}
}

// Client dials the server; the client closes when the test ends.
func (s *Server) Client(t testing.TB) client.Client {
	t.Helper()
	c, err := devserver.Dial(context.Background(), s.Address)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}
