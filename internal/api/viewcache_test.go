package api_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/metalpower/metalpower/internal/node"
	"github.com/metalpower/metalpower/internal/store"
	"github.com/metalpower/metalpower/internal/testbed/cluster"
	"github.com/metalpower/metalpower/internal/testbed/itest"
)

// TestListingsShowWritesMadeElsewhere: the API keeps the views and the
// pages it rendered, and a node written by another process (a worker
// recording a power state, a PATCH through another API, a delete) shows
// its new state in the very next listing, page and GET, on SQLite and on
// PostgreSQL.
func TestListingsShowWritesMadeElsewhere(t *testing.T) {
	t.Parallel()
	t.Run("sqlite", func(t *testing.T) {
		t.Parallel()
		listingsShowWritesMadeElsewhere(t, "")
	})
	t.Run("postgres", func(t *testing.T) {
		t.Parallel()
		name := "mp_api_cache_" + strings.ReplaceAll(uuid.NewString()[:8], "-", "")
		url, err := cluster.EnsureDatabase(context.Background(), name)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cluster.DropDatabase(context.Background(), name) })
		listingsShowWritesMadeElsewhere(t, url)
	})
}

func listingsShowWritesMadeElsewhere(t *testing.T, database string) {
	s := itest.NewStack(t, srv, itest.StackOptions{RedfishSystems: 3, Database: database})
	base := s.StartAPI(t, nil) + "/v1/nodes"
	ids := s.Redfish.SystemIDs()
	var nodes []*node.Node
	for i, name := range []string{"cache-a", "cache-b", "cache-c"} {
		nodes = append(nodes, s.AddRedfishNode(t, name, ids[i], ""))
	}
	const fields = "?fields=uuid,name,power_state,maintenance,properties"
	type page struct {
		Nodes []struct {
			UUID       string         `json:"uuid"`
			Name       string         `json:"name"`
			PowerState string         `json:"power_state"`
			Properties map[string]any `json:"properties"`
		} `json:"nodes"`
		Next       string `json:"next"`
		NodesLinks []struct {
			Href string `json:"href"`
			Rel  string `json:"rel"`
		} `json:"nodes_links"`
	}
	list := func(t *testing.T, url string) page {
		t.Helper()
		code, hdr, body := do(t, http.MethodGet, url, "1.76", "")
		if code != http.StatusOK || hdr.Get("Content-Type") != "application/json" {
			t.Fatalf("GET %s: %d %s %s", url, code, hdr.Get("Content-Type"), body)
		}
		var p page
		if err := json.Unmarshal([]byte(body), &p); err != nil {
			t.Fatalf("GET %s: %v in %s", url, err, body)
		}
		return p
	}
	states := func(p page) map[string]string {
		out := map[string]string{}
		for _, n := range p.Nodes {
			out[n.Name] = n.PowerState
		}
		return out
	}
	for _, which := range []string{"first", "second"} {
		if got := states(list(t, base+fields)); len(got) != 3 || got["cache-b"] != node.PowerOn {
			t.Fatalf("%s listing: %v", which, got)
		}
	}

	// A worker records a power state; another API patches a property.
	ctx := context.Background()
	if err := s.Store.SetPowerStates(ctx, []store.PowerStateUpdate{{UUID: nodes[1].UUID, PowerState: node.PowerOff}}); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Modify(ctx, s.Store, nodes[0].UUID, func(n *node.Node) error {
		n.Properties = map[string]any{"memory_mb": 1024}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	p := list(t, base+fields)
	if got := states(p); got["cache-b"] != node.PowerOff || got["cache-a"] != node.PowerOn {
		t.Fatalf("listing after the writes: %v", got)
	}
	if p.Nodes[0].Properties["memory_mb"] != float64(1024) {
		t.Fatalf("listing after the PATCH: properties %v", p.Nodes[0].Properties)
	}
	code, _, body := do(t, http.MethodGet, base+"/cache-b", "1.76", "")
	var one struct {
		PowerState string `json:"power_state"`
	}
	if code != http.StatusOK || json.Unmarshal([]byte(body), &one) != nil || one.PowerState != node.PowerOff {
		t.Fatalf("GET after the write: %d %s", code, body)
	}

	// Pages follow their next links; a deleted node leaves every page.
	first := list(t, base+fields+"&limit=2")
	if len(first.Nodes) != 2 || first.Next == "" || len(first.NodesLinks) != 1 || first.NodesLinks[0].Href != first.Next {
		t.Fatalf("first page of 2: %+v", first)
	}
	if second := list(t, first.Next); len(second.Nodes) != 1 || second.Nodes[0].Name != "cache-c" || second.Next != "" {
		t.Fatalf("second page: %+v", second)
	}
	if err := s.Store.Delete(ctx, nodes[2].UUID); err != nil {
		t.Fatal(err)
	}
	if got := states(list(t, base+fields)); len(got) != 2 || got["cache-c"] != "" {
		t.Fatalf("listing after the delete: %v", got)
	}
	// An empty page is still a page.
	if p := list(t, base+fields+"&instance_uuid=6f2c3b1e-0b7a-4c55-9d1e-3f0a2b4c5d6e"); len(p.Nodes) != 0 || p.Next != "" {
		t.Fatalf("empty listing: %+v", p)
	}
}
