package chaos_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/metalpower/metalpower/internal/dispatch"
	"github.com/metalpower/metalpower/internal/node"
	"github.com/metalpower/metalpower/internal/operator"
	"github.com/metalpower/metalpower/internal/store"
	"github.com/metalpower/metalpower/workflows"
)

// change is one power change the test asks for, as an operator would:
// retried until metalpower accepts it, then followed to its end.
type change struct {
	Index  int
	Node   *fleetNode
	Target string

	mu       sync.Mutex
	Attempts int
	// StartErrors counts refusals by kind (locked, unavailable, ...).
	StartErrors map[string]int
	Accepted    bool
	AcceptedAt  time.Time
	WorkflowID  string
	RunID       string
	// Outcome: "" while running, "completed" or "failed".
	Outcome string
	Result  workflows.PowerChangeResult
	Err     string
	// LastError is the node's last_error read as soon as the change was
	// seen to fail; History holds the node's ERROR events then.
	LastError string
	History   []store.Event
	// ReadErr is why the node could not be read after a failure.
	ReadErr string
}

func (c *change) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return fmt.Sprintf("change %d: %s %s (run %s/%s, attempts %d, start errors %v): outcome %q %s",
		c.Index, c.Target, c.Node.Name, c.WorkflowID, c.RunID, c.Attempts, c.StartErrors, c.Outcome, c.Err)
}

// targetFor picks change i's target for a node: off or reboot for a node
// that starts on (with a few asking for the state it is already in, which
// the change skips), on for one that starts off.
func targetFor(i int, fn *fleetNode) string {
	switch {
	case i%10 == 9 && fn.InitialOn:
		return node.PowerOn // already there: skipped
	case !fn.InitialOn:
		return node.PowerOn
	case i%3 == 1:
		return node.Reboot
	}
	return node.PowerOff
}

// driver starts changes and follows them across outages of every part.
type driver struct {
	c         client.Client
	st        store.Store
	taskQueue string
	deadline  time.Time // nothing is retried past it
}

// request starts ch the way the API and CLI do (operator.StartPowerChange on
// the node as read now), retrying refusals and outages until it is
// accepted or the deadline passes.
func (d *driver) request(ch *change) {
	ch.mu.Lock()
	ch.StartErrors = map[string]int{}
	ch.mu.Unlock()
	for time.Now().Before(d.deadline) {
		ch.mu.Lock()
		ch.Attempts++
		ch.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		run, err := d.start(ctx, ch)
		cancel()
		if err == nil {
			ch.mu.Lock()
			ch.Accepted, ch.AcceptedAt, ch.WorkflowID, ch.RunID = true, time.Now(), run.GetID(), run.GetRunID()
			ch.mu.Unlock()
			return
		}
		kind := "unavailable"
		var locked *dispatch.LockedError
		if errors.As(err, &locked) {
			kind = "locked"
		} else if errors.Is(err, operator.ErrInvalidRequest) {
			// Never expected: every request here is valid.
			kind = "invalid: " + err.Error()
		}
		ch.mu.Lock()
		ch.StartErrors[kind]++
		ch.mu.Unlock()
		time.Sleep(time.Second)
	}
}

func (d *driver) start(ctx context.Context, ch *change) (client.WorkflowRun, error) {
	n, err := d.st.Get(ctx, ch.Node.UUID)
	if err != nil {
		return nil, err
	}
	return operator.StartPowerChange(ctx, d.c, d.st, d.taskQueue, n, operator.PowerRequest{Target: ch.Target, Via: "chaos"})
}

// follow waits for an accepted change's run to close (riding out server
// restarts), then records its outcome; a failure is checked at once for
// the last_error and the history event it must have left on the node.
func (d *driver) follow(ch *change, until time.Time) {
	ch.mu.Lock()
	id, runID := ch.WorkflowID, ch.RunID
	ch.mu.Unlock()
	var res workflows.PowerChangeResult
	var werr error
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		err := d.c.GetWorkflow(ctx, id, runID).Get(ctx, &res)
		cancel()
		var execErr *temporal.WorkflowExecutionError
		if err == nil || errors.As(err, &execErr) {
			werr = err
			break
		}
		if time.Now().After(until) {
			return // still open: reported as stuck
		}
		time.Sleep(time.Second)
	}
	ch.mu.Lock()
	if werr == nil {
		ch.Outcome, ch.Result = "completed", res
		ch.mu.Unlock()
		return
	}
	ch.Outcome, ch.Err = "failed", werr.Error()
	ch.mu.Unlock()

	// Read the node as an operator looking at a failed change would.
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		n, err := d.st.Get(ctx, ch.Node.UUID)
		var hist []store.Event
		if err == nil {
			hist, err = d.st.History(ctx, ch.Node.UUID, "", 50)
		}
		cancel()
		if err == nil {
			ch.mu.Lock()
			ch.LastError, ch.ReadErr = n.LastError, ""
			for _, e := range hist {
				// This change's: written since it was accepted (with a
				// second's leeway for clocks).
				if e.Severity == "ERROR" && e.CreatedAt.After(ch.AcceptedAt.Add(-time.Second)) {
					ch.History = append(ch.History, e)
				}
			}
			ch.mu.Unlock()
			return
		}
		ch.mu.Lock()
		ch.ReadErr = err.Error()
		ch.mu.Unlock()
		if time.Now().After(until) {
			return
		}
		time.Sleep(time.Second)
	}
}

// running reports whether the change was accepted and has not ended.
func (ch *change) running() bool {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	return ch.Accepted && ch.Outcome == ""
}

// failureRecorded reports whether a failed change left its error on the
// node: in last_error when it was read right after, or as an ERROR event
// in the node history since the change was accepted (where it outlives
// last_error, which the next in-sync pass clears). A change terminated by
// hand is recorded by the pass that clears the target it left.
func (ch *change) failureRecorded(st store.Store) bool {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	if isFailure(ch.LastError) {
		return true
	}
	for _, e := range ch.History {
		if isFailure(e.Event) {
			return true
		}
	}
	// Read the history again now: what recorded it may have come later.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	hist, err := st.History(ctx, ch.Node.UUID, "", 0)
	if err != nil {
		ch.ReadErr = err.Error()
		return false
	}
	for _, e := range hist {
		if e.Severity == "ERROR" && e.CreatedAt.After(ch.AcceptedAt.Add(-time.Second)) && isFailure(e.Event) {
			ch.History = append(ch.History, e)
			return true
		}
	}
	return false
}

func isFailure(msg string) bool {
	return strings.HasPrefix(msg, "Failed to change power state") || strings.HasPrefix(msg, "Pending power operation was aborted")
}
