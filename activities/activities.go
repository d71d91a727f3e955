// Package activities holds the side effects of metalpower's workflows: each
// activity is a thin adapter over one internal package (the node store, a
// BMC driver, Nova). Activities load credentials by node UUID, so no secret
// ever travels in a workflow's input, result or history.
//
// The activities come in small structs, one per capability, each holding
// only what its methods use: Power (a power change's steps), Nova (the
// notifications), SyncPass and NodeSync (a sync pass's steps and one
// node's decision under its lock), Recovery (power-failure recovery) and
// Provision (provision moves that read the BMC). The worker registers one
// value of each, and each method under its own name: the name recorded in
// histories, so renaming a method breaks their replay.
package activities

import (
	"context"
	"errors"
	"fmt"

	"go.temporal.io/sdk/temporal"

	"github.com/metalpower/metalpower/internal/bmc"
	"github.com/metalpower/metalpower/internal/dispatch"
	"github.com/metalpower/metalpower/internal/node"
	"github.com/metalpower/metalpower/internal/store"
)

// BMCs hands out a power client for a node (internal/bmc/pool).
type BMCs interface {
	For(n *node.Node) (bmc.PowerManager, error)
	// Paced reports whether a call to n's BMC may wait for its driver's
	// spacing between commands.
	Paced(n *node.Node) bool
}

// Notifier sends one power-update event to Nova (internal/nova).
type Notifier interface {
	PowerUpdate(ctx context.Context, instanceUUID, powerState string) error
}

// Queues places a worker among the conductor groups' task queues.
type Queues struct {
	// TaskQueue is the worker's own queue, its conductor group's.
	// BaseQueue is [temporal] task_queue, the default group's, from which
	// every group's queue is named (dispatch.Queue).
	TaskQueue string
	BaseQueue string
	// Temporal tells whether a live worker polls another group's queue.
	Temporal dispatch.QueueDescriber
}

// Error types a workflow can branch on (temporal.ApplicationError.Type()),
// named ...Type as dispatch's LockedType and NoWorkerType; the values are
// recorded in histories and never change.
const (
	NodeNotFoundType      = "NodeNotFound"
	InvalidTargetType     = "InvalidTarget"
	InvalidStateType      = "InvalidStateRequested"
	PowerOffDisabledType  = "PowerOffDisabled"
	InvalidParameterType  = "InvalidParameterValue"
	BMCAuthType           = "BMCAuthenticationFailed"
	BMCUnsupportedType    = "BMCUnsupportedAction"
	BMCConfigType         = "BMCConfigurationError"
	BMCTransientType      = "BMCTransientError"
	PowerStateTimeoutType = "PowerStateTimeout"
	StoreType             = "StoreError"
	NovaUnavailableType   = "NovaUnavailable"
)

// NonRetryable lists the error types retrying cannot fix; retry policies
// name them so only transient failures are retried.
var NonRetryable = []string{NodeNotFoundType, InvalidTargetType, InvalidStateType, PowerOffDisabledType,
	InvalidParameterType, dispatch.LockedType, dispatch.NoWorkerType, WrongGroupType, BMCAuthType, BMCUnsupportedType, BMCConfigType, PowerStateTimeoutType}

// bmcError classifies a driver error at the activity boundary: permanent
// kinds fail at once, transient ones are retried by the activity's policy.
func bmcError(err error) error {
	if err == nil {
		return nil
	}
	kind, ok := bmc.KindOf(err)
	if !ok {
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			return temporal.NewApplicationError(err.Error(), BMCTransientType)
		}
		return err
	}
	switch kind {
	case bmc.Auth:
		return temporal.NewNonRetryableApplicationError(err.Error(), BMCAuthType, nil)
	case bmc.Unsupported:
		return temporal.NewNonRetryableApplicationError(err.Error(), BMCUnsupportedType, nil)
	case bmc.Config:
		return temporal.NewNonRetryableApplicationError(err.Error(), BMCConfigType, nil)
	}
	return temporal.NewApplicationError(err.Error(), BMCTransientType)
}

// loadNode reads a node for an activity, turning a missing node into a
// non-retryable error in Ironic's wording.
func loadNode(ctx context.Context, s store.Store, ident string) (*node.Node, error) {
	n, err := s.Get(ctx, ident)
	if errors.Is(err, store.ErrNotFound) {
		return nil, temporal.NewNonRetryableApplicationError(fmt.Sprintf("Node %s could not be found.", ident), NodeNotFoundType, nil)
	}
	if err != nil {
		return nil, temporal.NewApplicationError(err.Error(), StoreType)
	}
	return n, nil
}

// storeError classifies a node store error at the activity boundary: a
// missing node is permanent, anything else is retried.
func storeError(err error) error {
	var appErr *temporal.ApplicationError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &appErr):
		return err
	case errors.Is(err, store.ErrNotFound):
		return temporal.NewNonRetryableApplicationError(err.Error(), NodeNotFoundType, nil)
	}
	return temporal.NewApplicationError(err.Error(), StoreType)
}

// WrongGroupType is the type of the refusal of an activity asked to reach
// the BMC of a node of another conductor group: its details name the
// queue of the node's group, where the workflow sends the activity again.
const WrongGroupType = "WrongConductorGroup"

// Misrouted names, in the details of a WrongGroupType refusal, where the
// work belongs.
type Misrouted struct {
	Group  string `json:"group"`
	Queue  string `json:"queue"`
	Driver string `json:"driver,omitempty"`
}

// serves refuses, before anything touches a BMC, work for a conductor
// group this worker does not serve (driver: the node's, when one node's):
// its BMCs are on another network segment. Workflows route every BMC
// activity to the node's group; this is the guard that holds whatever
// queue a workflow was started on.
func (q Queues) serves(group, driver string) error {
	queue := dispatch.Queue(q.BaseQueue, group)
	if queue == q.TaskQueue {
		return nil
	}
	return temporal.NewNonRetryableApplicationError(
		fmt.Sprintf("conductor group %q is served on task queue %s; this worker polls %s and does not reach its BMCs", group, queue, q.TaskQueue),
		WrongGroupType, nil, Misrouted{Group: group, Queue: queue, Driver: driver})
}

// route sends a plan to the queue of the node's conductor group, and
// records whether a live worker polls it (this worker's own queue is
// live).
func (q Queues) route(ctx context.Context, p PowerPlan) PowerPlan {
	p.Queue = dispatch.Queue(q.BaseQueue, p.Group)
	if p.Queue != q.TaskQueue {
		_, err := dispatch.Route(ctx, q.Temporal, q.BaseQueue, p.Group, p.Driver)
		_, p.Unserved = dispatch.AsNoWorker(err)
	}
	return p
}

// AsMisrouted tells where the work refused by serves belongs, if err is
// that refusal.
func AsMisrouted(err error) (Misrouted, bool) {
	var app *temporal.ApplicationError
	var m Misrouted
	if !errors.As(err, &app) || app.Type() != WrongGroupType || app.Details(&m) != nil || m.Queue == "" {
		return Misrouted{}, false
	}
	return m, true
}
