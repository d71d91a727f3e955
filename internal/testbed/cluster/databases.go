package cluster

import (
	"context"
	"database/sql"
	"fmt"
	"regexp"

	_ "github.com/jackc/pgx/v5/stdlib" // database/sql's "pgx"
)

// The machine's PostgreSQL, where the test bed, `make cluster` and the
// benchmarks keep node stores of their own (the server's databases are
// made by its SQL tool: Schema).
const (
	localPostgres = "postgres://postgres@127.0.0.1:5432/"
	adminURL      = localPostgres + "postgres?sslmode=disable"
)

// databaseName keeps a name safe to put in CREATE DATABASE.
var databaseName = regexp.MustCompile(`^[a-z][a-z0-9_]{0,62}$`)

// StoreURL is the URL of database name on the machine's PostgreSQL.
func StoreURL(name string) string { return localPostgres + name + "?sslmode=disable" }

// EnsureDatabase creates database name on the machine's PostgreSQL unless
// it exists, and returns its URL.
func EnsureDatabase(ctx context.Context, name string) (string, error) {
	if !databaseName.MatchString(name) {
		return "", fmt.Errorf("database %q: use lower-case letters, digits and _, starting with a letter", name)
	}
	db, err := sql.Open("pgx", adminURL)
	if err != nil {
		return "", err
	}
	defer db.Close()
	var exists bool
	if err := db.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, name).Scan(&exists); err != nil {
		return "", fmt.Errorf("PostgreSQL on 127.0.0.1:5432 is required (`make deps` starts it): %w", err)
	}
	if !exists {
		if _, err := db.ExecContext(ctx, "CREATE DATABASE "+name); err != nil {
			return "", fmt.Errorf("create database %s: %w", name, err)
		}
	}
	return StoreURL(name), nil
}

// DropDatabase removes database name, closing its connections.
func DropDatabase(ctx context.Context, name string) error {
	if !databaseName.MatchString(name) {
		return fmt.Errorf("database %q: not a name this test bed makes", name)
	}
	db, err := sql.Open("pgx", adminURL)
	if err != nil {
		return err
	}
	defer db.Close()
	if _, err := db.ExecContext(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
		return fmt.Errorf("drop database %s: %w", name, err)
	}
	return nil
}
