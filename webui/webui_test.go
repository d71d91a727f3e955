package webui_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"

	"github.com/metalpower/metalpower/internal/itest"
	"github.com/metalpower/metalpower/workflows"
)

// chromiumPath is Debian's chromium, or METALPOWER_TEST_CHROMIUM.
func chromiumPath() string {
	if p := os.Getenv("METALPOWER_TEST_CHROMIUM"); p != "" {
		return p
	}
	return "/usr/bin/chromium"
}

// prerequisites checks node, npm and chromium, and installs the pinned
// playwright-core (npm ci) when webui/node_modules lacks it.
func prerequisites(t *testing.T) string {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatal("the browser test needs Node.js (node) on PATH: install nodejs and npm, then run `make deps`")
	}
	if _, err := os.Stat(chromiumPath()); err != nil {
		t.Fatalf("the browser test needs Chromium at %s: run `make deps` (it installs Debian's chromium package)", chromiumPath())
	}
	if _, err := os.Stat(filepath.Join("node_modules", "playwright-core", "package.json")); err != nil {
		npm, err := exec.LookPath("npm")
		if err != nil {
			t.Fatal("webui/node_modules is missing and npm is not on PATH: install npm, then run `make deps` (it runs `npm ci` in webui/)")
		}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, npm, "ci", "--no-audit", "--no-fund")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("npm ci in webui/ failed (run `make deps`): %v\n%s", err, out)
		}
	}
	return node
}

// uiServer is a Temporal dev server with its Web UI on.
type uiServer struct {
	Address string
	UI      string
}

// startUIServer starts the dev server as internal/itest does, but with
// the Web UI; it stops when the test ends.
func startUIServer(t *testing.T) uiServer {
	t.Helper()
	bin, err := itest.TemporalBinary()
	if err != nil {
		t.Fatal(err)
	}
	port, err := itest.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	uiPort, err := itest.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	s := uiServer{Address: "127.0.0.1:" + strconv.Itoa(port), UI: "http://127.0.0.1:" + strconv.Itoa(uiPort)}
	out := &lockedWriter{w: &bytes.Buffer{}}
	cmd := exec.Command(bin, "server", "start-dev", "--ip", "127.0.0.1", "--port", strconv.Itoa(port), "--ui-port", strconv.Itoa(uiPort),
		"--log-level", "error",
		"--search-attribute", "NodeUUID=Keyword", "--search-attribute", "NodeName=Keyword", "--search-attribute", "PowerTarget=Keyword",
		"--dynamic-config-value", "frontend.enableUpdateWorkflowExecution=true")
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start temporal dev server: %v", err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for {
		err := func() error {
			c, err := client.DialContext(ctx, client.Options{HostPort: s.Address, Logger: quiet{}})
			if err != nil {
				return err
			}
			defer c.Close()
			if _, err := c.CheckHealth(ctx, &client.CheckHealthRequest{}); err != nil {
				return err
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
		}()
		if err == nil {
			return s
		}
		select {
		case <-done:
			t.Fatalf("temporal dev server exited: %s", out.String())
		case <-ctx.Done():
			t.Fatalf("temporal dev server (UI %s) did not start: %v\n%s", s.UI, err, out.String())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

type result struct {
	OK             bool     `json:"ok"`
	Error          string   `json:"error"`
	SummaryShownOn string   `json:"summaryShownOn"`
	ListedIDs      []string `json:"listedIDs"`
	UIVersion      string   `json:"uiVersion"`
	Screenshots    []string `json:"screenshots"`
	Screenshot     string   `json:"screenshot"`
}

// TestWebUIListsPowerChange starts power changes on a real stack, then has
// the browser filter the UI's workflow list by NodeName and find the
// change with its summary.
func TestWebUIListsPowerChange(t *testing.T) {
	node := prerequisites(t)
	ui := startUIServer(t)

	s := itest.NewStack(t, &itest.Server{Address: ui.Address}, itest.StackOptions{})
	n := s.AddRedfishNode(t, "r1-n07", "1", "")
	s.AddRedfishNode(t, "r1-n08", "2", "")
	var ids []string
	for _, name := range []string{"r1-n07", "r1-n08"} {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		run, err := s.Start(ctx, t, name, "power off", 0)
		if err != nil {
			cancel()
			t.Fatal(err)
		}
		var res workflows.PowerChangeResult
		if err := run.Get(ctx, &res); err != nil {
			cancel()
			t.Fatalf("power off %s: %v", name, err)
		}
		cancel()
		ids = append(ids, run.GetID())
	}
	id, other := ids[0], ids[1]
	if want := workflows.LockID(n.UUID); id != want {
		t.Fatalf("workflow ID %s, want %s", id, want)
	}
	summary := workflows.Summary("power off", "r1-n07", "test")
	query := `NodeName="r1-n07"`

	// The list is read from visibility, which lags the close a little.
	itest.WaitFor(t, 30*time.Second, "the change in visibility", func() bool {
		resp, err := s.Client.ListWorkflow(context.Background(), &workflowservice.ListWorkflowExecutionsRequest{Query: query})
		return err == nil && len(resp.GetExecutions()) == 1 && resp.GetExecutions()[0].GetExecution().GetWorkflowId() == id
	})

	if err := os.MkdirAll("artifacts", 0o755); err != nil {
		t.Fatal(err)
	}
	shot, err := filepath.Abs(filepath.Join("artifacts", "webui-"+t.Name()+".png"))
	if err != nil {
		t.Fatal(err)
	}
	for _, old := range []string{shot, strings.TrimSuffix(shot, ".png") + "-workflow.png", strings.TrimSuffix(shot, ".png") + "-failure.png"} {
		os.Remove(old)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "webui.mjs", ui.UI, "default", query, id, summary, shot)
	cmd.Env = append(os.Environ(), "CHROMIUM="+chromiumPath())
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	runErr := cmd.Run()
	var r result
	jsonErr := json.Unmarshal(bytes.TrimSpace(lastLine(stdout.Bytes())), &r)
	if runErr != nil || jsonErr != nil || !r.OK {
		t.Fatalf("browser check failed (%v, after %v): %s\nstdout: %s\nstderr: %s", runErr, time.Since(start).Round(time.Millisecond), r.Error, stdout.String(), stderr.String())
	}
	t.Logf("Web UI %s lists %s for %s with summary %q (summary shown on the %s), in %v", r.UIVersion, id, query, summary, r.SummaryShownOn, time.Since(start).Round(time.Millisecond))
	for _, p := range r.Screenshots {
		t.Logf("screenshot: %s", p)
		if st, err := os.Stat(p); err != nil || st.Size() == 0 {
			t.Errorf("screenshot %s missing or empty: %v", p, err)
		}
	}
	if !slices.Contains(r.ListedIDs, id) || slices.Contains(r.ListedIDs, other) {
		t.Errorf("filtered list shows %v: want %s and not %s", r.ListedIDs, id, other)
	}
}

func lastLine(b []byte) []byte {
	b = bytes.TrimRight(b, "\n")
	if i := bytes.LastIndexByte(b, '\n'); i >= 0 {
		return b[i+1:]
	}
	return b
}

type lockedWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (w *lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.w.Write(p)
}

func (w *lockedWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.w.String()
}

type quiet struct{}

func (quiet) Debug(string, ...any) {}
func (quiet) Info(string, ...any)  {}
func (quiet) Warn(string, ...any)  {}
func (quiet) Error(string, ...any) {}
