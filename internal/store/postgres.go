package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" database/sql driver
	"github.com/pressly/goose/v3"
)

type postgresDialect struct{}

// rebind numbers the placeholders: ? becomes $1, $2, ... (the queries here
// hold no literal question marks).
func (postgresDialect) rebind(q string) string {
	var b strings.Builder
	n := 0
	for _, r := range q {
		if r == '?' {
			n++
			b.WriteString("$" + strconv.Itoa(n))
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

func (postgresDialect) uniqueViolation(err error) string {
	var e *pgconn.PgError
	if !errors.As(err, &e) || e.Code != "23505" {
		return ""
	}
	// Constraints are named nodes_<column>_key in the migration.
	return strings.TrimSuffix(strings.TrimPrefix(e.ConstraintName, "nodes_"), "_key")
}

// setPowerStates sends the whole batch as two arrays in one statement: a
// round trip per row would dominate over the network.
func (postgresDialect) setPowerStates(ctx context.Context, tx *sql.Tx, updates []PowerStateUpdate, now time.Time) error {
	uuids := make([]string, len(updates))
	states := make([]*string, len(updates))
	for i, u := range updates {
		uuids[i] = u.UUID
		if u.PowerState != "" {
			states[i] = &updates[i].PowerState
		}
	}
	res, err := tx.ExecContext(ctx, `UPDATE nodes SET power_state = u.power_state, version = version + 1, updated_at = $3
		FROM unnest($1::text[], $2::text[]) AS u(uuid, power_state) WHERE nodes.uuid = u.uuid`, uuids, states, now)
	if err != nil {
		return fmt.Errorf("set power states: %w", err)
	}
	if rows, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("set power states: %w", err)
	} else if rows != int64(len(updates)) {
		return fmt.Errorf("set power states: %w: %d of %d nodes", ErrNotFound, int64(len(updates))-rows, len(updates))
	}
	return nil
}

// OpenPostgres connects through pgx and applies migrations.
func OpenPostgres(ctx context.Context, url string) (Store, error) {
	db, err := sql.Open("pgx", url)
	if err != nil {
		return nil, fmt.Errorf("open postgres: %w", err)
	}
	db.SetMaxOpenConns(16)
	db.SetMaxIdleConns(16)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("connect to postgres: %w", err)
	}
	if err := migrate(ctx, db, goose.DialectPostgres, "postgres"); err != nil {
		db.Close()
		return nil, err
	}
	return &sqlStore{db: db, d: postgresDialect{}}, nil
}
