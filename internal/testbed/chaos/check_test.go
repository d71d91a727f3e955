package chaos_test

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"

	"github.com/metalpower/metalpower/internal/node"
	"github.com/metalpower/metalpower/internal/operator"
	"github.com/metalpower/metalpower/internal/store"
	"github.com/metalpower/metalpower/internal/testbed/itest"
	"github.com/metalpower/metalpower/workflows"
)

// quiet is the phase after the chaos: every fault repaired, the system
// must settle by itself (bounded waits only).
type quiet struct {
	t     *testing.T
	c     client.Client
	st    store.Store
	fleet *fleet
	// stuck lists workflows still open when a drain gave up.
	stuck []string
}

// recoverAll waits until no node is left in maintenance for a power
// failure, triggering the recovery schedule to save waiting for it.
func (q *quiet) recoverAll() {
	h := q.c.ScheduleClient().GetHandle(context.Background(), workflows.RecoveryScheduleID)
	deadline := time.Now().Add(3 * time.Minute)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		nodes, err := q.st.List(ctx, store.Query{Filter: store.Filter{Maintenance: store.Bool(true), Fault: node.FaultPowerFailure}, Limit: store.MaxLimit})
		if err == nil && len(nodes) == 0 {
			cancel()
			return
		}
		h.Trigger(ctx, client.ScheduleTriggerOptions{Overlap: enumspb.SCHEDULE_OVERLAP_POLICY_SKIP})
		cancel()
		if time.Now().After(deadline) {
			var names []string
			for _, n := range nodes {
				names = append(names, n.Name)
			}
			q.t.Errorf("after 3 minutes with every BMC repaired, nodes are still in maintenance for a power failure: %v (%v)", names, err)
			return
		}
		time.Sleep(3 * time.Second)
	}
}

// settle waits until no node has a target_power_state, triggering sync
// passes, which clear targets that no running change holds once they are
// old enough (a change terminated by hand leaves one).
func (q *quiet) settle() {
	deadline := time.Now().Add(3 * time.Minute)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		nodes, err := q.st.List(ctx, store.Query{Filter: store.Filter{TargetPowerStateSet: store.Bool(true)}, Limit: store.MaxLimit})
		if err == nil && len(nodes) == 0 {
			cancel()
			return
		}
		operator.SyncNow(ctx, q.c)
		cancel()
		if time.Now().After(deadline) {
			var names []string
			for _, n := range nodes {
				names = append(names, n.Name+" ("+n.TargetPowerState+")")
			}
			q.t.Errorf("after 3 minutes of quiet, nodes still have a target_power_state: %v (%v)", names, err)
			return
		}
		time.Sleep(3 * time.Second)
	}
}

// count counts workflows matching a visibility query.
func (q *quiet) count(query string) int {
	for i := 0; ; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		resp, err := q.c.CountWorkflow(ctx, &workflowservice.CountWorkflowExecutionsRequest{Query: query})
		cancel()
		if err == nil {
			return int(resp.GetCount())
		}
		if i == 10 {
			q.t.Errorf("count workflows %q: %v", query, err)
			return -1
		}
		time.Sleep(time.Second)
	}
}

// pauseSchedules stops new sync and recovery passes, so the system can
// become idle.
func (q *quiet) pauseSchedules() {
	for _, id := range []string{workflows.SyncScheduleID, workflows.RecoveryScheduleID} {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := q.c.ScheduleClient().GetHandle(ctx, id).Pause(ctx, client.SchedulePauseOptions{Note: "chaos: final checks"})
		cancel()
		if err != nil {
			q.t.Fatalf("pause schedule %s: %v", id, err)
		}
	}
}

// open lists the running workflows as "type id".
func (q *quiet) open() ([]string, error) {
	var out []string
	var token []byte
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		resp, err := q.c.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{
			Query: "ExecutionStatus = 'Running'", PageSize: 1000, NextPageToken: token})
		cancel()
		if err != nil {
			return nil, err
		}
		for _, e := range resp.GetExecutions() {
			out = append(out, e.GetType().GetName()+" "+e.GetExecution().GetWorkflowId())
		}
		if token = resp.GetNextPageToken(); len(token) == 0 {
			sort.Strings(out)
			return out, nil
		}
	}
}

// drain waits until no workflow is open. None is legitimately
// long-running here: with the schedules paused, sync and recovery passes
// end, power changes end, and a notifier ends once Nova has the latest
// state. What is still open after the bound is reported as stuck.
func (q *quiet) drain(what string) {
	deadline := time.Now().Add(3 * time.Minute)
	for {
		open, err := q.open()
		if err == nil && len(open) == 0 {
			return
		}
		if time.Now().After(deadline) {
			q.stuck = open
			q.t.Errorf("waiting for %s: %d workflows still open after 3 minutes (%v): %s", what, len(open), err, q.describe(open))
			return
		}
		time.Sleep(time.Second)
	}
}

// describe adds the status query's answer to each open workflow.
func (q *quiet) describe(open []string) string {
	var b strings.Builder
	for i, o := range open {
		if i == 20 {
			fmt.Fprintf(&b, "\n  ... and %d more", len(open)-i)
			break
		}
		typ, id, _ := strings.Cut(o, " ")
		fmt.Fprintf(&b, "\n  %s %s", typ, id)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if v, err := q.c.QueryWorkflow(ctx, id, "", "status"); err == nil {
			var st any
			if v.Get(&st) == nil {
				fmt.Fprintf(&b, ": %v", st)
			}
		}
		cancel()
	}
	return b.String()
}

// finalPass runs one sync pass to its end.
func (q *quiet) finalPass() workflows.PowerSyncResult {
	res, err := itest.RunSyncPass(context.Background(), q.c, taskQueue)
	if err != nil {
		q.t.Errorf("final sync pass: %v", err)
	}
	return res
}

// report is what the checks found.
type report struct {
	requested, completed, skipped, skipCorrected, failedRecorded, lost int
	maintenance, recovered, open                                       int
	startErrors                                                        map[string]int
	violations                                                         []string
}

// check verifies every invariant, node by node and change by change,
// collecting every violation.
func check(q *quiet, changes []*change, entered map[string]string) report {
	r := report{startErrors: map[string]int{}, maintenance: len(entered), open: len(q.stuck)}
	for _, ch := range changes {
		ch.mu.Lock()
		for k, v := range ch.StartErrors {
			r.startErrors[k] += v
		}
		accepted, outcome, skipped, nova := ch.Accepted, ch.Outcome, ch.Result.Skipped, ch.Result.Nova
		ch.mu.Unlock()
		switch {
		case !accepted:
			r.lost++
			r.violations = append(r.violations, "never accepted: "+ch.String())
		case outcome == "completed":
			r.requested++
			r.completed++
			if skipped {
				r.skipped++
				if nova != "not sent: no change" {
					// The hardware was already there by hand: the record
					// was corrected and Nova told.
					r.skipCorrected++
				}
			}
		case outcome == "failed" && ch.failureRecorded(q.st):
			r.requested++
			r.failedRecorded++
		case outcome == "failed":
			r.requested++
			r.lost++
			ch.mu.Lock()
			r.violations = append(r.violations, fmt.Sprintf("failed without its error on the node (last_error %q, read error %q): %s",
				ch.LastError, ch.ReadErr, ch.Err))
			ch.mu.Unlock()
			r.violations[len(r.violations)-1] += " -- " + ch.String()
		default:
			r.requested++
			r.lost++
			r.violations = append(r.violations, "never ended: "+ch.String())
		}
	}
	for _, fn := range q.fleet.Nodes {
		var n *node.Node
		var err error
		for i := 0; i < 10; i++ {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			n, err = q.st.Get(ctx, fn.UUID)
			cancel()
			if err == nil {
				break
			}
			time.Sleep(time.Second)
		}
		if err != nil {
			r.violations = append(r.violations, fmt.Sprintf("node %s: cannot read it: %v", fn.Name, err))
			continue
		}
		if _, ok := entered[fn.UUID]; ok && !n.Maintenance {
			r.recovered++
		}
		v := func(format string, args ...any) {
			r.violations = append(r.violations, fmt.Sprintf("node %s (%s): ", fn.Name, fn.UUID)+fmt.Sprintf(format, args...))
		}
		hw := q.fleet.Hardware(fn)
		if n.PowerState != hw {
			v("recorded power_state %q, hardware %q", n.PowerState, hw)
		}
		if n.TargetPowerState != "" {
			v("stale target_power_state %q", n.TargetPowerState)
		}
		if n.Maintenance {
			v("still in maintenance (fault %q): %s", n.Fault, n.MaintenanceReason)
		}
		if fn.Instance != "" {
			if got, inst := q.fleet.novaPowerState(fn.Instance); got != n.PowerState {
				v("Nova holds %q (vm_state %s, power_state %s) for instance %s, the node is %q; events: %s",
					got, inst.VMState, inst.PowerState, fn.Instance, n.PowerState, q.novaEvents(fn.Instance))
			}
		}
	}
	for _, o := range q.stuck {
		r.violations = append(r.violations, "workflow still open: "+o)
	}
	return r
}

// novaEvents lists the power-update tags Nova received for an instance.
func (q *quiet) novaEvents(instance string) string {
	var tags []string
	for _, e := range q.fleet.Nova.Events() {
		if e.ServerUUID == instance && e.Name == "power-update" {
			tags = append(tags, fmt.Sprintf("%s@%s(%d)", e.Tag, e.At.Format("15:04:05.000"), e.Code))
		}
	}
	return strings.Join(tags, " ")
}
