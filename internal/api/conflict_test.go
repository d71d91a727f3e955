package api_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/metalpower/metalpower/internal/config"
	"github.com/metalpower/metalpower/internal/node"
	"github.com/metalpower/metalpower/internal/testbed/itest"
)

type historyEntry struct {
	Severity  string `json:"severity"`
	EventType string `json:"event_type"`
	Event     string `json:"event"`
}

func history(t *testing.T, url, ident string) []historyEntry {
	t.Helper()
	status, _, body := do(t, http.MethodGet, url+"/v1/nodes/"+ident+"/history", "1.78", "")
	if status != 200 {
		t.Fatalf("history: %d %s", status, body)
	}
	var out struct {
		History []historyEntry `json:"history"`
	}
	if err := json.Unmarshal([]byte(body), &out); err != nil {
		t.Fatal(err)
	}
	return out.History
}

func powerVia(t *testing.T, s *itest.Stack, url, uuid, target string) {
	t.Helper()
	if status, _, body := do(t, http.MethodPut, url+"/v1/nodes/"+uuid+"/states/power", "1.95", `{"target":"`+target+`"}`); status != 202 {
		t.Fatalf("%s: %d %s", target, status, body)
	}
	itest.WaitFor(t, 30*time.Second, "the change", func() bool { return s.Node(t, uuid).TargetPowerState == "" })
}

// TestRevertWithinTheWindowIsRecordedAsAConflict: the seed's admitted
// race. A change undone shortly after, by a request or behind
// metalpower's back, shows in the node history as a conflict.
func TestRevertWithinTheWindowIsRecordedAsAConflict(t *testing.T) {
	t.Parallel()
	s := itest.NewStack(t, srv, itest.StackOptions{})
	url := s.StartAPI(t, nil)
	n := s.AddRedfishNode(t, "contested", "1", "")

	powerVia(t, s, url, n.UUID, node.PowerOff)
	if h := history(t, url, n.UUID); len(h) != 1 || h[0].EventType != "power change" {
		t.Fatalf("history after one change: %+v", h)
	}
	// Someone powers it back on at once (an operator, or a party with a
	// stale view).
	powerVia(t, s, url, n.UUID, node.PowerOn)
	h := history(t, url, n.UUID)
	if len(h) != 3 || h[1].EventType != "conflict" || h[1].Severity != "WARNING" ||
		!strings.Contains(h[1].Event, "changed back to 'power on'") || !strings.Contains(h[1].Event, "compute service") {
		t.Fatalf("history after the revert: %+v", h)
	}

	// Behind metalpower's back: the hardware is switched off, and the
	// sync finds it (and forces the recorded state back, by default).
	s.Redfish.SetPowerState("1", "Off")
	d, err := itest.RunSyncPass(t.Context(), s.Client, s.Config.Temporal.TaskQueue)
	if err != nil || d.Corrected != 1 {
		t.Fatalf("pass: %+v %v", d, err)
	}
	h = history(t, url, n.UUID)
	found := false
	for _, e := range h {
		found = found || (e.EventType == "conflict" && strings.Contains(e.Event, "changed outside metalpower"))
	}
	if !found {
		t.Fatalf("no conflict recorded for the hardware change: %+v", h)
	}

	// Outside the window nothing is flagged.
	old := itest.NewStack(t, srv, itest.StackOptions{Configure: func(c *config.Config) { c.Conductor.PowerConflictWindow = 0 }})
	oldURL := old.StartAPI(t, nil)
	m := old.AddRedfishNode(t, "calm", "1", "")
	powerVia(t, old, oldURL, m.UUID, node.PowerOff)
	powerVia(t, old, oldURL, m.UUID, node.PowerOn)
	for _, e := range history(t, oldURL, m.UUID) {
		if e.EventType == "conflict" {
			t.Fatalf("conflict recorded with the window off: %+v", e)
		}
	}
	if status, _, _ := do(t, http.MethodGet, url+"/v1/nodes/"+n.UUID+"/history", "1.77", ""); status != 404 {
		t.Fatalf("history below 1.78: %d", status)
	}
}
