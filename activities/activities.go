// Package activities holds the side effects of metalpower's workflows: each
// activity is a thin adapter over one internal package (the node store, a
// BMC driver, Nova). Activities load credentials by node UUID, so no secret
// ever travels in a workflow's input, result or history.
package activities

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/metalpower/metalpower/internal/bmc"
	"github.com/metalpower/metalpower/internal/config"
	"github.com/metalpower/metalpower/internal/dispatch"
	"github.com/metalpower/metalpower/internal/metrics"
	"github.com/metalpower/metalpower/internal/node"
	"github.com/metalpower/metalpower/internal/store"
)

// BMCs hands out a power client for a node (internal/bmc/pool).
type BMCs interface {
	For(n *node.Node) (bmc.PowerManager, error)
}

// Notifier sends one power-update event to Nova (internal/nova).
type Notifier interface {
	PowerUpdate(ctx context.Context, instanceUUID, powerState string) error
}

// Activities carries the dependencies every activity uses. Register one
// value with the worker; workflows call its methods by reference.
type Activities struct {
	Store     store.Store
	BMCs      BMCs
	Conductor config.Conductor
	IPMI      config.IPMI
	// Nova is nil when notifications cannot be sent; NovaDisabled says why
	// (switched off, or credentials missing), and is recorded on each change.
	Nova         Notifier
	NovaDisabled string
	// Temporal starts and signals the Nova notifier workflows.
	Temporal client.Client
	// TaskQueue is this worker's own queue, its conductor group's: where
	// notifier workflows run. BaseQueue is [temporal] task_queue, the
	// default group's, from which every group's queue is named.
	TaskQueue string
	BaseQueue string
	// Metrics records the domain metrics; nil records nothing.
	Metrics *metrics.Metrics
	// StaleTargetAge is how long a target_power_state with no workflow
	// holding the node's lock stands before a sync pass clears it;
	// DefaultStaleTargetAge when 0.
	StaleTargetAge time.Duration
}

// Error types a workflow can branch on (temporal.ApplicationError.Type()).
const (
	ErrNodeNotFound      = "NodeNotFound"
	ErrInvalidTarget     = "InvalidTarget"
	ErrInvalidState      = "InvalidStateRequested"
	ErrPowerOffDisabled  = "PowerOffDisabled"
	ErrInvalidParameter  = "InvalidParameterValue"
	ErrBMCAuth           = "BMCAuthenticationFailed"
	ErrBMCUnsupported    = "BMCUnsupportedAction"
	ErrBMCConfig         = "BMCConfigurationError"
	ErrBMCTransient      = "BMCTransientError"
	ErrPowerStateTimeout = "PowerStateTimeout"
	ErrStore             = "StoreError"
)

// NonRetryable lists the error types retrying cannot fix; retry policies
// name them so only transient failures are retried.
var NonRetryable = []string{ErrNodeNotFound, ErrInvalidTarget, ErrInvalidState, ErrPowerOffDisabled,
	ErrInvalidParameter, dispatch.LockedType, dispatch.NoWorkerType, ErrWrongGroup, ErrBMCAuth, ErrBMCUnsupported, ErrBMCConfig, ErrPowerStateTimeout}

// bmcError classifies a driver error at the activity boundary: permanent
// kinds fail at once, transient ones are retried by the activity's policy.
func bmcError(err error) error {
	if err == nil {
		return nil
	}
	kind, ok := bmc.KindOf(err)
	if !ok {
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			return temporal.NewApplicationError(err.Error(), ErrBMCTransient)
		}
		return err
	}
	switch kind {
	case bmc.Auth:
		return temporal.NewNonRetryableApplicationError(err.Error(), ErrBMCAuth, nil)
	case bmc.Unsupported:
		return temporal.NewNonRetryableApplicationError(err.Error(), ErrBMCUnsupported, nil)
	case bmc.Config:
		return temporal.NewNonRetryableApplicationError(err.Error(), ErrBMCConfig, nil)
	}
	return temporal.NewApplicationError(err.Error(), ErrBMCTransient)
}

// loadNode reads a node for an activity, turning a missing node into a
// non-retryable error in Ironic's wording.
func (a *Activities) loadNode(ctx context.Context, ident string) (*node.Node, error) {
	n, err := a.Store.Get(ctx, ident)
	if errors.Is(err, store.ErrNotFound) {
		return nil, temporal.NewNonRetryableApplicationError(fmt.Sprintf("Node %s could not be found.", ident), ErrNodeNotFound, nil)
	}
	if err != nil {
		return nil, temporal.NewApplicationError(err.Error(), ErrStore)
	}
	return n, nil
}

// powerManager returns the node's BMC client.
func (a *Activities) powerManager(n *node.Node) (bmc.PowerManager, error) {
	if err := a.serves(n.ConductorGroup, n.Driver); err != nil {
		return nil, err
	}
	pm, err := a.BMCs.For(n)
	if err != nil {
		return nil, bmcError(err)
	}
	return pm, nil
}

// ErrWrongGroup is the type of the refusal of an activity asked to reach
// the BMC of a node of another conductor group: its details name the
// queue of the node's group, where the workflow sends the activity again.
const ErrWrongGroup = "WrongConductorGroup"

// Misrouted names, in the details of an ErrWrongGroup refusal, where the
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
func (a *Activities) serves(group, driver string) error {
	queue := dispatch.Queue(a.BaseQueue, group)
	if queue == a.TaskQueue {
		return nil
	}
	return temporal.NewNonRetryableApplicationError(
		fmt.Sprintf("conductor group %q is served on task queue %s; this worker polls %s and does not reach its BMCs", group, queue, a.TaskQueue),
		ErrWrongGroup, nil, Misrouted{Group: group, Queue: queue, Driver: driver})
}

// AsMisrouted tells where the work refused by serves belongs, if err is
// that refusal.
func AsMisrouted(err error) (Misrouted, bool) {
	var app *temporal.ApplicationError
	var m Misrouted
	if !errors.As(err, &app) || app.Type() != ErrWrongGroup || app.Details(&m) != nil || m.Queue == "" {
		return Misrouted{}, false
	}
	return m, true
}
