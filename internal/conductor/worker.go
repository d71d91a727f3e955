// Package conductor is the conductor, as Ironic's conductor/manager.py:
// the worker process that runs metalpower's workflows and activities,
// wired from configuration (Temporal worker, store, BMC pool, Nova
// notifier, schedules, metrics). The API and the CLI reach it through
// internal/operator. Mains stay thin; tests build the same worker
// in-process.
package conductor

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/interceptor"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/metalpower/metalpower/activities"
	"github.com/metalpower/metalpower/internal/bmc/pool"
	"github.com/metalpower/metalpower/internal/codec"
	"github.com/metalpower/metalpower/internal/config"
	"github.com/metalpower/metalpower/internal/dispatch"
	"github.com/metalpower/metalpower/internal/logging"
	"github.com/metalpower/metalpower/internal/metrics"
	"github.com/metalpower/metalpower/internal/nova"
	"github.com/metalpower/metalpower/internal/operator"
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
	// Metrics is nil when the worker records none.
	Metrics *metrics.Metrics
	worker  worker.Worker
	log     zerolog.Logger
	// base is the dialled or injected client Client derives from when it
	// was made here to carry the SDK's metrics handler.
	base    client.Client
	owns    bool // base (or Client) was dialled here
	derived bool // Client was made here from base
	ownsMet bool // Metrics was made here
	http    *http.Server
	addr    string
	started atomic.Bool
	// version is the Worker Deployment Version, when versioning is on.
	version     worker.WorkerDeploymentVersion
	stopPromote context.CancelFunc
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
	// MetricsAddr, when set (":9090"), serves /metrics, /healthz and
	// /readyz there (worker -metrics-addr).
	MetricsAddr string
	// MetricsBestEffort logs, instead of failing, a MetricsAddr that
	// cannot be listened on (the worker's default address, which two
	// workers on one host would share).
	MetricsBestEffort bool
	// Metrics replaces the metrics built when MetricsAddr is set (tests);
	// with neither, the worker records no metrics.
	Metrics *metrics.Metrics
	// Workflows replaces workflows.Types() (a test rolling out a changed
	// workflow).
	Workflows []workflows.WorkflowType
}

// NewWorker connects to Temporal and the node store, makes sure the search
// attributes exist and registers every workflow and activity. Call Start
// or Run, then Close.
func NewWorker(ctx context.Context, cfg config.Config, log zerolog.Logger, opts WorkerOptions) (*Worker, error) {
	w := &Worker{Client: opts.Client, Store: opts.Store, Pool: opts.Pool, Metrics: opts.Metrics, log: log}
	if w.Metrics == nil && opts.MetricsAddr != "" {
		m, err := metrics.New()
		if err != nil {
			return nil, fmt.Errorf("metrics: %w", err)
		}
		w.Metrics, w.ownsMet = m, true
	}
	var err error
	if w.Client == nil {
		if w.Client, err = temporalconn.Dial(ctx, cfg.Temporal, logging.NewTemporalLogger(log)); err != nil {
			w.Close()
			return nil, err
		}
		w.owns = true
	}
	if w.Metrics != nil {
		w.withSDKMetrics(cfg, log)
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
		popts := pool.FromConfig(cfg)
		popts.SharedPace = w.Store // the spacing holds across workers and API processes
		if w.Metrics != nil {
			popts.Observer = w.Metrics
		}
		w.Pool = pool.New(popts)
	}
	// The worker serves one conductor group: its own task queue.
	queue := dispatch.Queue(cfg.Temporal.TaskQueue, cfg.Conductor.ConductorGroup)
	queues := activities.Queues{TaskQueue: queue, BaseQueue: cfg.Temporal.TaskQueue, Temporal: w.Client}
	notify := &activities.Nova{Temporal: w.Client, TaskQueue: queue, Metrics: w.Metrics}
	notify.Notifier, notify.Disabled = novaNotifier(cfg.Nova, opts.Nova, log)
	acts := []any{
		&activities.Power{Store: w.Store, BMCs: w.Pool, Conductor: cfg.Conductor, IPMI: cfg.IPMI, Queues: queues, Nova: notify},
		notify,
		&activities.SyncPass{Store: w.Store, BMCs: w.Pool, Conductor: cfg.Conductor, Temporal: w.Client, Queues: queues, Metrics: w.Metrics},
		&activities.NodeSync{Store: w.Store, BMCs: w.Pool, Conductor: cfg.Conductor, IPMI: cfg.IPMI, Queues: queues, Nova: notify, Metrics: w.Metrics},
		&activities.Recovery{Store: w.Store, BMCs: w.Pool, Conductor: cfg.Conductor, Queues: queues, Nova: notify, Metrics: w.Metrics},
		&activities.Provision{Store: w.Store, BMCs: w.Pool, Queues: queues},
	}

	dopts, err := deploymentOptions(cfg.Temporal)
	if err != nil {
		w.Close()
		return nil, err
	}
	w.version = dopts.Version
	wopts := worker.Options{
		DeploymentOptions: dopts,
		WorkerStopTimeout: StopTimeout,
		// A sync pass starts up to 100 per-node syncs at once. A task
		// queue has 4 partitions; with 8 pollers, tasks landing on a
		// partition with no poller waiting were picked up 2 and 4 s late
		// (10,000 nodes, 1% drift: passes of 3.2-6.8 s; with 32, 2.7-2.8 s).
		MaxConcurrentWorkflowTaskPollers: 32,
		MaxConcurrentActivityTaskPollers: 4,
	}
	if w.Metrics != nil {
		wopts.Interceptors = []interceptor.WorkerInterceptor{&resultMetrics{m: w.Metrics, log: log,
			interval: time.Duration(cfg.Conductor.SyncPowerStateInterval) * time.Second}}
	}
	w.worker = worker.New(w.Client, queue, wopts)
	workflows.Register(w.worker, opts.Workflows, acts...)
	if !opts.NoSchedules {
		drift, err := ensureSchedules(ctx, w.Client, cfg, log)
		if err != nil {
			w.Close()
			return nil, err
		}
		for _, d := range drift {
			log.Warn().Str("difference", d).Msg("the schedules disagree with this worker's configuration and are left as they are; " +
				"the deployment's schedules change only with `starter sync apply` (run with the configuration they should follow)")
		}
	}
	if opts.MetricsAddr != "" {
		if err := w.serveMetrics(opts.MetricsAddr, cfg.Debug.Pprof); err != nil {
			if !opts.MetricsBestEffort {
				w.Close()
				return nil, err
			}
			log.Error().Err(err).Msg("not serving /metrics, /healthz and /readyz (set -metrics-addr)")
		}
	}
	return w, nil
}

// ensureSchedules is operator.EnsureSchedules, retried for up to a minute
// while the server is still coming up (a fresh cluster's frontend can
// time out while its history shards are being acquired), so that workers
// started together with the server do not exit.
func ensureSchedules(ctx context.Context, c client.Client, cfg config.Config, log zerolog.Logger) ([]string, error) {
	deadline := time.Now().Add(time.Minute)
	for wait := time.Second; ; wait = min(2*wait, 10*time.Second) {
		drift, err := operator.EnsureSchedules(ctx, c, cfg)
		if err == nil || !transient(err) || time.Now().After(deadline) {
			return drift, err
		}
		log.Warn().Err(err).Dur("retry_in", wait).Msg("the schedules cannot be checked yet; retrying")
		select {
		case <-ctx.Done():
			return drift, err
		case <-time.After(wait):
		}
	}
}

// transient reports whether err is the server not answering (yet).
func transient(err error) bool {
	var unavailable *serviceerror.Unavailable
	var deadline *serviceerror.DeadlineExceeded
	return errors.Is(err, context.DeadlineExceeded) || errors.As(err, &unavailable) || errors.As(err, &deadline)
}

// withSDKMetrics gives the worker a client of its own on the same
// connection whose MetricsHandler exports the SDK's metrics (requests,
// polls, workflow and activity tasks) through w.Metrics; an injected
// client keeps whatever handler it was dialled with. A client that cannot
// be derived (a wrapper) is used as is, without SDK metrics.
func (w *Worker) withSDKMetrics(cfg config.Config, log zerolog.Logger) {
	// A derived client gets the SDK's default converters unless told:
	// give it the payload codec too (already validated when dialling).
	dc, fc, _ := codec.Converters(cfg.Temporal.PayloadEncryptionKeys)
	c, err := client.NewClientFromExisting(w.Client, client.Options{
		Namespace:        cfg.Temporal.Namespace,
		Logger:           logging.NewTemporalLogger(log),
		MetricsHandler:   w.Metrics.TemporalHandler(),
		DataConverter:    dc,
		FailureConverter: fc,
	})
	if err != nil {
		log.Warn().Err(err).Msg("Temporal SDK metrics are off: cannot derive a client with a metrics handler")
		return
	}
	w.base, w.Client, w.derived = w.Client, c, true
}

// serveMetrics listens on addr for /metrics, /healthz and /readyz, and
// /debug/pprof/ with pprof. Ready means: polling (Start was called),
// Temporal answering its health check and the node store answering a
// query.
func (w *Worker) serveMetrics(addr string, pprof bool) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("metrics address %s: %w", addr, err)
	}
	w.addr = ln.Addr().String()
	mux := w.Metrics.Mux(
		metrics.Check{Name: "worker", Run: func(context.Context) error {
			if !w.started.Load() {
				return errors.New("not polling")
			}
			return nil
		}},
		metrics.Check{Name: "temporal", Run: func(ctx context.Context) error {
			_, err := w.Client.CheckHealth(ctx, &client.CheckHealthRequest{})
			return err
		}},
		metrics.Check{Name: "store", Run: func(ctx context.Context) error {
			_, err := w.Store.List(ctx, store.Query{Limit: 1})
			return err
		}},
	)
	if pprof {
		mux.Handle("/debug/pprof/", metrics.Pprof())
	}
	w.http = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := w.http.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			w.log.Error().Err(err).Msg("metrics listener stopped")
		}
	}()
	w.log.Info().Str("address", w.addr).Bool("pprof", pprof).Msg("serving /metrics, /healthz and /readyz")
	return nil
}

// MetricsAddr is where /metrics is served ("" when it is not), with the
// port chosen when MetricsAddr asked for port 0.
func (w *Worker) MetricsAddr() string { return w.addr }

// resultMetrics records what finished sync passes and Nova notifiers did,
// from their results. Workflows themselves stay free of side effects: a
// workflow's result is only produced once for real, and IsReplaying skips
// it when a history is replayed (as the SDK's replay-aware handler does).
type resultMetrics struct {
	interceptor.WorkerInterceptorBase
	m        *metrics.Metrics
	log      zerolog.Logger
	interval time.Duration // [conductor] sync_power_state_interval
}

func (r *resultMetrics) InterceptWorkflow(ctx workflow.Context, next interceptor.WorkflowInboundInterceptor) interceptor.WorkflowInboundInterceptor {
	return &workflowResultMetrics{WorkflowInboundInterceptorBase: interceptor.WorkflowInboundInterceptorBase{Next: next}, r: r}
}

type workflowResultMetrics struct {
	interceptor.WorkflowInboundInterceptorBase
	r *resultMetrics
}

func (i *workflowResultMetrics) ExecuteWorkflow(ctx workflow.Context, in *interceptor.ExecuteWorkflowInput) (any, error) {
	res, err := i.Next.ExecuteWorkflow(ctx, in)
	if !workflow.IsReplaying(ctx) {
		recordResult(i.r.m, res, err)
		if slow, d := SlowPass(res, err, i.r.interval); slow {
			i.r.log.Warn().Dur("runtime", d).Dur("sync_power_state_interval", i.r.interval).Msg(SlowPassWarning)
		}
	}
	return res, err
}

// SlowPassWarning is Ironic's warning for a pass that ran longer than
// three sync intervals.
const SlowPassWarning = "The power state sync operation runtime is 3x the [conductor]sync_power_state_interval setting. " +
	"This is not ideal. You may need to tune the [conductor]sync_power_state_workers and [conductor]periodic_max_workers settings, " +
	"or ultimately add more conductors to the ironic deployment."

// SlowPass reports whether a finished workflow is a sync pass that ran
// longer than three intervals (Ironic's _sync_power_states check), and
// how long it ran.
func SlowPass(res any, err error, interval time.Duration) (bool, time.Duration) {
	r, ok := res.(workflows.PowerSyncResult)
	if !ok || err != nil || interval <= 0 {
		return false, 0
	}
	d := time.Duration(r.Duration * float64(time.Second))
	return d > 3*interval, d
}

// recordResult turns a finished workflow's result into domain metrics.
func recordResult(m *metrics.Metrics, res any, err error) {
	switch r := res.(type) {
	case workflows.PowerSyncResult:
		if err != nil {
			return // continued as new or failed: the final run reports the pass
		}
		m.SyncPass(time.Duration(r.Duration*float64(time.Second)), map[string]int{
			metrics.SyncChecked:            r.Checked,
			metrics.SyncInSync:             r.InSync,
			metrics.SyncCorrected:          r.Corrected,
			metrics.SyncUnreadable:         r.Unreadable,
			metrics.SyncSkipped:            r.Skipped,
			metrics.SyncSkippedLocked:      r.SkippedLocked,
			metrics.SyncEnteredMaintenance: r.EnteredMaintenance,
			metrics.SyncForceFailed:        r.ForceFailed,
			metrics.SyncNoWorker:           r.NoWorker,
		})
	case workflows.NovaNotifyResult:
		// Each run (also one that continues as new) counts its own.
		m.NovaNotification(metrics.NovaExpired, r.Expired)
	}
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
	w.started.Store(true)
	if w.version.DeploymentName != "" && w.stopPromote == nil {
		ctx, cancel := context.WithCancel(context.Background())
		w.stopPromote = cancel
		go promoteIfFirst(ctx, w.Client, w.version, w.log)
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
	w.Stop()
	return nil
}

// Stop stops polling (after Start), letting running activities finish.
func (w *Worker) Stop() {
	if w.stopPromote != nil {
		w.stopPromote()
	}
	w.started.Store(false)
	w.worker.Stop()
}

// Close releases what NewWorker opened.
func (w *Worker) Close() {
	if w.http != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		w.http.Shutdown(ctx)
		cancel()
	}
	if w.Pool != nil {
		w.Pool.Close()
	}
	if w.Store != nil {
		w.Store.Close()
	}
	if w.derived {
		w.Client.Close()
		if w.owns {
			w.base.Close()
		}
	} else if w.owns && w.Client != nil {
		w.Client.Close()
	}
	if w.ownsMet {
		w.Metrics.Shutdown(context.Background())
	}
}
