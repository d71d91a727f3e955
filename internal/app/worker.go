// Package app wires configuration to running parts: the worker process
// (Temporal worker, store, BMC pool, Nova notifier) and what the starter and
// API share. Mains stay thin; tests build the same worker in-process.
package app

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/rs/zerolog"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/metalpower/metalpower/activities"
	"github.com/metalpower/metalpower/internal/bmc/pool"
	"github.com/metalpower/metalpower/internal/bmc/redfish"
	"github.com/metalpower/metalpower/internal/config"
	"github.com/metalpower/metalpower/internal/logging"
	"github.com/metalpower/metalpower/internal/nova"
	"github.com/metalpower/metalpower/internal/store"
	"github.com/metalpower/metalpower/internal/temporalconn"
	"github.com/metalpower/metalpower/workflows"
)

// StopTimeout is how long running activities get to finish on shutdown;
// the rest are retried on another worker.
const StopTimeout = 30 * time.Second

// Worker is a running metalpower worker and what it owns.
type Worker struct {
	Client client.Client
	Store  store.Store
	Pool   *pool.Pool
	worker worker.Worker
	log    zerolog.Logger
	owns   bool // Client was dialled here
}

// WorkerOptions lets tests inject parts; zero values are built from config.
type WorkerOptions struct {
	Client client.Client
	Store  store.Store
	Pool   *pool.Pool
	// Nova replaces the notifier built from [nova] (tests).
	Nova activities.Notifier
	// NoSchedules leaves the sync schedules alone (tests, benchmarks).
	NoSchedules bool
}

// NewWorker connects to Temporal and the node store, makes sure the search
// attributes exist and registers every workflow and activity. Call Start
// or Run, then Close.
func NewWorker(ctx context.Context, cfg config.Config, log zerolog.Logger, opts WorkerOptions) (*Worker, error) {
	w := &Worker{Client: opts.Client, Store: opts.Store, Pool: opts.Pool, log: log}
	var err error
	if w.Client == nil {
		if w.Client, err = temporalconn.Dial(ctx, cfg.Temporal, logging.NewTemporalLogger(log)); err != nil {
			return nil, err
		}
		w.owns = true
	}
	if err := temporalconn.EnsureSearchAttributes(ctx, w.Client, cfg.Temporal.Namespace, workflows.SearchAttributes...); err != nil {
		w.Close()
		return nil, err
	}
	if w.Store == nil {
		if w.Store, err = store.Open(ctx, cfg.Database.URL); err != nil {
			w.Close()
			return nil, err
		}
	}
	if w.Pool == nil {
		w.Pool = pool.New(PoolOptions(cfg))
	}
	acts := &activities.Activities{
		Store: w.Store, BMCs: w.Pool, Conductor: cfg.Conductor, IPMI: cfg.IPMI,
		Temporal: w.Client, TaskQueue: cfg.Temporal.TaskQueue,
	}
	acts.Nova, acts.NovaDisabled = novaNotifier(cfg.Nova, opts.Nova, log)

	w.worker = worker.New(w.Client, cfg.Temporal.TaskQueue, worker.Options{
		WorkerStopTimeout: StopTimeout,
		// A sync pass runs up to 100 per-node syncs and their Nova
		// notifiers at once: two pollers (the default) would queue them.
		MaxConcurrentWorkflowTaskPollers: 8,
		MaxConcurrentActivityTaskPollers: 4,
	})
	Register(w.worker, acts)
	if !opts.NoSchedules {
		if err := ReconcileSchedules(ctx, w.Client, cfg); err != nil {
			w.Close()
			return nil, err
		}
	}
	return w, nil
}

// PoolOptions sizes the BMC pool from the configuration.
func PoolOptions(cfg config.Config) pool.Options {
	return pool.Options{
		IPMIMinCommandInterval: time.Duration(cfg.IPMI.MinCommandInterval) * time.Second,
		// One Redfish service may manage many of a pass's systems.
		Redfish: redfish.Options{
			MaxConcurrentRequests:   max(4, cfg.Conductor.SyncPowerStateWorkers),
			PowerOnConflictRetries:  cfg.Redfish.PowerOnConflictRetryAttempts,
			PowerOnConflictInterval: time.Duration(cfg.Redfish.PowerOnConflictRetryInterval) * time.Second,
		},
	}
}

// Register adds every workflow and activity to a worker (also used by
// replay tests).
func Register(r worker.Registry, acts *activities.Activities) {
	r.RegisterWorkflowWithOptions(workflows.PowerChange, workflow.RegisterOptions{Name: workflows.PowerChangeWorkflow})
	r.RegisterWorkflowWithOptions(workflows.NovaNotify, workflow.RegisterOptions{Name: activities.NovaNotifyWorkflow})
	r.RegisterWorkflowWithOptions(workflows.PowerSync, workflow.RegisterOptions{Name: workflows.PowerSyncWorkflow})
	r.RegisterWorkflowWithOptions(workflows.NodePowerSync, workflow.RegisterOptions{Name: workflows.NodePowerSyncWorkflow})
	r.RegisterWorkflowWithOptions(workflows.PowerFailureRecovery, workflow.RegisterOptions{Name: workflows.PowerFailureRecoveryWorkflow})
	r.RegisterActivity(acts)
}

// novaNotifier builds the Nova client, or says once why notifications
// will not be sent.
func novaNotifier(cfg config.Nova, injected activities.Notifier, log zerolog.Logger) (activities.Notifier, string) {
	if !cfg.SendPowerNotifications {
		return nil, activities.NovaDisabledState
	}
	if injected != nil {
		return injected, ""
	}
	n, err := nova.New(cfg, nova.Options{})
	if err != nil {
		reason := "not sent: " + err.Error()
		if errors.Is(err, nova.ErrNotConfigured) {
			log.Warn().Err(err).Msg("Nova power notifications are on but [nova] has no credentials: power changes will not be sent to Nova, which falls back to its own power sync")
		} else {
			log.Error().Err(err).Msg("cannot set up Nova notifications")
		}
		return nil, reason
	}
	return n, ""
}

// Start begins polling; it returns at once.
func (w *Worker) Start() error {
	if err := w.worker.Start(); err != nil {
		return fmt.Errorf("start worker: %w", err)
	}
	return nil
}

// Run polls until ctx ends, then stops gracefully.
func (w *Worker) Run(ctx context.Context) error {
	if err := w.Start(); err != nil {
		return err
	}
	w.log.Info().Msg("worker started")
	<-ctx.Done()
	w.log.Info().Dur("stop_timeout", StopTimeout).Msg("stopping: running activities get time to finish")
	w.worker.Stop()
	return nil
}

// Stop stops polling (after Start), letting running activities finish.
func (w *Worker) Stop() { w.worker.Stop() }

// Close releases what NewWorker opened.
func (w *Worker) Close() {
	if w.Pool != nil {
		w.Pool.Close()
	}
	if w.Store != nil {
		w.Store.Close()
	}
	if w.owns && w.Client != nil {
		w.Client.Close()
	}
}
