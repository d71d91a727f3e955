package activities

import (
	"context"
	"fmt"
	"strings"
	"time"

	"go.temporal.io/sdk/activity"

	"github.com/metalpower/metalpower/internal/config"
	"github.com/metalpower/metalpower/internal/node"
	"github.com/metalpower/metalpower/internal/store"
)

// recordChange adds a completed power change to the node's history; the
// conflict check reads it back.
func recordChange(ctx context.Context, s store.Store, uuid, final, target, via string) {
	err := s.AddEvent(ctx, store.Event{NodeUUID: uuid, Severity: "INFO", Type: store.EventPowerChange, Via: via,
		Event: fmt.Sprintf("Power state set to '%s' by '%s' (requested via %s).", final, target, orUnknown(via))})
	if err != nil {
		activity.GetLogger(ctx).Warn("cannot record node history", "node", uuid, "error", err.Error())
	}
}

// checkConflict records a conflict when a node's power is being changed
// back within [conductor] power_conflict_window after metalpower set it:
// by a new request (newState from via), or behind metalpower's back, as
// the sync finds it (via "hardware"). That pattern is the race Ironic's
// documentation admits with Nova's own power sync; an operator sees it in
// the node history and the log instead of a silent tug of war.
func checkConflict(ctx context.Context, s store.Store, c config.Conductor, n *node.Node, newState, via string) {
	window := time.Duration(c.PowerConflictWindow) * time.Second
	if window <= 0 || newState == "" {
		return
	}
	// The last change metalpower made: failed changes are in the history
	// too (as ERROR), but set nothing.
	events, err := s.History(ctx, n.UUID, store.EventPowerChange, 20)
	if err != nil {
		return
	}
	var last []store.Event
	for _, e := range events {
		if e.Severity != "ERROR" {
			last = []store.Event{e}
			break
		}
	}
	if len(last) == 0 {
		return
	}
	prev := stateOf(last[0].Event)
	age := time.Since(last[0].CreatedAt)
	if age > window || prev == "" || prev == newState || n.PowerState != prev {
		return
	}
	msg := fmt.Sprintf("Power state of node %s is being changed back to '%s' %s after metalpower set it to '%s' (requested via %s); now %s. "+
		"If this was not an operator, another party is fighting over the power state, most likely the compute service's power sync: "+
		"check that Nova receives power-update events ([nova] send_power_notifications and credentials).",
		n.UUID, newState, age.Round(time.Second), prev, orUnknown(last[0].Via), describeVia(via))
	activity.GetLogger(ctx).Warn(msg, "node", n.UUID, "event_type", store.EventConflict)
	if err := s.AddEvent(ctx, store.Event{NodeUUID: n.UUID, Severity: "WARNING", Type: store.EventConflict, Via: via, Event: msg}); err != nil {
		activity.GetLogger(ctx).Warn("cannot record node history", "node", n.UUID, "error", err.Error())
	}
}

func describeVia(via string) string {
	if via == "hardware" {
		return "the hardware was changed outside metalpower"
	}
	return "requested via " + orUnknown(via)
}

// stateOf reads the state back from a power change event's text.
func stateOf(event string) string {
	_, rest, ok := strings.Cut(event, "'")
	if !ok {
		return ""
	}
	state, _, _ := strings.Cut(rest, "'")
	return state
}

func orUnknown(s string) string {
	if s == "" {
		return "temporal"
	}
	return s
}
