// Package devserver runs the Temporal dev server (the temporal CLI that
// `make deps` builds into tools/bin) the way metalpower needs it: with
// its search attributes registered. Tests, the demo, the benchmarks and
// the chaos run all start it from here.
package devserver

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"

	"go.temporal.io/sdk/client"
)

// SearchAttributes are the custom search attributes metalpower's
// workflows set (the Web UI filters on them).
var SearchAttributes = []string{"NodeUUID=Keyword", "NodeName=Keyword", "PowerTarget=Keyword"}

// Options shapes a dev server.
type Options struct {
	// Port and UIPort are the frontend's and the Web UI's (0: a free one).
	Port, UIPort int
	// DBFile keeps the server's state in a file, with the WAL pragmas
	// ("" keeps it in memory).
	DBFile string
	// UI serves the Web UI (otherwise the server runs headless).
	UI bool
	// DynamicConfig adds KEY=VALUE dynamic configuration.
	DynamicConfig []string
	// LogLevel is the server's (default error).
	LogLevel string
}

// Args are the temporal CLI's arguments for a server as opts say.
func Args(opts Options) []string {
	if opts.LogLevel == "" {
		opts.LogLevel = "error"
	}
	args := []string{"server", "start-dev", "--ip", "127.0.0.1", "--port", strconv.Itoa(opts.Port), "--ui-port", strconv.Itoa(opts.UIPort),
		"--log-level", opts.LogLevel, "--dynamic-config-value", "frontend.enableUpdateWorkflowExecution=true"}
	for _, sa := range SearchAttributes {
		args = append(args, "--search-attribute", sa)
	}
	if !opts.UI {
		args = append(args, "--headless")
	}
	for _, kv := range opts.DynamicConfig {
		args = append(args, "--dynamic-config-value", kv)
	}
	if opts.DBFile != "" {
		args = append(args, "--db-filename", opts.DBFile, "--sqlite-pragma", "journal_mode=wal", "--sqlite-pragma", "synchronous=normal")
	}
	return args
}

// Server is a running dev server.
type Server struct {
	Address string
	// UI is the Web UI's base URL, when Options.UI was set.
	UI   string
	cmd  *exec.Cmd
	out  *SyncBuffer
	opts Options
}

// RepoRoot finds the repository root (the directory holding go.mod and
// tools/go.mod) above the working directory.
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

// Binary is the temporal CLI built from tools/, or
// METALPOWER_TEST_TEMPORAL_CLI.
func Binary() (string, error) {
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
func FreePort() (int, error) { return FreePorts(1) }

// FreePorts returns the first of n consecutive TCP ports free on
// 127.0.0.1 at the time of the call. They are below the kernel's
// ephemeral range (32768 and up), so no outgoing connection or port-0
// listener of another process takes one between this check and the
// caller's bind; and picked at random, so concurrent test processes
// rarely pick the same ones. Below 32768 also suits the Temporal server,
// which stores membership ports as SMALLINT.
func FreePorts(n int) (int, error) {
	const low, high = 10000, 32768
	for range 1000 {
		p := low + rand.IntN(high-low-n)
		if free(p, n) {
			return p, nil
		}
	}
	return 0, fmt.Errorf("no %d consecutive free ports between %d and %d", n, low, high)
}

// SpacedPorts returns n ports as FreePorts(2) picks them, each with its
// successor free too and no two adjacent, so a process may take port+1.
func SpacedPorts(n int, taken ...int) ([]int, error) {
	var ports []int
	for len(ports) < n {
		p, err := FreePorts(2)
		if err != nil {
			return nil, err
		}
		near := func(q int) bool { return q-1 <= p && p <= q+1 }
		if !slices.ContainsFunc(ports, near) && !slices.ContainsFunc(taken, near) {
			ports = append(ports, p)
		}
	}
	return ports, nil
}

func free(port, n int) bool {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for p := port; p < port+n; p++ {
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
		if err != nil {
			return false
		}
		ls = append(ls, l)
	}
	return true
}

// Start runs a dev server as opts say; it returns once the server (and
// its UI) answers.
func Start(opts Options) (*Server, error) {
	var err error
	if opts.Port == 0 {
		if opts.Port, err = FreePort(); err != nil {
			return nil, err
		}
	}
	if opts.UIPort == 0 {
		if opts.UIPort, err = FreePort(); err != nil {
			return nil, err
		}
	}
	s := &Server{Address: "127.0.0.1:" + strconv.Itoa(opts.Port), out: &SyncBuffer{}, opts: opts}
	if opts.UI {
		s.UI = "http://127.0.0.1:" + strconv.Itoa(opts.UIPort)
	}
	if err := s.start(); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *Server) start() error {
	bin, err := Binary()
	if err != nil {
		return err
	}
	s.cmd = exec.Command(bin, Args(s.opts)...)
	s.cmd.Stdout, s.cmd.Stderr = s.out, s.out
	if err := s.cmd.Start(); err != nil {
		return fmt.Errorf("start temporal dev server: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := WaitReady(ctx, s.Address, s.UI); err != nil {
		s.Stop()
		return fmt.Errorf("temporal dev server did not start on %s: %v\n%s", s.Address, err, s.out.String())
	}
	return nil
}

// WaitReady polls until the frontend at address answers, and the Web UI
// at ui when ui != "".
func WaitReady(ctx context.Context, address, ui string) error {
	for {
		err := ready(ctx, address, ui)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func ready(ctx context.Context, address, ui string) error {
	c, err := Dial(ctx, address)
	if err != nil {
		return err
	}
	defer c.Close()
	if _, err := c.CheckHealth(ctx, &client.CheckHealthRequest{}); err != nil {
		return err
	}
	if ui == "" {
		return nil
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, ui+"/", nil)
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

// Dial connects a client to address without the SDK's logs.
func Dial(ctx context.Context, address string) (client.Client, error) {
	return client.DialContext(ctx, client.Options{HostPort: address, Logger: quietLogger{}})
}

// Restart stops the server and starts it again on the same ports and
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
	return s.start()
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

// Output is what the server printed.
func (s *Server) Output() string { return s.out.String() }

// SyncBuffer collects a process's output, or a logger's lines, for
// assertions and error messages; it is safe for concurrent writes.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (w *SyncBuffer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

// String returns everything written so far.
func (w *SyncBuffer) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

// quietLogger drops the SDK's logs.
type quietLogger struct{}

func (quietLogger) Debug(string, ...any) {}
func (quietLogger) Info(string, ...any)  {}
func (quietLogger) Warn(string, ...any)  {}
func (quietLogger) Error(string, ...any) {}
