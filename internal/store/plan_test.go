package store

import (
	"context"
	"database/sql"
	"strings"
	"testing"
	"time"

	"github.com/metalpower/metalpower/internal/node"
)

// TestFleetQueriesUseIndexes checks the plans of the queries a large
// fleet runs all the time, in both databases: Nova's listing page (UUIDs
// and versions, from a marker), Nova's lookup by instance, and a sync
// page (most failures first, from a position). None reads the whole
// table, and the pages come in index order, never sorted. PostgreSQL is
// asked with sequential scans, bitmap scans and (for the pages) sorts
// priced out, since on a small table it would rightly prefer them: what
// is checked is that an index serves the query.
func TestFleetQueriesUseIndexes(t *testing.T) {
	eachBackend(t, func(t *testing.T, s Store) {
		byName := fleet(t, s)
		st := s.(*sqlStore)
		shapes := []struct {
			name string
			q    Query
			cols string
			want string // an index the plan names
			// ordered: the index gives the order (a lookup of one node
			// may sort its one row).
			ordered bool
		}{
			{"Nova's listing page", Query{Marker: byName["plain"].UUID, Limit: 1000}, `uuid, version`, "nodes_list_versions", true},
			{"Nova's lookup by instance", Query{Filter: Filter{InstanceUUID: byName["active"].InstanceUUID}}, columns, "instance_uuid", false},
			{"a sync page", Query{Filter: Filter{Maintenance: Bool(false), TargetPowerStateSet: Bool(false),
				ExcludeProvisionStates: node.SyncExcludedStates, UpdatedBefore: time.Now()},
				SortKey: "sync_failures", SortDir: "desc", After: &Position{Value: 2, ID: 1 << 40}, Limit: 1000}, columns, "nodes_maintenance_sync", true},
		}
		for _, sh := range shapes {
			query, args, err := st.pageSQL(ctx, sh.q, sh.cols)
			if err != nil {
				t.Fatal(err)
			}
			plan := explain(t, st, query, args, sh.ordered)
			if !strings.Contains(plan, sh.want) {
				t.Errorf("%s: the plan does not use %s:\n%s", sh.name, sh.want, plan)
			}
			bads := []string{"Seq Scan", "SCAN nodes\n"}
			if sh.ordered {
				bads = append(bads, "TEMP B-TREE FOR ORDER BY", "Sort Key")
			}
			for _, bad := range bads {
				if strings.Contains(plan+"\n", bad) {
					t.Errorf("%s: the plan has %q:\n%s", sh.name, strings.TrimSpace(bad), plan)
				}
			}
		}
	})
}

// explain returns query's plan, one line per step.
func explain(t *testing.T, s *sqlStore, query string, args []any, ordered bool) string {
	t.Helper()
	tx, err := s.db.BeginTx(context.Background(), &sql.TxOptions{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	prefix, col := "EXPLAIN QUERY PLAN ", 3 // SQLite: id, parent, notused, detail
	if _, ok := s.d.(sqliteDialect); !ok {
		settings := []string{"enable_seqscan", "enable_bitmapscan"}
		if ordered {
			settings = append(settings, "enable_sort")
		}
		for _, name := range settings {
			if _, err := tx.Exec(`SET LOCAL ` + name + ` = off`); err != nil {
				t.Fatal(err)
			}
		}
		prefix, col = "EXPLAIN ", 0
	}
	rows, err := tx.Query(prefix+query, args...)
	if err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	defer rows.Close()
	var lines []string
	for rows.Next() {
		cells := make([]any, col+1)
		var detail string
		for i := range cells {
			cells[i] = new(any)
		}
		cells[col] = &detail
		if err := rows.Scan(cells...); err != nil {
			t.Fatal(err)
		}
		lines = append(lines, detail)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return strings.Join(lines, "\n")
}
