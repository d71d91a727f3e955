package webui_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.temporal.io/api/workflowservice/v1"

	"github.com/metalpower/metalpower/internal/dispatch"
	"github.com/metalpower/metalpower/internal/testbed/itest"
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

// startUIServer starts a dev server with its Web UI on; it stops when
// the test ends.
func startUIServer(t *testing.T) *itest.Server {
	t.Helper()
	srv, err := itest.StartServer(itest.ServerOptions{UI: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	return srv
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

	s := itest.NewStack(t, ui, itest.StackOptions{})
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
	if want := dispatch.LockID(n.UUID); id != want {
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
