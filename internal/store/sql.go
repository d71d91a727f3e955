package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/metalpower/metalpower/internal/node"
)

// dialect holds what differs between SQLite and PostgreSQL; everything else
// is the one implementation in this file.
type dialect interface {
	// rebind turns the ? placeholders used here into the database's own.
	rebind(query string) string
	// uniqueViolation returns the column a unique constraint failed on, or "".
	uniqueViolation(err error) string
	// setPowerStates writes a batch of power states inside tx.
	setPowerStates(ctx context.Context, tx *sql.Tx, updates []PowerStateUpdate, now time.Time) error
}

type sqlStore struct {
	db    *sql.DB
	d     dialect
	stmts statements
}

const columns = `id, uuid, name, driver, driver_info, power_state, target_power_state,
	provision_state, maintenance, maintenance_reason, fault, last_error, instance_uuid,
	disable_power_off, extra, resource_class, properties, traits, conductor_group, owner, lessee, sync_failures, version, created_at, updated_at`

// insertColumns is columns without the generated id.
var insertColumns = strings.TrimPrefix(columns, "id, ")

func (s *sqlStore) Close() error {
	s.stmts.close()
	return s.db.Close()
}

func (s *sqlStore) Create(ctx context.Context, n *node.Node) error {
	values, err := writableValues(n)
	if err != nil {
		return err
	}
	now := time.Now().UTC()
	args := append([]any{n.UUID}, values...)
	err = s.db.QueryRowContext(ctx, s.d.rebind(`INSERT INTO nodes (`+insertColumns+`)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?, ?)
		RETURNING id`), append(args, now, now)...).Scan(&n.ID)
	if err != nil {
		return s.classify("create node", err)
	}
	n.Version, n.CreatedAt, n.UpdatedAt = 1, now, now
	return nil
}

func (s *sqlStore) Get(ctx context.Context, ident string) (*node.Node, error) {
	col := "name"
	if node.ValidUUID(ident) {
		col = "uuid"
	}
	row := s.queryRow(ctx, s.d.rebind(`SELECT `+columns+` FROM nodes WHERE `+col+` = ?`), ident)
	n, err := scanNode(row)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, ident)
	}
	if err != nil {
		return nil, fmt.Errorf("get node %s: %w", ident, err)
	}
	return n, nil
}

func (s *sqlStore) Update(ctx context.Context, n *node.Node) error {
	values, err := writableValues(n)
	if err != nil {
		return err
	}
	now := time.Now().UTC()
	res, err := s.db.ExecContext(ctx, s.d.rebind(`UPDATE nodes SET name = ?, driver = ?, driver_info = ?,
		power_state = ?, target_power_state = ?, provision_state = ?, maintenance = ?, maintenance_reason = ?,
		fault = ?, last_error = ?, instance_uuid = ?, disable_power_off = ?, extra = ?,
		resource_class = ?, properties = ?, traits = ?, conductor_group = ?, owner = ?, lessee = ?, sync_failures = ?,
		version = version + 1, updated_at = ?
		WHERE uuid = ? AND version = ?`),
		append(values, now, n.UUID, n.Version)...)
	if err != nil {
		return s.classify("update node "+n.UUID, err)
	}
	if rows, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("update node %s: %w", n.UUID, err)
	} else if rows == 0 {
		if _, err := s.Get(ctx, n.UUID); err != nil {
			return err
		}
		return fmt.Errorf("%w: %s (version %d)", ErrConflict, n.UUID, n.Version)
	}
	n.Version++
	n.UpdatedAt = now
	return nil
}

func (s *sqlStore) Delete(ctx context.Context, uuid string) error {
	if _, err := s.db.ExecContext(ctx, s.d.rebind(`DELETE FROM node_history WHERE node_uuid = ?`), uuid); err != nil {
		return fmt.Errorf("delete node %s history: %w", uuid, err)
	}
	res, err := s.db.ExecContext(ctx, s.d.rebind(`DELETE FROM nodes WHERE uuid = ?`), uuid)
	if err != nil {
		return fmt.Errorf("delete node %s: %w", uuid, err)
	}
	if rows, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("delete node %s: %w", uuid, err)
	} else if rows == 0 {
		return fmt.Errorf("%w: %s", ErrNotFound, uuid)
	}
	return nil
}

func (s *sqlStore) List(ctx context.Context, q Query) ([]*node.Node, error) {
	rows, err := s.list(ctx, q, columns)
	if err != nil {
		return nil, err
	}
	return scanNodes(rows, min(q.Limit, 256))
}

func (s *sqlStore) ListVersions(ctx context.Context, q Query) ([]Versioned, error) {
	rows, err := s.list(ctx, q, `uuid, version, owner, lessee`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := make([]Versioned, 0, min(q.Limit, 256))
	for rows.Next() {
		var v Versioned
		var owner, lessee sql.NullString
		if err := rows.Scan(&v.UUID, &v.Version, &owner, &lessee); err != nil {
			return nil, fmt.Errorf("list nodes: %w", err)
		}
		v.Owner, v.Lessee = owner.String, lessee.String
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list nodes: %w", err)
	}
	return out, nil
}

func (s *sqlStore) Generation(ctx context.Context) (int64, error) {
	var gen int64
	if err := s.db.QueryRowContext(ctx, `SELECT CAST(COALESCE(SUM(gen), 0) AS BIGINT) FROM nodes_generation`).Scan(&gen); err != nil {
		return 0, fmt.Errorf("read the nodes' generation: %w", err)
	}
	return gen, nil
}

func (s *sqlStore) GetMany(ctx context.Context, uuids []string) ([]*node.Node, error) {
	if len(uuids) == 0 {
		return nil, nil
	}
	args := make([]any, len(uuids))
	for i, u := range uuids {
		args[i] = u
	}
	// Not prepared: the number of placeholders varies with every call.
	rows, err := s.db.QueryContext(ctx, s.d.rebind(`SELECT `+columns+` FROM nodes WHERE uuid IN (`+placeholders(len(uuids))+`)`), args...)
	if err != nil {
		return nil, fmt.Errorf("get nodes: %w", err)
	}
	return scanNodes(rows, len(uuids))
}

// list runs a listing's query, selecting cols.
func (s *sqlStore) list(ctx context.Context, q Query, cols string) (*sql.Rows, error) {
	query, args, err := s.pageSQL(ctx, q, cols)
	if err != nil {
		return nil, err
	}
	rows, err := s.query(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("list nodes: %w", err)
	}
	return rows, nil
}

// pageSQL is the query selecting cols for q's page, in the database's
// placeholders.
func (s *sqlStore) pageSQL(ctx context.Context, q Query, cols string) (string, []any, error) {
	q, err := q.normalized()
	if err != nil {
		return "", nil, err
	}
	where, args := filterSQL(q.Filter)
	cmp, dir := ">", "ASC"
	if q.SortDir == "desc" {
		cmp, dir = "<", "DESC"
	}
	if q.Marker != "" {
		// The marker's own row gives the position; a row-value comparison
		// turns it into one index range scan.
		var exists bool
		if err := s.queryRow(ctx, s.d.rebind(`SELECT EXISTS (SELECT 1 FROM nodes WHERE uuid = ?)`), q.Marker).Scan(&exists); err != nil {
			return "", nil, fmt.Errorf("list nodes: %w", err)
		}
		if !exists {
			return "", nil, fmt.Errorf("%w: marker %s: %w", ErrInvalidQuery, q.Marker, ErrNotFound)
		}
		where = append(where, fmt.Sprintf(`(%[1]s, id) %[2]s (SELECT %[1]s, id FROM nodes WHERE uuid = ?)`, q.SortKey, cmp))
		args = append(args, q.Marker)
	}
	if q.After != nil {
		where = append(where, fmt.Sprintf(`(%s, id) %s (?, ?)`, q.SortKey, cmp))
		args = append(args, q.After.Value, q.After.ID)
	}
	query := `SELECT ` + cols + ` FROM nodes`
	if len(where) > 0 {
		query += ` WHERE ` + strings.Join(where, ` AND `)
	}
	query += fmt.Sprintf(` ORDER BY %s %s, id %s LIMIT %d`, q.SortKey, dir, dir, q.Limit)
	return s.d.rebind(query), args, nil
}

// scanNodes reads and closes rows of full node columns.
func scanNodes(rows *sql.Rows, capacity int) ([]*node.Node, error) {
	defer rows.Close()
	nodes := make([]*node.Node, 0, capacity)
	for rows.Next() {
		n, err := scanNode(rows)
		if err != nil {
			return nil, fmt.Errorf("list nodes: %w", err)
		}
		nodes = append(nodes, n)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list nodes: %w", err)
	}
	return nodes, nil
}

func (s *sqlStore) Groups(ctx context.Context, f Filter) (map[string]int, error) {
	where, args := filterSQL(f)
	query := `SELECT conductor_group, COUNT(*) FROM nodes`
	if len(where) > 0 {
		query += ` WHERE ` + strings.Join(where, ` AND `)
	}
	rows, err := s.db.QueryContext(ctx, s.d.rebind(query+` GROUP BY conductor_group`), args...)
	if err != nil {
		return nil, fmt.Errorf("count nodes by conductor group: %w", err)
	}
	defer rows.Close()
	groups := map[string]int{}
	for rows.Next() {
		var g string
		var n int
		if err := rows.Scan(&g, &n); err != nil {
			return nil, fmt.Errorf("count nodes by conductor group: %w", err)
		}
		groups[g] = n
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("count nodes by conductor group: %w", err)
	}
	return groups, nil
}

func filterSQL(f Filter) (where []string, args []any) {
	if f.Maintenance != nil {
		where, args = append(where, `maintenance = ?`), append(args, *f.Maintenance)
	}
	if f.Fault != "" {
		where, args = append(where, `fault = ?`), append(args, f.Fault)
	}
	if len(f.ProvisionStates) > 0 {
		where = append(where, `provision_state IN (`+placeholders(len(f.ProvisionStates))+`)`)
		for _, s := range f.ProvisionStates {
			args = append(args, s)
		}
	}
	if len(f.ExcludeProvisionStates) > 0 {
		where = append(where, `provision_state NOT IN (`+placeholders(len(f.ExcludeProvisionStates))+`)`)
		for _, s := range f.ExcludeProvisionStates {
			args = append(args, s)
		}
	}
	if f.Driver != "" {
		where, args = append(where, `driver = ?`), append(args, f.Driver)
	}
	if f.TargetPowerStateSet != nil {
		where = append(where, map[bool]string{true: `target_power_state IS NOT NULL`, false: `target_power_state IS NULL`}[*f.TargetPowerStateSet])
	}
	if f.Associated != nil {
		where = append(where, map[bool]string{true: `instance_uuid IS NOT NULL`, false: `instance_uuid IS NULL`}[*f.Associated])
	}
	if f.ConductorGroup != nil {
		where, args = append(where, `conductor_group = ?`), append(args, *f.ConductorGroup)
	}
	if f.ResourceClass != "" {
		where, args = append(where, `resource_class = ?`), append(args, f.ResourceClass)
	}
	if f.Owner != "" {
		where, args = append(where, `owner = ?`), append(args, f.Owner)
	}
	if f.Lessee != "" {
		where, args = append(where, `lessee = ?`), append(args, f.Lessee)
	}
	if f.Project != "" {
		where, args = append(where, `(owner = ? OR lessee = ?)`), append(args, f.Project, f.Project)
	}
	if f.InstanceUUID != "" {
		where, args = append(where, `instance_uuid = ?`), append(args, f.InstanceUUID)
	}
	if !f.UpdatedBefore.IsZero() {
		where, args = append(where, `updated_at < ?`), append(args, f.UpdatedBefore.UTC())
	}
	return where, args
}

func (s *sqlStore) SetPowerStates(ctx context.Context, updates []PowerStateUpdate) error {
	for _, u := range updates {
		switch u.PowerState {
		case "", node.PowerOn, node.PowerOff, node.PowerError:
		default:
			return &node.ValidationError{Field: "power_state", Err: node.ErrInvalidPowerState, Detail: strconv.Quote(u.PowerState)}
		}
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("set power states: %w", err)
	}
	defer tx.Rollback()
	if err := s.d.setPowerStates(ctx, tx, updates, time.Now().UTC()); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("set power states: %w", err)
	}
	return nil
}

func (s *sqlStore) ResetSyncFailures(ctx context.Context, nodes []Versioned) (int, error) {
	if len(nodes) == 0 {
		return 0, nil
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("reset sync failures: %w", err)
	}
	defer tx.Rollback()
	stmt, err := tx.PrepareContext(ctx, s.d.rebind(`UPDATE nodes SET sync_failures = 0, last_error = NULL, version = version + 1, updated_at = ?
		WHERE uuid = ? AND version = ?`))
	if err != nil {
		return 0, fmt.Errorf("reset sync failures: %w", err)
	}
	defer stmt.Close()
	now, written := time.Now().UTC(), 0
	for _, n := range nodes {
		res, err := stmt.ExecContext(ctx, now, n.UUID, n.Version)
		if err != nil {
			return 0, fmt.Errorf("reset sync failures of %s: %w", n.UUID, err)
		}
		if rows, err := res.RowsAffected(); err == nil {
			written += int(rows)
		}
	}
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("reset sync failures: %w", err)
	}
	return written, nil
}

// setPowerStatesEach updates row by row inside tx: cheap where the database
// is in-process (SQLite).
func setPowerStatesEach(ctx context.Context, d dialect, tx *sql.Tx, updates []PowerStateUpdate, now time.Time) error {
	stmt, err := tx.PrepareContext(ctx, d.rebind(`UPDATE nodes SET power_state = ?, version = version + 1, updated_at = ? WHERE uuid = ?`))
	if err != nil {
		return fmt.Errorf("set power states: %w", err)
	}
	defer stmt.Close()
	for _, u := range updates {
		res, err := stmt.ExecContext(ctx, nullString(u.PowerState), now, u.UUID)
		if err != nil {
			return fmt.Errorf("set power state of %s: %w", u.UUID, err)
		}
		if rows, err := res.RowsAffected(); err == nil && rows == 0 {
			return fmt.Errorf("set power state: %w: %s", ErrNotFound, u.UUID)
		}
	}
	return nil
}

// classify maps a unique-constraint failure to its typed error.
func (s *sqlStore) classify(op string, err error) error {
	switch s.d.uniqueViolation(err) {
	case "name":
		return fmt.Errorf("%s: %w", op, ErrNameInUse)
	case "uuid":
		return fmt.Errorf("%s: %w", op, ErrUUIDInUse)
	case "instance_uuid":
		return fmt.Errorf("%s: %w", op, ErrInstanceAssociated)
	}
	return fmt.Errorf("%s: %w", op, err)
}

type scanner interface{ Scan(dest ...any) error }

func scanNode(r scanner) (*node.Node, error) {
	var (
		n                                               node.Node
		name, ps, tps, reason, fault, lastErr, instance sql.NullString
		resourceClass, owner, lessee                    sql.NullString
		info, extra, props, traits                      []byte
	)
	err := r.Scan(&n.ID, &n.UUID, &name, &n.Driver, &info, &ps, &tps, &n.ProvisionState, &n.Maintenance, &reason,
		&fault, &lastErr, &instance, &n.DisablePowerOff, &extra, &resourceClass, &props, &traits, &n.ConductorGroup,
		&owner, &lessee, &n.SyncFailures, &n.Version, &n.CreatedAt, &n.UpdatedAt)
	if err != nil {
		return nil, err
	}
	n.Name, n.PowerState, n.TargetPowerState = name.String, ps.String, tps.String
	n.MaintenanceReason, n.Fault, n.LastError, n.InstanceUUID = reason.String, fault.String, lastErr.String, instance.String
	n.ResourceClass, n.Owner, n.Lessee = resourceClass.String, owner.String, lessee.String
	n.CreatedAt, n.UpdatedAt = n.CreatedAt.UTC(), n.UpdatedAt.UTC()
	for _, f := range []struct {
		name string
		raw  []byte
		into any
	}{{"driver_info", info, &n.DriverInfo}, {"extra", extra, &n.Extra}, {"properties", props, &n.Properties}, {"traits", traits, &n.Traits}} {
		if err := json.Unmarshal(f.raw, f.into); err != nil {
			return nil, fmt.Errorf("node %s: %s: %w", n.UUID, f.name, err)
		}
	}
	return &n, nil
}

// writableValues validates n and returns what Create and Update write, in
// column order from name to sync_failures: the columns between uuid and the
// version and timestamps the store keeps itself.
func writableValues(n *node.Node) ([]any, error) {
	if err := n.Validate(); err != nil {
		return nil, err
	}
	enc, err := encodeJSON(n)
	if err != nil {
		return nil, err
	}
	return []any{nullString(n.Name), n.Driver, enc.info, nullString(n.PowerState), nullString(n.TargetPowerState),
		n.ProvisionState, n.Maintenance, nullString(n.MaintenanceReason), nullString(n.Fault), nullString(n.LastError),
		nullString(n.InstanceUUID), n.DisablePowerOff, enc.extra, nullString(n.ResourceClass), enc.properties, enc.traits,
		n.ConductorGroup, nullString(n.Owner), nullString(n.Lessee), n.SyncFailures}, nil
}

// encoded are a node's JSON columns.
type encoded struct{ info, extra, properties, traits string }

func encodeJSON(n *node.Node) (encoded, error) {
	var e encoded
	b, err := json.Marshal(orEmpty(n.DriverInfo))
	if err != nil {
		return e, &node.ValidationError{Field: "driver_info", Err: node.ErrMalformedDriverInfo, Detail: "is not JSON-encodable"}
	}
	e.info = string(b)
	for _, f := range []struct {
		name string
		v    any
		into *string
	}{{"extra", orEmpty(n.Extra), &e.extra}, {"properties", orEmpty(n.Properties), &e.properties}, {"traits", orNone(n.Traits), &e.traits}} {
		b, err := json.Marshal(f.v)
		if err != nil {
			return e, fmt.Errorf("%s is not JSON-encodable: %w", f.name, err)
		}
		*f.into = string(b)
	}
	return e, nil
}

func orNone(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func orEmpty[M ~map[string]any](m M) M {
	if m == nil {
		return M{}
	}
	return m
}

func nullString(s string) sql.NullString { return sql.NullString{String: s, Valid: s != ""} }

func placeholders(n int) string { return strings.TrimSuffix(strings.Repeat("?, ", n), ", ") }
