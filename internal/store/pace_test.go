package store

import (
	"context"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestPaceIsSharedBetweenProcesses: two store handles on one database
// (two processes, as far as the pace can tell) take turns on one BMC,
// each command starting at least the interval after the previous one
// ended, whoever sent it.
func TestPaceIsSharedBetweenProcesses(t *testing.T) {
	const interval = 150 * time.Millisecond
	for _, b := range []struct {
		name string
		open func(t *testing.T) (Store, Store)
	}{
		{"sqlite", func(t *testing.T) (Store, Store) {
			url := "sqlite://" + filepath.Join(t.TempDir(), "nodes.db")
			return mustOpen(t, url), mustOpen(t, url)
		}},
		{"postgres", func(t *testing.T) (Store, Store) {
			a := openTestPostgres(t)
			path := a.(*sqlStore).searchPath(t)
			return a, mustOpen(t, path)
		}},
	} {
		t.Run(b.name, func(t *testing.T) {
			one, two := b.open(t)
			type command struct {
				bmc        string
				start, end time.Time
			}
			var mu sync.Mutex
			var log []command
			var wg sync.WaitGroup
			for i, s := range []Store{one, two, one, two} {
				bmc := "10.0.0.1:623"
				if i == 3 {
					bmc = "10.0.0.2:623"
				}
				wg.Add(1)
				go func() {
					defer wg.Done()
					for range 3 {
						token, err := s.AcquirePace(context.Background(), bmc, interval, time.Minute)
						if err != nil {
							t.Error(err)
							return
						}
						c := command{bmc: bmc, start: time.Now()}
						time.Sleep(20 * time.Millisecond)
						c.end = time.Now()
						mu.Lock()
						log = append(log, c)
						mu.Unlock()
						if err := s.ReleasePace(context.Background(), bmc, token); err != nil {
							t.Error(err)
						}
					}
				}()
			}
			wg.Wait()
			var first, other []command
			for _, c := range log {
				if c.bmc == "10.0.0.1:623" {
					first = append(first, c)
				} else {
					other = append(other, c)
				}
			}
			if len(first) != 9 || len(other) != 3 {
				t.Fatalf("%d and %d commands", len(first), len(other))
			}
			for i, a := range first {
				for j, c := range first {
					if i != j && !c.start.Before(a.start) && c.start.Sub(a.end) < interval-time.Millisecond {
						t.Errorf("a command started %v after another ended, want at least %v", c.start.Sub(a.end), interval)
					}
				}
			}
		})
	}
}

func mustOpen(t *testing.T, url string) Store {
	t.Helper()
	s, err := Open(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// searchPath is the URL of the test schema s was opened on.
func (s *sqlStore) searchPath(t *testing.T) string {
	t.Helper()
	var schema string
	if err := s.db.QueryRow(`SELECT current_schema()`).Scan(&schema); err != nil {
		t.Fatal(err)
	}
	base := postgresURL()
	sep := "?"
	if strings.Contains(base, "?") {
		sep = "&"
	}
	return base + sep + "search_path=" + schema
}

// TestAbandonedPaceFreesTheBMCAtOnce: a hold whose taker was told it
// failed (its statement committed while its context was cancelled) is
// given back, so the next command does not wait out the lease, and the
// last command's end stays as it was.
func TestAbandonedPaceFreesTheBMCAtOnce(t *testing.T) {
	eachBackend(t, func(t *testing.T, s Store) {
		ss := s.(*sqlStore)
		const bmc, interval, lease = "10.0.0.9:623", 10 * time.Millisecond, time.Hour
		token, err := ss.AcquirePace(ctx, bmc, interval, lease)
		if err != nil {
			t.Fatal(err)
		}
		cancelled, cancel := context.WithCancel(ctx)
		cancel()
		ss.abandonPace(cancelled, bmc, token)
		wctx, done := context.WithTimeout(ctx, 5*time.Second)
		defer done()
		if _, err := ss.AcquirePace(wctx, bmc, interval, lease); err != nil {
			t.Fatalf("the BMC is still held after the hold was abandoned: %v", err)
		}
		var lastEnd int64
		if err := ss.db.QueryRowContext(ctx, ss.d.rebind(`SELECT last_end FROM bmc_pace WHERE bmc = ?`), bmc).Scan(&lastEnd); err != nil || lastEnd != 0 {
			t.Fatalf("last_end = %d, %v; want 0: no command was sent", lastEnd, err)
		}
	})
}
