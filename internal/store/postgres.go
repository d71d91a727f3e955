package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"

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
