// Package store keeps nodes durably in SQLite (the embedded default) or
// PostgreSQL. Both implementations pass one contract test suite.
package store

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	// The store validates every node it writes by its driver's rules:
	// every driver must be registered wherever a store is opened.
	_ "github.com/metalpower/metalpower/internal/bmc/drivers"
	"github.com/metalpower/metalpower/internal/node"
)

// Typed errors; callers branch with errors.Is.
var (
	ErrNotFound = errors.New("node not found")
	// ErrNameInUse: another node already has this name.
	ErrNameInUse = errors.New("node name already in use")
	// ErrUUIDInUse: a node with this UUID already exists.
	ErrUUIDInUse = errors.New("node UUID already in use")
	// ErrInstanceAssociated: another node already has this instance_uuid.
	ErrInstanceAssociated = errors.New("instance already associated with another node")
	// ErrConflict: the node changed since it was read; read it again and retry.
	ErrConflict = errors.New("node was modified concurrently")
	// ErrInvalidQuery: a bad sort key, direction, limit or marker.
	ErrInvalidQuery = errors.New("invalid query")
)

// MaxLimit bounds one page, as Ironic's [api]max_limit does.
const (
	DefaultLimit = 1000
	MaxLimit     = 10000
)

// Store is the node store. Every method is safe for concurrent use.
type Store interface {
	// Create inserts a validated node and sets its Version and timestamps.
	Create(ctx context.Context, n *node.Node) error
	// Get finds a node by UUID or, when ident is not a UUID, by name.
	Get(ctx context.Context, ident string) (*node.Node, error)
	// Update writes n if nobody changed the node since n was read
	// (n.Version); otherwise it returns ErrConflict. On success n carries
	// the new Version and UpdatedAt.
	Update(ctx context.Context, n *node.Node) error
	// Delete removes a node by UUID.
	Delete(ctx context.Context, uuid string) error
	// List returns one page of nodes matching q, in q's order.
	List(ctx context.Context, q Query) ([]*node.Node, error)
	// ListVersions is List naming each node and its version only: a
	// reader that keeps what it rendered of a node reads again only the
	// nodes written since.
	ListVersions(ctx context.Context, q Query) ([]Versioned, error)
	// Generation is raised by every committed write to nodes, in any
	// process: a reader that finds it unchanged knows that nothing it
	// read of the nodes has changed since.
	Generation(ctx context.Context) (int64, error)
	// GetMany reads the named nodes that exist, in no particular order.
	GetMany(ctx context.Context, uuids []string) ([]*node.Node, error)
	// SetPowerStates records many nodes' power states in one transaction.
	SetPowerStates(ctx context.Context, updates []PowerStateUpdate) error
	// ResetSyncFailures marks nodes found in sync: failure counter 0 and
	// last_error cleared, for each node still at the version read. It
	// returns how many were written.
	ResetSyncFailures(ctx context.Context, nodes []Versioned) (int, error)
	// Groups counts the nodes matching f by conductor group.
	Groups(ctx context.Context, f Filter) (map[string]int, error)
	// AddEvent records an entry in a node's history.
	AddEvent(ctx context.Context, e Event) error
	// History returns a node's newest events first, of one type when
	// eventType is set.
	History(ctx context.Context, nodeUUID, eventType string, limit int) ([]Event, error)
	// AcquirePace and ReleasePace share the IPMI command spacing between
	// processes (see pace.go).
	AcquirePace(ctx context.Context, bmc string, interval, lease time.Duration) (token string, err error)
	ReleasePace(ctx context.Context, bmc, token string) error
	// Close releases the database.
	Close() error
}

// Versioned names a node as read, for writes that must not overwrite a
// newer change. Owner and Lessee are what the access policy needs of a
// listed node without reading it.
type Versioned struct {
	UUID          string
	Version       int64
	Owner, Lessee string
}

// PowerStateUpdate records one node's power state.
type PowerStateUpdate struct {
	UUID       string
	PowerState string
}

// Filter selects nodes; zero fields select everything.
type Filter struct {
	Maintenance *bool
	// Fault matches exactly when set.
	Fault string
	// ProvisionStates keeps nodes in one of these states.
	ProvisionStates []string
	// ExcludeProvisionStates drops nodes in any of these states.
	ExcludeProvisionStates []string
	Driver                 string
	// TargetPowerStateSet keeps nodes with (true) or without (false) a
	// power change in progress.
	TargetPowerStateSet *bool
	// Associated keeps nodes with (true) or without (false) an instance.
	Associated    *bool
	InstanceUUID  string
	ResourceClass string
	// ConductorGroup keeps the nodes of one group ("" the default).
	ConductorGroup *string
	// Owner and Lessee match exactly when set; Project keeps the nodes a
	// project owns or leases (Ironic's project filter).
	Owner, Lessee, Project string
	// UpdatedBefore keeps nodes not written since this time: a sync pass
	// pages by failure count, and this keeps a node it already wrote from
	// coming round again.
	UpdatedBefore time.Time
}

// Query is a filter plus keyset pagination: pass the UUID of the last node
// of a page as Marker to get the next one. Pages stay fast at any depth
// because each starts from an index seek, not an offset.
type Query struct {
	Filter
	// SortKey is one of SortKeys; "id" (creation order) by default.
	SortKey string
	// SortDir is "asc" (default) or "desc".
	SortDir string
	Marker  string
	// After starts the page after a position taken earlier, instead of
	// Marker: for a pass that changes sort values as it goes.
	After *Position
	// Limit is DefaultLimit when 0; at most MaxLimit.
	Limit int
}

// Position is a node's place in a sort order: its sort value when read,
// and its ID.
type Position struct {
	Value any   `json:"value"`
	ID    int64 `json:"id"`
}

// SortKeys are the columns a list may be ordered by. They are all NOT NULL,
// which keyset pagination needs.
var SortKeys = []string{"id", "uuid", "created_at", "updated_at", "sync_failures", "provision_state", "driver"}

// Bool returns a pointer to b, for the Filter's optional booleans.
func Bool(b bool) *bool { return &b }

func (q Query) normalized() (Query, error) {
	if q.SortKey == "" {
		q.SortKey = "id"
	}
	valid := false
	for _, k := range SortKeys {
		valid = valid || k == q.SortKey
	}
	if !valid {
		return q, fmt.Errorf("%w: sort key %q: use one of %s", ErrInvalidQuery, q.SortKey, strings.Join(SortKeys, ", "))
	}
	switch q.SortDir {
	case "":
		q.SortDir = "asc"
	case "asc", "desc":
	default:
		return q, fmt.Errorf("%w: sort direction %q: use asc or desc", ErrInvalidQuery, q.SortDir)
	}
	switch {
	case q.Limit == 0:
		q.Limit = DefaultLimit
	case q.Limit < 0 || q.Limit > MaxLimit:
		return q, fmt.Errorf("%w: limit %d: use 1 to %d", ErrInvalidQuery, q.Limit, MaxLimit)
	}
	if q.Marker != "" && !node.ValidUUID(q.Marker) {
		return q, fmt.Errorf("%w: marker %q is not a node UUID", ErrInvalidQuery, q.Marker)
	}
	return q, nil
}

// Modify reads a node, applies fn and writes it back, retrying with a
// jittered backoff when another writer got there first. fn may run more than
// once and must only change n.
func Modify(ctx context.Context, s Store, ident string, fn func(n *node.Node) error) (*node.Node, error) {
	const attempts = 50
	for i := 0; ; i++ {
		if i > 0 {
			backoff := time.Duration(rand.Int64N(int64(min(i, 10)) * int64(time.Millisecond)))
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(backoff):
			}
		}
		n, err := s.Get(ctx, ident)
		if err != nil {
			return nil, err
		}
		if err := fn(n); err != nil {
			return nil, err
		}
		err = s.Update(ctx, n)
		if err == nil {
			return n, nil
		}
		if !errors.Is(err, ErrConflict) || i == attempts-1 {
			return nil, err
		}
	}
}

// Open opens the store a URL names: sqlite://<path> or postgres://...,
// and applies pending schema migrations.
func Open(ctx context.Context, url string) (Store, error) {
	switch {
	case strings.HasPrefix(url, "sqlite://"):
		return OpenSQLite(ctx, strings.TrimPrefix(url, "sqlite://"))
	case strings.HasPrefix(url, "postgres://"), strings.HasPrefix(url, "postgresql://"):
		return OpenPostgres(ctx, url)
	}
	scheme, _, _ := strings.Cut(url, ":")
	return nil, fmt.Errorf("database url: unsupported scheme %q: use sqlite://<path> or postgres://...", scheme)
}
