package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	_ "github.com/jackc/pgx/v5/stdlib"

	"github.com/metalpower/metalpower/internal/bmc"
	"github.com/metalpower/metalpower/internal/bmc/ipmi"
	"github.com/metalpower/metalpower/internal/bmc/redfish"
	"github.com/metalpower/metalpower/internal/node"
)

// The contract suite runs every test against both implementations. The
// PostgreSQL run is never skipped: a missing server fails the suite, and
// `make test` starts the local one first.
const defaultPostgresURL = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"

func postgresURL() string {
	if u := os.Getenv("METALPOWER_TEST_POSTGRES_URL"); u != "" {
		return u
	}
	return defaultPostgresURL
}

type backend struct {
	name string
	open func(t testing.TB) Store
}

var backends = []backend{
	{"sqlite", openTestSQLite},
	{"postgres", openTestPostgres},
}

func openTestSQLite(t testing.TB) Store {
	t.Helper()
	s, err := Open(context.Background(), "sqlite://"+filepath.Join(t.TempDir(), "nodes.db"))
	if err != nil {
		t.Fatalf("open sqlite: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// openTestPostgres gives each test its own schema, so tests stay isolated
// inside the one shared database.
func openTestPostgres(t testing.TB) Store {
	t.Helper()
	ctx := context.Background()
	base := postgresURL()
	admin, err := sql.Open("pgx", base)
	if err != nil {
		t.Fatalf("postgres: %v", err)
	}
	defer admin.Close()
	schema := "t_" + strings.ReplaceAll(uuid.NewString()[:18], "-", "")
	if _, err := admin.ExecContext(ctx, "CREATE SCHEMA "+schema); err != nil {
		t.Fatalf("postgres at %s is required (set METALPOWER_TEST_POSTGRES_URL; `make test` starts the local server): %v", base, err)
	}
	t.Cleanup(func() {
		db, err := sql.Open("pgx", base)
		if err == nil {
			db.Exec("DROP SCHEMA " + schema + " CASCADE")
			db.Close()
		}
	})
	sep := "?"
	if strings.Contains(base, "?") {
		sep = "&"
	}
	s, err := Open(ctx, base+sep+"search_path="+schema)
	if err != nil {
		t.Fatalf("open postgres: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func eachBackend(t *testing.T, fn func(t *testing.T, s Store)) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			fn(t, b.open(t))
		})
	}
}

var ctx = context.Background()

func ipmiNode(name string) *node.Node {
	return node.New("", name, ipmi.Name, node.DriverInfo{"ipmi_address": "10.0.0.1", "ipmi_password": "pw"})
}

func mustCreate(t testing.TB, s Store, n *node.Node) *node.Node {
	t.Helper()
	if err := s.Create(ctx, n); err != nil {
		t.Fatalf("Create(%s): %v", n.Ident(), err)
	}
	return n
}

func TestCreateAndGetRoundTripEveryField(t *testing.T) {
	eachBackend(t, func(t *testing.T, s Store) {
		n := node.New("", "r1-n07", redfish.Name, node.DriverInfo{
			"redfish_address": "https://10.1.0.7", "redfish_system_id": "/redfish/v1/Systems/1",
			"redfish_username": "root", "redfish_password": "calvin", "redfish_verify_ca": false,
		})
		n.PowerState, n.TargetPowerState = node.PowerOn, node.PowerOff
		n.ProvisionState, n.Maintenance, n.MaintenanceReason = node.Active, true, "fan"
		n.Fault, n.LastError, n.InstanceUUID = node.FaultPowerFailure, "boom", uuid.NewString()
		n.DisablePowerOff, n.Extra, n.SyncFailures = true, map[string]any{"rack": "r1", "u": 7.0}, 2
		n.ResourceClass, n.Traits, n.ConductorGroup = "baremetal.gold", []string{"CUSTOM_GPU", "HW_CPU_X86_AVX2"}, "rack-a"
		n.Owner, n.Lessee = "f3e1a6b0c0de4d2e9b1c2d3e4f5a6b7c", "0a1b2c3d4e5f46a7b8c9d0e1f2a3b4c5"
		n.Properties = map[string]any{"cpu_arch": "x86_64", "cpus": 64.0, "capabilities": "boot_mode:uefi"}
		mustCreate(t, s, n)
		if n.Version != 1 || n.CreatedAt.IsZero() {
			t.Fatalf("Create did not set version and timestamps: %+v", n)
		}
		for _, ident := range []string{n.UUID, n.Name} {
			got, err := s.Get(ctx, ident)
			if err != nil {
				t.Fatalf("Get(%s): %v", ident, err)
			}
			if fmt.Sprint(got.DriverInfo) != fmt.Sprint(n.DriverInfo) || fmt.Sprint(got.Extra) != fmt.Sprint(n.Extra) ||
				fmt.Sprint(got.Properties) != fmt.Sprint(n.Properties) {
				t.Fatalf("maps differ: got %v %v %v", got.DriverInfo, got.Extra, got.Properties)
			}
			got.DriverInfo, got.Extra, got.Properties = n.DriverInfo, n.Extra, n.Properties
			if !got.CreatedAt.Equal(n.CreatedAt.Truncate(time.Microsecond)) && !got.CreatedAt.Equal(n.CreatedAt) {
				t.Fatalf("created_at = %v, want %v", got.CreatedAt, n.CreatedAt)
			}
			got.CreatedAt, got.UpdatedAt = n.CreatedAt, n.UpdatedAt
			if fmt.Sprintf("%+v", *got) != fmt.Sprintf("%+v", *n) {
				t.Fatalf("Get(%s) =\n%+v\nwant\n%+v", ident, *got, *n)
			}
		}
	})
}

func TestNullableFieldsStayNull(t *testing.T) {
	eachBackend(t, func(t *testing.T, s Store) {
		n := mustCreate(t, s, node.New("", "", ipmi.Name, node.DriverInfo{"ipmi_address": "h"}))
		got, err := s.Get(ctx, n.UUID)
		if err != nil {
			t.Fatal(err)
		}
		if got.Name != "" || got.PowerState != "" || got.InstanceUUID != "" || got.ProvisionState != node.Enroll ||
			got.ResourceClass != "" || len(got.Properties) != 0 || len(got.Traits) != 0 {
			t.Fatalf("got %+v", got)
		}
		// Two nodes without a name or instance must not collide on UNIQUE.
		mustCreate(t, s, node.New("", "", ipmi.Name, node.DriverInfo{"ipmi_address": "h2"}))
	})
}

func TestTypedErrors(t *testing.T) {
	eachBackend(t, func(t *testing.T, s Store) {
		a := mustCreate(t, s, ipmiNode("a"))
		a.InstanceUUID = uuid.NewString()
		if err := s.Update(ctx, a); err != nil {
			t.Fatal(err)
		}
		tests := []struct {
			name string
			op   func() error
			want error
		}{
			{"get unknown uuid", func() error { _, err := s.Get(ctx, uuid.NewString()); return err }, ErrNotFound},
			{"get unknown name", func() error { _, err := s.Get(ctx, "nope"); return err }, ErrNotFound},
			{"duplicate name", func() error { return s.Create(ctx, ipmiNode("a")) }, ErrNameInUse},
			{"duplicate uuid", func() error { n := ipmiNode("b"); n.UUID = a.UUID; return s.Create(ctx, n) }, ErrUUIDInUse},
			{"duplicate instance", func() error { n := ipmiNode("c"); n.InstanceUUID = a.InstanceUUID; return s.Create(ctx, n) }, ErrInstanceAssociated},
			{"invalid node", func() error { return s.Create(ctx, node.New("", "d", "ilo", nil)) }, bmc.ErrUnknownDriver},
			{"update unknown", func() error { return s.Update(ctx, ipmiNode("e")) }, ErrNotFound},
			{"delete unknown", func() error { return s.Delete(ctx, uuid.NewString()) }, ErrNotFound},
			{"rename onto another", func() error {
				b := mustCreate(t, s, ipmiNode("f"))
				b.Name = "a"
				return s.Update(ctx, b)
			}, ErrNameInUse},
		}
		for _, tt := range tests {
			if err := tt.op(); !errors.Is(err, tt.want) {
				t.Errorf("%s: err = %v, want %v", tt.name, err, tt.want)
			}
		}
		for _, ident := range []string{"b", "c", "d", "e"} {
			if _, err := s.Get(ctx, ident); !errors.Is(err, ErrNotFound) {
				t.Errorf("failed write left node %s behind (err %v)", ident, err)
			}
		}
	})
}

func TestUpdateWithStaleVersionConflicts(t *testing.T) {
	eachBackend(t, func(t *testing.T, s Store) {
		n := mustCreate(t, s, ipmiNode("n"))
		first, second := n.Clone(), n.Clone()
		first.PowerState = node.PowerOn
		if err := s.Update(ctx, first); err != nil {
			t.Fatal(err)
		}
		if first.Version != 2 || !first.UpdatedAt.After(n.CreatedAt) && !first.UpdatedAt.Equal(n.CreatedAt) {
			t.Fatalf("version %d updated_at %v", first.Version, first.UpdatedAt)
		}
		second.PowerState = node.PowerOff
		if err := s.Update(ctx, second); !errors.Is(err, ErrConflict) {
			t.Fatalf("stale update: err = %v, want ErrConflict", err)
		}
		got, _ := s.Get(ctx, n.UUID)
		if got.PowerState != node.PowerOn {
			t.Fatalf("stale update overwrote the state: %q", got.PowerState)
		}
	})
}

func TestConcurrentWritersNeverLoseAnUpdate(t *testing.T) {
	eachBackend(t, func(t *testing.T, s Store) {
		n := mustCreate(t, s, ipmiNode("counter"))
		const writers, each = 8, 15
		var wg sync.WaitGroup
		errs := make(chan error, writers)
		for w := 0; w < writers; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < each; i++ {
					if _, err := Modify(ctx, s, n.UUID, func(n *node.Node) error { n.SyncFailures++; return nil }); err != nil {
						errs <- err
						return
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		got, _ := s.Get(ctx, n.UUID)
		if got.SyncFailures != writers*each || got.Version != 1+writers*each {
			t.Fatalf("sync_failures = %d version = %d, want %d and %d", got.SyncFailures, got.Version, writers*each, 1+writers*each)
		}
	})
}

func TestDelete(t *testing.T) {
	eachBackend(t, func(t *testing.T, s Store) {
		n := mustCreate(t, s, ipmiNode("gone"))
		if err := s.Delete(ctx, n.UUID); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Get(ctx, n.UUID); !errors.Is(err, ErrNotFound) {
			t.Fatalf("after delete: %v", err)
		}
		mustCreate(t, s, ipmiNode("gone")) // the name is free again
	})
}

func TestMigrationsAreIdempotent(t *testing.T) {
	path := "sqlite://" + filepath.Join(t.TempDir(), "m.db")
	for i := 0; i < 3; i++ {
		s, err := Open(ctx, path)
		if err != nil {
			t.Fatalf("open #%d: %v", i, err)
		}
		if i == 0 {
			mustCreate(t, s, ipmiNode("kept"))
		}
		if _, err := s.Get(ctx, "kept"); err != nil {
			t.Fatalf("open #%d lost data: %v", i, err)
		}
		s.Close()
	}
}

func TestOpenRejectsUnknownScheme(t *testing.T) {
	_, err := Open(ctx, "mysql://x")
	if err == nil || !strings.Contains(err.Error(), `"mysql"`) {
		t.Fatalf("err = %v", err)
	}
}

func TestNodeHistoryNewestFirstAndGoneWithTheNode(t *testing.T) {
	eachBackend(t, func(t *testing.T, s Store) {
		n := mustCreate(t, s, ipmiNode("h"))
		for i, typ := range []string{EventPowerChange, EventConflict, EventPowerChange} {
			if err := s.AddEvent(ctx, Event{NodeUUID: n.UUID, Severity: "INFO", Type: typ, Event: fmt.Sprint("event ", i), Via: "api"}); err != nil {
				t.Fatal(err)
			}
		}
		all, err := s.History(ctx, n.UUID, "", 0)
		if err != nil || len(all) != 3 || all[0].Event != "event 2" || all[0].Via != "api" {
			t.Fatalf("history = %+v, %v", all, err)
		}
		changes, _ := s.History(ctx, n.UUID, EventPowerChange, 1)
		if len(changes) != 1 || changes[0].Event != "event 2" {
			t.Fatalf("latest power change = %+v", changes)
		}
		if err := s.Delete(ctx, n.UUID); err != nil {
			t.Fatal(err)
		}
		if left, _ := s.History(ctx, n.UUID, "", 0); len(left) != 0 {
			t.Fatalf("history outlived the node: %+v", left)
		}
	})
}

// TestGenerationRisesWithEveryWrite: every kind of write to nodes, by the
// store or by hand in SQL, raises the generation; reads leave it alone.
func TestGenerationRisesWithEveryWrite(t *testing.T) {
	eachBackend(t, func(t *testing.T, s Store) {
		db := s.(*sqlStore).db
		n := mustCreate(t, s, ipmiNode("gen"))
		writes := []struct {
			name  string
			write func() error
		}{
			{"create", func() error { return s.Create(ctx, ipmiNode("gen-2")) }},
			{"update", func() error { n.PowerState = node.PowerOn; return s.Update(ctx, n) }},
			{"set power states", func() error {
				return s.SetPowerStates(ctx, []PowerStateUpdate{{UUID: n.UUID, PowerState: node.PowerOff}})
			}},
			{"reset sync failures", func() error {
				m, err := s.Get(ctx, n.UUID)
				if err == nil {
					_, err = s.ResetSyncFailures(ctx, []Versioned{{UUID: m.UUID, Version: m.Version}})
				}
				return err
			}},
			{"SQL by hand", func() error { _, err := db.ExecContext(ctx, `UPDATE nodes SET last_error = 'x'`); return err }},
			{"delete", func() error { return s.Delete(ctx, n.UUID) }},
		}
		before, err := s.Generation(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, w := range writes {
			if err := w.write(); err != nil {
				t.Fatalf("%s: %v", w.name, err)
			}
			after, err := s.Generation(ctx)
			if err != nil || after <= before {
				t.Fatalf("after %s: generation %d, was %d (%v)", w.name, after, before, err)
			}
			before = after
		}
		if _, err := s.List(ctx, Query{Limit: 10}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.ListVersions(ctx, Query{Limit: 10}); err != nil {
			t.Fatal(err)
		}
		if after, err := s.Generation(ctx); err != nil || after != before {
			t.Fatalf("after reads: generation %d, was %d (%v)", after, before, err)
		}
	})
}
