package store

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/google/uuid"
)

// Event is one entry of a node's history, with Ironic's fields.
type Event struct {
	UUID      string    `json:"uuid"`
	NodeUUID  string    `json:"node_uuid"`
	CreatedAt time.Time `json:"created_at"`
	// Severity is INFO, WARNING or ERROR.
	Severity string `json:"severity"`
	// Type is what kind of event: "power change", "conflict", "sync".
	Type  string `json:"event_type"`
	Event string `json:"event"`
	// Via is who caused it (api, cli, sync, hardware), as a power
	// change's Via; Ironic calls the field user.
	Via string `json:"user,omitempty"`
}

// Event types.
const (
	EventPowerChange = "power change"
	EventConflict    = "conflict"
	// EventMonitoring is Ironic's states.MONITORING: what the power sync
	// found (entering maintenance for a power failure).
	EventMonitoring = "monitoring"
	// EventTakeover is Ironic's states.TAKEOVER: a pending power operation
	// aborted because nothing runs it any more.
	EventTakeover = "takeover"
)

func (s *sqlStore) AddEvent(ctx context.Context, e Event) error {
	if e.UUID == "" {
		e.UUID = uuid.NewString()
	}
	if e.CreatedAt.IsZero() {
		e.CreatedAt = time.Now().UTC()
	}
	_, err := s.db.ExecContext(ctx, s.d.rebind(`INSERT INTO node_history (uuid, node_uuid, created_at, severity, event_type, event, source)
		VALUES (?, ?, ?, ?, ?, ?, ?)`), e.UUID, e.NodeUUID, e.CreatedAt.UTC(), e.Severity, e.Type, e.Event, nullString(e.Via))
	if err != nil {
		return fmt.Errorf("add node history: %w", err)
	}
	return nil
}

func (s *sqlStore) History(ctx context.Context, nodeUUID, eventType string, limit int) ([]Event, error) {
	if limit <= 0 || limit > MaxLimit {
		limit = DefaultLimit
	}
	q := `SELECT uuid, node_uuid, created_at, severity, event_type, event, source FROM node_history WHERE node_uuid = ?`
	args := []any{nodeUUID}
	if eventType != "" {
		q, args = q+` AND event_type = ?`, append(args, eventType)
	}
	rows, err := s.db.QueryContext(ctx, s.d.rebind(q+fmt.Sprintf(` ORDER BY id DESC LIMIT %d`, limit)), args...)
	if err != nil {
		return nil, fmt.Errorf("node history: %w", err)
	}
	defer rows.Close()
	var events []Event
	for rows.Next() {
		var e Event
		var src sql.NullString
		if err := rows.Scan(&e.UUID, &e.NodeUUID, &e.CreatedAt, &e.Severity, &e.Type, &e.Event, &src); err != nil {
			return nil, fmt.Errorf("node history: %w", err)
		}
		e.CreatedAt, e.Via = e.CreatedAt.UTC(), src.String
		events = append(events, e)
	}
	return events, rows.Err()
}
