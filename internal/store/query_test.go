package store

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/metalpower/metalpower/internal/bmc/ipmi"
	"github.com/metalpower/metalpower/internal/bmc/redfish"
	"github.com/metalpower/metalpower/internal/node"
)

// fleet creates nodes covering every filter dimension and returns them by name.
func fleet(t *testing.T, s Store) map[string]*node.Node {
	t.Helper()
	mk := func(name, driver, prov string, change func(n *node.Node)) *node.Node {
		info := node.DriverInfo{"ipmi_address": "10.0.0.1"}
		if driver == redfish.Name {
			info = node.DriverInfo{"redfish_address": "https://10.0.0.1"}
		}
		n := node.New("", name, driver, info)
		n.ProvisionState = prov
		if change != nil {
			change(n)
		}
		return mustCreate(t, s, n)
	}
	return map[string]*node.Node{
		"plain": mk("plain", ipmi.Name, node.Available, nil),
		"active": mk("active", redfish.Name, node.Active, func(n *node.Node) {
			n.InstanceUUID, n.ResourceClass, n.ConductorGroup = uuid.NewString(), "baremetal.gold", "rack-a"
			n.Owner, n.Lessee = "p-owner", "p-lessee"
		}),
		"maint": mk("maint", ipmi.Name, node.Manageable, func(n *node.Node) {
			n.Maintenance, n.MaintenanceReason, n.Owner = true, "admin", "p-lessee"
		}),
		"powerfail": mk("powerfail", redfish.Name, node.Active, func(n *node.Node) { n.Maintenance, n.Fault = true, node.FaultPowerFailure }),
		"busy":      mk("busy", ipmi.Name, node.Active, func(n *node.Node) { n.TargetPowerState = node.PowerOff }),
		"enroll":    mk("enroll", redfish.Name, node.Enroll, nil),
		"cleanwait": mk("cleanwait", ipmi.Name, node.CleanWait, func(n *node.Node) { n.SyncFailures = 2 }),
	}
}

func names(nodes []*node.Node) []string {
	var out []string
	for _, n := range nodes {
		out = append(out, n.Name)
	}
	slices.Sort(out)
	return out
}

func TestListFilters(t *testing.T) {
	eachBackend(t, func(t *testing.T, s Store) {
		fleet(t, s)
		active := ""
		all, _ := s.List(ctx, Query{})
		for _, n := range all {
			if n.Name == "active" {
				active = n.InstanceUUID
			}
		}
		tests := []struct {
			name string
			f    Filter
			want []string
		}{
			{"all", Filter{}, []string{"active", "busy", "cleanwait", "enroll", "maint", "plain", "powerfail"}},
			{"not in maintenance", Filter{Maintenance: Bool(false)}, []string{"active", "busy", "cleanwait", "enroll", "plain"}},
			{"power failure fault", Filter{Fault: node.FaultPowerFailure}, []string{"powerfail"}},
			{"provision states", Filter{ProvisionStates: []string{node.Active, node.Enroll}}, []string{"active", "busy", "enroll", "powerfail"}},
			{"driver", Filter{Driver: redfish.Name}, []string{"active", "enroll", "powerfail"}},
			{"target set", Filter{TargetPowerStateSet: Bool(true)}, []string{"busy"}},
			{"associated", Filter{Associated: Bool(true)}, []string{"active"}},
			{"unassociated redfish", Filter{Associated: Bool(false), Driver: redfish.Name}, []string{"enroll", "powerfail"}},
			{"instance uuid", Filter{InstanceUUID: active}, []string{"active"}},
			{"resource class", Filter{ResourceClass: "baremetal.gold"}, []string{"active"}},
			{"unknown resource class", Filter{ResourceClass: "baremetal.none"}, nil},
			{"conductor group", Filter{ConductorGroup: ptr("rack-a")}, []string{"active"}},
			{"owner", Filter{Owner: "p-owner"}, []string{"active"}},
			{"lessee", Filter{Lessee: "p-lessee"}, []string{"active"}},
			{"project owns or leases", Filter{Project: "p-lessee"}, []string{"active", "maint"}},
			{"project and owner", Filter{Project: "p-lessee", Owner: "p-owner"}, []string{"active"}},
			{"unknown project", Filter{Project: "p-other"}, nil},
			{"default conductor group", Filter{ConductorGroup: ptr(""), Driver: redfish.Name}, []string{"enroll", "powerfail"}},
			{"sync eligible", Filter{
				Maintenance: Bool(false), TargetPowerStateSet: Bool(false), ExcludeProvisionStates: node.SyncExcludedStates,
			}, []string{"active", "plain"}},
		}
		for _, tt := range tests {
			got, err := s.List(ctx, Query{Filter: tt.f})
			if err != nil {
				t.Fatalf("%s: %v", tt.name, err)
			}
			if !slices.Equal(names(got), tt.want) {
				t.Errorf("%s: got %v, want %v", tt.name, names(got), tt.want)
			}
		}
	})
}

func TestGroupsCountsByConductorGroup(t *testing.T) {
	eachBackend(t, func(t *testing.T, s Store) {
		fleet(t, s)
		for _, tt := range []struct {
			name string
			f    Filter
			want map[string]int
		}{
			{"all", Filter{}, map[string]int{"": 6, "rack-a": 1}},
			{"sync eligible", Filter{Maintenance: Bool(false), TargetPowerStateSet: Bool(false), ExcludeProvisionStates: node.SyncExcludedStates},
				map[string]int{"": 1, "rack-a": 1}},
			{"none", Filter{Fault: "no such fault"}, map[string]int{}},
		} {
			got, err := s.Groups(ctx, tt.f)
			if err != nil {
				t.Fatalf("%s: %v", tt.name, err)
			}
			if !maps.Equal(got, tt.want) {
				t.Errorf("%s: got %v, want %v", tt.name, got, tt.want)
			}
		}
	})
}

func TestKeysetPaginationVisitsEveryNodeOnceInOrder(t *testing.T) {
	eachBackend(t, func(t *testing.T, s Store) {
		const total = 53
		for i := 0; i < total; i++ {
			n := ipmiNode(fmt.Sprintf("n%03d", i))
			n.SyncFailures = i % 4 // many ties, so the id tiebreak matters
			n.ProvisionState = []string{node.Available, node.Active, node.Manageable}[i%3]
			mustCreate(t, s, n)
		}
		for _, key := range SortKeys {
			for _, dir := range []string{"asc", "desc"} {
				var seen []*node.Node
				marker := ""
				for pages := 0; ; pages++ {
					page, err := s.List(ctx, Query{SortKey: key, SortDir: dir, Marker: marker, Limit: 10})
					if err != nil {
						t.Fatalf("%s %s: %v", key, dir, err)
					}
					seen = append(seen, page...)
					if len(page) < 10 {
						break
					}
					marker = page[len(page)-1].UUID
				}
				if len(seen) != total {
					t.Fatalf("%s %s: saw %d nodes, want %d", key, dir, len(seen), total)
				}
				if got := len(names(seen)); got != total || len(slices.Compact(names(seen))) != total {
					t.Fatalf("%s %s: duplicates across pages", key, dir)
				}
				if key == "sync_failures" {
					for i := 1; i < len(seen); i++ {
						a, b := seen[i-1].SyncFailures, seen[i].SyncFailures
						if (dir == "asc" && a > b) || (dir == "desc" && a < b) {
							t.Fatalf("sync_failures %s out of order at %d: %d then %d", dir, i, a, b)
						}
					}
				}
			}
		}
	})
}

func TestListRejectsBadQueries(t *testing.T) {
	eachBackend(t, func(t *testing.T, s Store) {
		for _, q := range []Query{
			{SortKey: "password"},
			{SortKey: "name; DROP TABLE nodes"},
			{SortDir: "up"},
			{Limit: -1},
			{Limit: MaxLimit + 1},
			{Marker: "not-a-uuid"},
			{Marker: uuid.NewString()},
		} {
			if _, err := s.List(ctx, q); !errors.Is(err, ErrInvalidQuery) {
				t.Errorf("List(%+v): err = %v, want ErrInvalidQuery", q, err)
			}
		}
	})
}

func TestSetPowerStatesInOneTransaction(t *testing.T) {
	eachBackend(t, func(t *testing.T, s Store) {
		a, b := mustCreate(t, s, ipmiNode("a")), mustCreate(t, s, ipmiNode("b"))
		if err := s.SetPowerStates(ctx, []PowerStateUpdate{{a.UUID, node.PowerOn}, {b.UUID, node.PowerOff}}); err != nil {
			t.Fatal(err)
		}
		for n, want := range map[*node.Node]string{a: node.PowerOn, b: node.PowerOff} {
			got, _ := s.Get(ctx, n.UUID)
			if got.PowerState != want || got.Version != 2 {
				t.Errorf("%s: power_state %q version %d, want %q and 2", n.Name, got.PowerState, got.Version, want)
			}
		}
		// An unknown node rolls back the whole batch.
		err := s.SetPowerStates(ctx, []PowerStateUpdate{{a.UUID, node.PowerOff}, {uuid.NewString(), node.PowerOff}})
		if !errors.Is(err, ErrNotFound) {
			t.Fatalf("err = %v, want ErrNotFound", err)
		}
		if got, _ := s.Get(ctx, a.UUID); got.PowerState != node.PowerOn {
			t.Fatalf("failed batch changed node a to %q", got.PowerState)
		}
		if err := s.SetPowerStates(ctx, []PowerStateUpdate{{a.UUID, node.Reboot}}); !errors.Is(err, node.ErrInvalidPowerState) {
			t.Fatalf("err = %v, want ErrInvalidPowerState", err)
		}
	})
}

func TestResetSyncFailuresSkipsNodesChangedSinceRead(t *testing.T) {
	eachBackend(t, func(t *testing.T, s Store) {
		a, b := ipmiNode("a"), ipmiNode("b")
		a.SyncFailures, a.LastError = 2, "read failed"
		b.SyncFailures = 1
		mustCreate(t, s, a)
		mustCreate(t, s, b)
		// b changes after it was read: its reset must not overwrite that.
		if _, err := Modify(ctx, s, b.UUID, func(n *node.Node) error { n.LastError = "newer failure"; return nil }); err != nil {
			t.Fatal(err)
		}
		n, err := s.ResetSyncFailures(ctx, []Versioned{{UUID: a.UUID, Version: a.Version}, {UUID: b.UUID, Version: b.Version}})
		if err != nil || n != 1 {
			t.Fatalf("ResetSyncFailures = %d, %v; want 1", n, err)
		}
		if got, _ := s.Get(ctx, a.UUID); got.SyncFailures != 0 || got.LastError != "" {
			t.Fatalf("a = %d %q", got.SyncFailures, got.LastError)
		}
		if got, _ := s.Get(ctx, b.UUID); got.SyncFailures != 1 || got.LastError != "newer failure" {
			t.Fatalf("b = %d %q", got.SyncFailures, got.LastError)
		}
	})
}

func TestUpdatedBeforeFilter(t *testing.T) {
	eachBackend(t, func(t *testing.T, s Store) {
		old := mustCreate(t, s, ipmiNode("old"))
		cut := time.Now()
		time.Sleep(5 * time.Millisecond)
		mustCreate(t, s, ipmiNode("new"))
		got, err := s.List(ctx, Query{Filter: Filter{UpdatedBefore: cut}})
		if err != nil || len(got) != 1 || got[0].UUID != old.UUID {
			t.Fatalf("UpdatedBefore: %v %v", names(got), err)
		}
	})
}

// TestAfterPositionSurvivesChangedSortValues pages by failure count while
// the pass resets the nodes it has seen, as the sync does: with the pass's
// start as UpdatedBefore, no node is skipped or seen twice.
func TestAfterPositionSurvivesChangedSortValues(t *testing.T) {
	eachBackend(t, func(t *testing.T, s Store) {
		for i := 0; i < 25; i++ {
			n := ipmiNode(fmt.Sprintf("n%02d", i))
			n.SyncFailures = i % 3
			mustCreate(t, s, n)
		}
		time.Sleep(2 * time.Millisecond)
		passStart := time.Now()
		seen := map[string]bool{}
		var after *Position
		for {
			page, err := s.List(ctx, Query{Filter: Filter{UpdatedBefore: passStart}, SortKey: "sync_failures", SortDir: "desc", After: after, Limit: 4})
			if err != nil {
				t.Fatal(err)
			}
			var resets []Versioned
			for _, n := range page {
				if seen[n.UUID] {
					t.Fatalf("%s seen twice", n.Name)
				}
				seen[n.UUID] = true
				resets = append(resets, Versioned{UUID: n.UUID, Version: n.Version})
			}
			if len(page) < 4 {
				break
			}
			last := page[len(page)-1]
			after = &Position{Value: last.SyncFailures, ID: last.ID}
			if _, err := s.ResetSyncFailures(ctx, resets); err != nil {
				t.Fatal(err)
			}
		}
		if len(seen) != 25 {
			t.Fatalf("saw %d nodes, want 25", len(seen))
		}
	})
}

func ptr(s string) *string { return &s }

// TestListVersionsMatchesList: ListVersions names the nodes List returns,
// in the same order, with their current versions, page by page; GetMany
// reads the named nodes that exist.
func TestListVersionsMatchesList(t *testing.T) {
	eachBackend(t, func(t *testing.T, s Store) {
		byName := fleet(t, s)
		if _, err := Modify(ctx, s, byName["plain"].UUID, func(n *node.Node) error { n.Extra = map[string]any{"a": 1}; return nil }); err != nil {
			t.Fatal(err)
		}
		for _, q := range []Query{
			{},
			{Limit: 3},
			{Limit: 3, Marker: byName["active"].UUID},
			{SortKey: "provision_state", SortDir: "desc"},
			{Filter: Filter{Maintenance: Bool(false)}},
		} {
			nodes, err := s.List(ctx, q)
			if err != nil {
				t.Fatal(err)
			}
			refs, err := s.ListVersions(ctx, q)
			if err != nil {
				t.Fatal(err)
			}
			var want []Versioned
			for _, n := range nodes {
				want = append(want, Versioned{UUID: n.UUID, Version: n.Version, Owner: n.Owner, Lessee: n.Lessee})
			}
			if !slices.Equal(refs, want) {
				t.Errorf("%+v: ListVersions %v, List %v", q, refs, want)
			}
		}
		if refs, _ := s.ListVersions(ctx, Query{Limit: 7}); len(refs) != 7 {
			t.Fatalf("ListVersions found %d nodes, want 7", len(refs))
		} else if v := refs[0]; v.UUID != byName["plain"].UUID || v.Version != 2 {
			t.Errorf("the modified node: %+v, want version 2", v)
		}
		if _, err := s.ListVersions(ctx, Query{Marker: uuid.NewString()}); !errors.Is(err, ErrInvalidQuery) {
			t.Errorf("unknown marker: %v", err)
		}

		got, err := s.GetMany(ctx, []string{byName["maint"].UUID, uuid.NewString(), byName["busy"].UUID})
		if err != nil {
			t.Fatal(err)
		}
		if names := names(got); !slices.Equal(names, []string{"busy", "maint"}) {
			t.Errorf("GetMany: %v", names)
		}
		if got, err := s.GetMany(ctx, nil); err != nil || len(got) != 0 {
			t.Errorf("GetMany of nothing: %v, %v", got, err)
		}
	})
}
