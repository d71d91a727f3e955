package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/pressly/goose/v3"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// DefaultSQLitePath is where the embedded store lives unless configured.
const DefaultSQLitePath = ".data/metalpower.db"

type sqliteDialect struct{}

func (sqliteDialect) rebind(q string) string { return q }

func (d sqliteDialect) setPowerStates(ctx context.Context, tx *sql.Tx, updates []PowerStateUpdate, now time.Time) error {
	return setPowerStatesEach(ctx, d, tx, updates, now)
}

func (sqliteDialect) uniqueViolation(err error) string {
	var e *sqlite.Error
	if !errors.As(err, &e) || e.Code() != sqlite3.SQLITE_CONSTRAINT_UNIQUE {
		return ""
	}
	// The message names the column: "UNIQUE constraint failed: nodes.name".
	_, col, _ := strings.Cut(e.Error(), "nodes.")
	col, _, _ = strings.Cut(col, " ")
	return strings.TrimRight(col, ")")
}

// OpenSQLite opens (creating if needed) the database file at path.
// WAL lets readers run beside the one writer SQLite allows; the busy timeout
// makes concurrent writers wait their turn instead of failing; immediate
// transactions take the write lock up front so they cannot deadlock.
func OpenSQLite(ctx context.Context, path string) (Store, error) {
	if path == "" {
		return nil, fmt.Errorf("database url: sqlite:// needs a file path")
	}
	if dir := filepath.Dir(path); dir != "." {
		if err := os.MkdirAll(dir, 0o750); err != nil {
			return nil, fmt.Errorf("create database directory: %w", err)
		}
	}
	params := url.Values{}
	for _, p := range []string{"busy_timeout(10000)", "journal_mode(WAL)", "synchronous(NORMAL)", "foreign_keys(ON)"} {
		params.Add("_pragma", p)
	}
	params.Set("_txlock", "immediate")
	db, err := sql.Open("sqlite", "file:"+path+"?"+params.Encode())
	if err != nil {
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}
	// Idle connections are kept (database/sql keeps 2 by default): under
	// concurrent API clients every other query would open a connection,
	// run the pragmas and close it again.
	db.SetMaxOpenConns(8)
	db.SetMaxIdleConns(8)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}
	if err := migrate(ctx, db, goose.DialectSQLite3, "sqlite"); err != nil {
		db.Close()
		return nil, err
	}
	// Keeps planner statistics current so filtered keyset pages use the
	// sort index rather than sorting (cheap when nothing changed).
	if _, err := db.ExecContext(ctx, "PRAGMA optimize=0x10002"); err != nil {
		db.Close()
		return nil, fmt.Errorf("optimize sqlite %s: %w", path, err)
	}
	return &sqlStore{db: db, d: sqliteDialect{}}, nil
}
