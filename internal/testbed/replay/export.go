package replay

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	historypb "go.temporal.io/api/history/v1"
	workflowpb "go.temporal.io/api/workflow/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/metalpower/metalpower/internal/testbed"
)

// Recording returns the corpus directory sub (of Dir; "" for Dir itself),
// created and emptied of histories, for a generator to export into. A
// generator runs only with METALPOWER_REFRESH_REPLAY=1: otherwise the
// test is skipped.
func Recording(t testing.TB, sub string) string {
	t.Helper()
	if os.Getenv("METALPOWER_REFRESH_REPLAY") != "1" {
		t.Skip("set METALPOWER_REFRESH_REPLAY=1 to record " + filepath.Join(Dir, sub))
	}
	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(root, Dir, sub)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	old, _ := filepath.Glob(filepath.Join(dir, "*.json"))
	for _, f := range old {
		os.Remove(f)
	}
	return dir
}

// Export writes the history of every run on task queue queue, once all
// of them have closed, as dir/<workflow type>-<scenario>[-n].json (the
// format of `temporal workflow show --output json`), checking that no
// test-bed secret appears in it and that it replays.
func Export(t testing.TB, c client.Client, queue, dir, scenario string) {
	t.Helper()
	ctx := context.Background()
	query := fmt.Sprintf("TaskQueue = '%s'", queue)
	var execs []*workflowservice.ListWorkflowExecutionsResponse
	// Visibility lags: wait until the same runs, all closed, are listed
	// three times in a row, half a second apart.
	stable, last := 0, -1
	waitFor(t, 2*time.Minute, "every workflow of "+scenario+" to close", func() bool {
		time.Sleep(500 * time.Millisecond)
		execs = execs[:0]
		resp, err := c.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{Query: query, PageSize: 1000})
		if err != nil || len(resp.GetExecutions()) == 0 {
			return false
		}
		for _, e := range resp.GetExecutions() {
			if e.GetCloseTime() == nil {
				return false
			}
		}
		execs = append(execs, resp)
		if n := len(resp.GetExecutions()); n != last {
			stable, last = 0, n
			return false
		}
		stable++
		return stable >= 2
	})
	list := execs[0].GetExecutions()
	slices.SortStableFunc(list, func(a, b *workflowpb.WorkflowExecutionInfo) int {
		return a.GetStartTime().AsTime().Compare(b.GetStartTime().AsTime())
	})
	seen := map[string]int{}
	for _, e := range list {
		typ := e.GetType().GetName()
		seen[typ]++
		name := typ + "-" + scenario
		if seen[typ] > 1 {
			name += "-" + strconv.Itoa(seen[typ])
		}
		var events []*historypb.HistoryEvent
		it := c.GetWorkflowHistory(ctx, e.GetExecution().GetWorkflowId(), e.GetExecution().GetRunId(), false, 0)
		for it.HasNext() {
			ev, err := it.Next()
			if err != nil {
				t.Fatal(err)
			}
			events = append(events, ev)
		}
		b, err := protojson.MarshalOptions{Indent: "  "}.Marshal(&historypb.History{Events: events})
		if err != nil {
			t.Fatal(err)
		}
		// protojson's spacing is randomised: settle it so refreshes diff.
		var out bytes.Buffer
		if err := json.Indent(&out, compact(t, b), "", "  "); err != nil {
			t.Fatal(err)
		}
		out.WriteByte('\n')
		for _, secret := range []string{testbed.IPMIPassword, testbed.RedfishPassword, testbed.KeystonePassword, "wrong-password"} {
			if bytes.Contains(out.Bytes(), []byte(secret)) {
				t.Fatalf("a secret appears in the history of %s", name)
			}
		}
		f := filepath.Join(dir, name+".json")
		if err := os.WriteFile(f, out.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		// It reads back and replays.
		if err := ReplayFile(NewReplayer(), f); err != nil {
			t.Fatalf("%s does not replay: %v", f, err)
		}
		t.Logf("%s: %d events, %d bytes", f, len(events), out.Len())
	}
}

func compact(t testing.TB, b []byte) []byte {
	var c bytes.Buffer
	if err := json.Compact(&c, b); err != nil {
		t.Fatal(err)
	}
	return c.Bytes()
}

// waitFor polls cond every 100 ms until it holds or timeout passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(timeout); !cond(); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
	}
}
