package activities

import (
	"cmp"
	"context"
	"fmt"
	"sync"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/converter"

	"github.com/metalpower/metalpower/internal/dispatch"
)

// NodePowerSyncWorkflow is the per-node sync's registered type name.
const NodePowerSyncWorkflow = "NodePowerSync"

// SyncCounts is what a pass did, as the Web UI and `starter sync status`
// show it.
type SyncCounts struct {
	Checked            int `json:"checked"`
	InSync             int `json:"in_sync"`
	Corrected          int `json:"corrected"`
	SkippedLocked      int `json:"skipped_locked"`
	Skipped            int `json:"skipped"`
	Unreadable         int `json:"unreadable"`
	EnteredMaintenance int `json:"entered_maintenance"`
	ForceFailed        int `json:"force_failed"`
	// NoWorker counts the nodes left unchecked because no live worker
	// serves their conductor group.
	NoWorker int `json:"no_worker,omitempty"`
}

// Outcomes of a per-node sync that never decided anything.
const (
	// SyncLocked: another workflow held the node's lock.
	SyncLocked = "skipped_locked"
	// SyncFailed: the per-node sync failed.
	SyncFailed = "failed"
)

// Add counts one per-node sync's outcome.
func (c *SyncCounts) Add(action string) {
	switch action {
	case SyncInSync:
		c.InSync++
	case SyncRecorded, SyncForce:
		c.Corrected++
	case SyncMaintenance:
		c.EnteredMaintenance++
	case SyncUnreadable, SyncFailed:
		c.Unreadable++
	case SyncForceFailed:
		c.ForceFailed++
	case SyncLocked:
		c.SkippedLocked++
	default:
		c.Skipped++
	}
}

// Merge adds o's counts to c's.
func (c *SyncCounts) Merge(o SyncCounts) {
	c.Checked += o.Checked
	c.InSync += o.InSync
	c.Corrected += o.Corrected
	c.SkippedLocked += o.SkippedLocked
	c.Skipped += o.Skipped
	c.Unreadable += o.Unreadable
	c.EnteredMaintenance += o.EnteredMaintenance
	c.ForceFailed += o.ForceFailed
	c.NoWorker += o.NoWorker
}

// NodeSyncInput names the node a per-node sync works on.
type NodeSyncInput struct {
	NodeUUID string `json:"node_uuid"`
	NodeName string `json:"node_name,omitempty"`
	// ReadError is the pass's failed read of the node's BMC, counted
	// without reading again.
	ReadError   string `json:"read_error,omitempty"`
	DriverError bool   `json:"driver_error,omitempty"`
	// Paced: reading and setting the BMC may wait for the IPMI spacing, so
	// they run as activities, never inside a workflow task.
	Paced bool `json:"paced,omitempty"`
}

// NodeSyncResult is what the per-node sync did.
type NodeSyncResult struct {
	Action     string `json:"action"`
	Count      int    `json:"count"`
	PowerState string `json:"power_state,omitempty"`
	Nova       string `json:"nova,omitempty"`
	Error      string `json:"error,omitempty"`
}

// NodeSyncsInput is one page's candidates, for RunNodeSyncs.
type NodeSyncsInput struct {
	Candidates []SyncCandidate `json:"candidates"`
	// Window is how many per-node syncs run at once.
	Window int `json:"window"`
	// TaskQueue is the queue of the nodes' conductor group.
	TaskQueue string `json:"task_queue"`
	// Pass is the pass's workflow ID, kept in each per-node sync's memo.
	Pass string `json:"pass"`
}

// passMemo is the memo key naming the pass that started a per-node sync.
const passMemo = "pass"

// RunNodeSyncs runs a NodePowerSync workflow under each candidate's lock,
// Window at a time, waits for them and counts what they did. Started
// here rather than as children of the pass, a correction costs the pass's
// history nothing: the pass records one activity per page. Each per-node
// sync is still its own workflow under the node's lock ID, with the
// node's search attributes, in the Web UI. A retried attempt picks up the
// outcomes its heartbeats recorded and waits on the syncs it had started.
func (a *SyncPass) RunNodeSyncs(ctx context.Context, in NodeSyncsInput) (SyncCounts, error) {
	outcomes := make([]string, len(in.Candidates))
	if activity.HasHeartbeatDetails(ctx) {
		var kept []string
		if err := activity.GetHeartbeatDetails(ctx, &kept); err == nil && len(kept) == len(outcomes) {
			outcomes = kept
		}
	}
	var (
		mu       sync.Mutex
		firstErr error
		wg       sync.WaitGroup
	)
	snapshot := func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), outcomes...)
	}
	stop := make(chan struct{})
	go func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				activity.RecordHeartbeat(ctx, snapshot())
			}
		}
	}()
	sem := make(chan struct{}, max(1, in.Window))
	for i, c := range in.Candidates {
		if outcomes[i] != "" {
			continue
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Go(func() {
			defer func() { <-sem }()
			outcome, err := a.runNodeSync(ctx, in, c)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				firstErr = cmp.Or(firstErr, err)
				return
			}
			outcomes[i] = outcome
		})
	}
	wg.Wait()
	close(stop)
	if ctx.Err() != nil {
		return SyncCounts{}, ctx.Err()
	}
	if firstErr != nil {
		// The outcomes so far are kept for the retry.
		activity.RecordHeartbeat(ctx, snapshot())
		return SyncCounts{}, firstErr
	}
	var counts SyncCounts
	for _, o := range outcomes {
		counts.Add(o)
	}
	return counts, nil
}

// runNodeSync starts one node's NodePowerSync and waits for its outcome.
// An error means Temporal could not be asked: the attempt fails and is
// retried.
func (a *SyncPass) runNodeSync(ctx context.Context, in NodeSyncsInput, c SyncCandidate) (string, error) {
	opts := dispatch.StartOptions(dispatch.Work{NodeUUID: c.UUID, NodeName: c.Name, Target: "sync", Queue: in.TaskQueue, Summary: NodeSyncSummary(c)})
	opts.StaticDetails = "started by sync pass " + in.Pass
	opts.Memo = map[string]any{passMemo: in.Pass}
	// One attempt: a held lock skips the node this pass, as Ironic's
	// NodeLocked during the sync.
	run, err := dispatch.Start(ctx, a.Temporal, opts, 1, NodePowerSyncWorkflow,
		NodeSyncInput{NodeUUID: c.UUID, NodeName: c.Name, ReadError: c.ReadError, DriverError: c.DriverError, Paced: c.Paced})
	if locked, ok := dispatch.AsLocked(err); ok {
		ours, derr := a.startedBy(ctx, opts.ID, locked.RunID, in.Pass)
		if derr != nil {
			return "", derr
		}
		if !ours {
			return SyncLocked, nil
		}
		run, err = a.Temporal.GetWorkflow(ctx, opts.ID, locked.RunID), nil
	}
	if err != nil {
		return "", fmt.Errorf("start the power sync of node %s: %w", c.UUID, err)
	}
	var res NodeSyncResult
	if err := run.Get(ctx, &res); err != nil {
		if ctx.Err() != nil {
			return "", ctx.Err()
		}
		activity.GetLogger(ctx).Error("node sync failed", "node", c.UUID, "workflow_id", opts.ID, "error", err)
		return SyncFailed, nil
	}
	return res.Action, nil
}

// NodeSyncSummary is a per-node sync's summary in the Web UI.
func NodeSyncSummary(c SyncCandidate) string {
	return fmt.Sprintf("sync power state of %s (%s)", cmp.Or(c.Name, c.UUID), c.Reason)
}

// startedBy reports whether the workflow run holding a node's lock is a
// per-node sync this pass started (in an earlier attempt).
func (a *SyncPass) startedBy(ctx context.Context, id, runID, pass string) (bool, error) {
	d, err := a.Temporal.DescribeWorkflowExecution(ctx, id, runID)
	if err != nil {
		return false, fmt.Errorf("describe %s: %w", id, err)
	}
	info := d.GetWorkflowExecutionInfo()
	if info.GetType().GetName() != NodePowerSyncWorkflow {
		return false, nil
	}
	var by string
	p, ok := info.GetMemo().GetFields()[passMemo]
	if !ok || converter.GetDefaultDataConverter().FromPayload(p, &by) != nil {
		return false, nil
	}
	return by == pass, nil
}
