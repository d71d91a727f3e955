// Package itest starts the real parts integration tests run against: the
// Temporal dev server (the temporal CLI built by `make deps` into
// tools/bin), the simulators and a worker. Tests never skip: a missing
// part fails with how to get it.
package itest

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"go.temporal.io/sdk/client"
)

// Server is a running Temporal dev server.
type Server struct {
	Address string
	// UI is the Web UI's base URL, when ServerOptions.UI was set.
	UI   string
	cmd  *exec.Cmd
	out  *bytes.Buffer
	opts ServerOptions
}

// ServerOptions shapes a dev server.
type ServerOptions struct {
	// DBFile keeps the server's state in a file ("" keeps it in memory).
	DBFile string
	// UI serves the Web UI (otherwise the server runs headless).
	UI bool
	// DynamicConfig adds KEY=VALUE dynamic configuration.
	DynamicConfig []string
}

// RepoRoot finds the repository root (the directory holding go.mod).
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for ; dir != filepath.Dir(dir); dir = filepath.Dir(dir) {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			if _, err := os.Stat(filepath.Join(dir, "tools", "go.mod")); err == nil {
				return dir, nil
			}
		}
	}
	return "", fmt.Errorf("repository root not found above the working directory")
}

// TemporalBinary is the temporal CLI built from tools/, or
// METALPOWER_TEST_TEMPORAL_CLI.
func TemporalBinary() (string, error) {
	if p := os.Getenv("METALPOWER_TEST_TEMPORAL_CLI"); p != "" {
		return p, nil
	}
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	p := filepath.Join(root, "tools", "bin", "temporal")
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("the temporal CLI is missing at %s: run `make deps` (it builds it from tools/)", p)
	}
	return p, nil
}

// FreePort returns a TCP port free on 127.0.0.1 at the time of the call.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// StartTemporal runs a dev server with its database in dbFile ("" keeps it
// in memory) and the search attributes metalpower uses.
func StartTemporal(dbFile string) (*Server, error) {
	return StartServer(ServerOptions{DBFile: dbFile})
}

// StartServer runs a dev server as opts say, with the search attributes
// metalpower uses; it returns once the server (and its UI) answers.
func StartServer(opts ServerOptions) (*Server, error) {
	bin, err := TemporalBinary()
	if err != nil {
		return nil, err
	}
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	s := &Server{Address: "127.0.0.1:" + strconv.Itoa(port), out: &bytes.Buffer{}, opts: opts}
	if err := s.start(bin, port); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *Server) start(bin string, port int) error {
	uiPort, err := FreePort()
	if err != nil {
		return err
	}
	args := []string{"server", "start-dev", "--ip", "127.0.0.1", "--port", strconv.Itoa(port), "--ui-port", strconv.Itoa(uiPort),
		"--log-level", "error",
		"--search-attribute", "NodeUUID=Keyword", "--search-attribute", "NodeName=Keyword", "--search-attribute", "PowerTarget=Keyword",
		"--dynamic-config-value", "frontend.enableUpdateWorkflowExecution=true"}
	if s.opts.UI {
		s.UI = "http://127.0.0.1:" + strconv.Itoa(uiPort)
	} else {
		args = append(args, "--headless")
	}
	for _, kv := range s.opts.DynamicConfig {
		args = append(args, "--dynamic-config-value", kv)
	}
	if s.opts.DBFile != "" {
		args = append(args, "--db-filename", s.opts.DBFile, "--sqlite-pragma", "journal_mode=wal", "--sqlite-pragma", "synchronous=normal")
	}
	s.cmd = exec.Command(bin, args...)
	s.cmd.Stdout, s.cmd.Stderr = &syncWriter{w: s.out}, &syncWriter{w: s.out}
	if err := s.cmd.Start(); err != nil {
		return fmt.Errorf("start temporal dev server: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for {
		err := s.ready(ctx)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			s.Stop()
			return fmt.Errorf("temporal dev server did not start on %s: %v\n%s", s.Address, err, s.out.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// ready checks the frontend answers, and the Web UI when it is on.
func (s *Server) ready(ctx context.Context) error {
	c, err := client.DialContext(ctx, client.Options{HostPort: s.Address, Logger: quietLogger{}})
	if err != nil {
		return err
	}
	defer c.Close()
	if _, err := c.CheckHealth(ctx, &client.CheckHealthRequest{}); err != nil {
		return err
	}
	if s.UI == "" {
		return nil
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.UI+"/", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("web UI: %s", resp.Status)
	}
	return nil
}

// Restart stops the server and starts it again on the same port and
// database (kill -9 when hard).
func (s *Server) Restart(hard bool) error { return s.RestartAfter(hard, 0) }

// RestartAfter is Restart with the server down for the given time: an
// outage, as clients see it.
func (s *Server) RestartAfter(hard bool, down time.Duration) error {
	if hard {
		s.cmd.Process.Kill()
		s.cmd.Wait()
	} else {
		s.Stop()
	}
	time.Sleep(down)
	bin, err := TemporalBinary()
	if err != nil {
		return err
	}
	_, portStr, _ := net.SplitHostPort(s.Address)
	port, _ := strconv.Atoi(portStr)
	return s.start(bin, port)
}

// Stop ends the server.
func (s *Server) Stop() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	s.cmd.Process.Signal(os.Interrupt)
	done := make(chan struct{})
	go func() { s.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		s.cmd.Process.Kill()
		<-done
	}
}

// Client dials the server.
func (s *Server) Client(t testing.TB) client.Client {
	t.Helper()
	c, err := client.Dial(client.Options{HostPort: s.Address, Logger: quietLogger{}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

type syncWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (w *syncWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.w.Write(p)
}

// quietLogger drops the SDK's logs in tests.
type quietLogger struct{}

func (quietLogger) Debug(string, ...any) {}
func (quietLogger) Info(string, ...any)  {}
func (quietLogger) Warn(string, ...any)  {}
func (quietLogger) Error(string, ...any) {}
