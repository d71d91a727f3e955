package store

import (
	"context"
	"database/sql"
	"sync"
)

// maxStatements bounds the prepared statements kept: one per query shape
// (filters, sort, page size), which clients choose.
const maxStatements = 256

// statements keeps prepared reads by their SQL. SQLite spends about as
// long preparing a listing's query as running it; PostgreSQL's driver
// caches its own, so there it only saves a map lookup in the driver.
type statements struct {
	mu sync.Mutex
	m  map[string]*sql.Stmt
}

// query runs a read, prepared once per distinct SQL (ad hoc once the
// cache is full).
func (s *sqlStore) query(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	st, err := s.prepared(ctx, query)
	if err != nil {
		return nil, err
	}
	if st == nil {
		return s.db.QueryContext(ctx, query, args...)
	}
	return st.QueryContext(ctx, args...)
}

// queryRow is query for one row.
func (s *sqlStore) queryRow(ctx context.Context, query string, args ...any) *sql.Row {
	st, err := s.prepared(ctx, query)
	if err != nil || st == nil {
		return s.db.QueryRowContext(ctx, query, args...)
	}
	return st.QueryRowContext(ctx, args...)
}

func (s *sqlStore) prepared(ctx context.Context, query string) (*sql.Stmt, error) {
	s.stmts.mu.Lock()
	defer s.stmts.mu.Unlock()
	if st, ok := s.stmts.m[query]; ok {
		return st, nil
	}
	if len(s.stmts.m) >= maxStatements {
		return nil, nil
	}
	st, err := s.db.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	if s.stmts.m == nil {
		s.stmts.m = map[string]*sql.Stmt{}
	}
	s.stmts.m[query] = st
	return st, nil
}

func (s *statements) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, st := range s.m {
		st.Close()
	}
	s.m = nil
}
