package store

import (
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/metalpower/metalpower/internal/bmc/ipmi"
	"github.com/metalpower/metalpower/internal/node"
)

// seed inserts n nodes in one transaction; going through Create one by one
// would make the benchmark mostly about seeding.
func seed(b *testing.B, s Store, n int) []string {
	b.Helper()
	db := s.(*sqlStore)
	tx, err := db.db.Begin()
	if err != nil {
		b.Fatal(err)
	}
	stmt, err := tx.Prepare(db.d.rebind(`INSERT INTO nodes (` + insertColumns + `) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?, ?)`))
	if err != nil {
		b.Fatal(err)
	}
	uuids := make([]string, n)
	now := time.Now().UTC()
	for i := range uuids {
		uuids[i] = uuid.NewString()
		_, err := stmt.Exec(uuids[i], fmt.Sprintf("node-%06d", i), ipmi.Name, `{"ipmi_address":"10.0.0.1"}`,
			node.PowerOn, nil, node.Active, i%50 == 0, nil, nil, nil, nil, false, `{}`, i%5, now, now)
		if err != nil {
			b.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		b.Fatal(err)
	}
	// Production databases have planner statistics (autovacuum, or SQLite's
	// optimize); a freshly bulk-loaded table has none yet.
	if _, err := db.db.Exec("ANALYZE"); err != nil {
		b.Fatal(err)
	}
	return uuids
}

// BenchmarkStore100k measures the sync's access pattern over 100,000 nodes:
// a full keyset scan, one page at the start and one near the end (their
// ratio shows whether depth costs anything), and a batch power-state write
// of 10,000 nodes.
func BenchmarkStore100k(b *testing.B) {
	const total = 100_000
	for _, be := range backends {
		b.Run(be.name, func(b *testing.B) {
			s := be.open(b)
			uuids := seed(b, s, total)
			eligible := Filter{Maintenance: Bool(false), TargetPowerStateSet: Bool(false), ExcludeProvisionStates: node.SyncExcludedStates}
			b.Run("page-through-all", func(b *testing.B) {
				for i := 0; i < b.N; i++ {
					count, marker := 0, ""
					for {
						page, err := s.List(ctx, Query{Filter: eligible, SortKey: "sync_failures", SortDir: "desc", Marker: marker, Limit: 1000})
						if err != nil {
							b.Fatal(err)
						}
						count += len(page)
						if len(page) < 1000 {
							break
						}
						marker = page[len(page)-1].UUID
					}
					if count != total-total/50 {
						b.Fatalf("visited %d nodes", count)
					}
				}
				b.ReportMetric(float64(total*b.N)/b.Elapsed().Seconds(), "nodes/s")
			})
			for _, pos := range []struct {
				name   string
				marker string
			}{{"first-page", ""}, {"page-at-99000", uuids[99_000]}} {
				b.Run(pos.name, func(b *testing.B) {
					for i := 0; i < b.N; i++ {
						if _, err := s.List(ctx, Query{Marker: pos.marker, Limit: 1000}); err != nil {
							b.Fatal(err)
						}
					}
				})
			}
			b.Run("set-power-state-10000", func(b *testing.B) {
				updates := make([]PowerStateUpdate, 10_000)
				for i := range updates {
					updates[i] = PowerStateUpdate{UUID: uuids[i*7], PowerState: node.PowerOff}
				}
				for i := 0; i < b.N; i++ {
					if err := s.SetPowerStates(ctx, updates); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(len(updates)*b.N)/b.Elapsed().Seconds(), "nodes/s")
			})
			b.Run("update-one", func(b *testing.B) {
				for i := 0; i < b.N; i++ {
					if _, err := Modify(ctx, s, uuids[i%total], func(n *node.Node) error { n.SyncFailures = 0; return nil }); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}
