// Package metrics exposes metalpower's Prometheus metrics: the Temporal
// SDK's own (through go.temporal.io/sdk/contrib/opentelemetry) and the
// domain's (sync passes, BMC calls, Nova notifications, maintenance, HTTP
// requests), all through one OpenTelemetry MeterProvider whose Prometheus
// exporter writes to a registry of its own, so two Metrics never share
// series (tests build one each).
//
// Every recording method is safe on a nil *Metrics: it does nothing, so
// code paths built without metrics need no checks.
package metrics

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/attribute"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/sdk/instrumentation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.temporal.io/sdk/client"
	temporalotel "go.temporal.io/sdk/contrib/opentelemetry"

	"github.com/metalpower/metalpower/internal/bmc"
)

// Scope names of the two meters.
const (
	domainScope   = "metalpower"
	temporalScope = "temporal-sdk"
)

// Bucket boundaries, in seconds.
var (
	// LatencyBuckets suit BMC calls, HTTP requests and SDK requests.
	LatencyBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}
	// PassBuckets suit whole sync passes.
	PassBuckets = []float64{0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600}
	// QueueAgeBuckets suit the time from a power change to Nova hearing of it
	// (seconds normally, up to the notifier's hour-long retry horizon).
	QueueAgeBuckets = []float64{0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 1800, 3600}
)

// Sync results (label result of metalpower_sync_nodes_total).
const (
	SyncChecked            = "checked"
	SyncInSync             = "in_sync"
	SyncCorrected          = "corrected"
	SyncUnreadable         = "unreadable"
	SyncSkipped            = "skipped"
	SyncSkippedLocked      = "skipped_locked"
	SyncEnteredMaintenance = "entered_maintenance"
	SyncForceFailed        = "force_failed"
	// SyncNoWorker: nodes left unchecked, no live worker serving their
	// conductor group.
	SyncNoWorker = "no_worker"
)

// Nova outcomes (label outcome of metalpower_nova_notifications_total).
// queued counts hand-offs to an instance's notifier workflow; the others
// are what finally became of a notification.
const (
	NovaDelivered = "delivered"
	NovaRejected  = "rejected"
	NovaQueued    = "queued"
	NovaExpired   = "expired"
	NovaNotSent   = "not_sent"
)

// MaintenancePowerFailure is the reason label of a node the sync put in
// maintenance after too many failed or mismatched reads.
const MaintenancePowerFailure = "power_failure"

// BMC call outcomes (label outcome of metalpower_bmc_call_duration_seconds).
const (
	OutcomeOK          = "ok"
	OutcomeTransient   = "transient"
	OutcomeAuth        = "auth"
	OutcomeUnsupported = "unsupported"
	OutcomeConfig      = "config"
	OutcomeError       = "error"
)

// Metrics owns the MeterProvider, the registry and the domain instruments.
type Metrics struct {
	provider *sdkmetric.MeterProvider
	registry *prometheus.Registry
	temporal client.MetricsHandler

	syncPassDuration   metric.Float64Histogram
	syncNodes          metric.Int64Counter
	outOfSync          atomic.Int64
	bmcCall            metric.Float64Histogram
	novaNotifications  metric.Int64Counter
	novaQueueAge       metric.Float64Histogram
	novaErrors         metric.Int64Counter
	maintenanceEntries metric.Int64Counter
	recoveries         metric.Int64Counter
	httpRequests       metric.Int64Counter
	httpDuration       metric.Float64Histogram
}

// New builds a MeterProvider exporting to a fresh Prometheus registry
// (with the Go runtime and process collectors) and the domain instruments.
func New() (*Metrics, error) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	exp, err := otelprom.New(otelprom.WithRegisterer(reg), otelprom.WithoutScopeInfo(), otelprom.WithoutTargetInfo())
	if err != nil {
		return nil, err
	}
	provider := sdkmetric.NewMeterProvider(
		sdkmetric.WithReader(exp),
		// The SDK's timers are in seconds; OpenTelemetry's default buckets
		// are made for milliseconds.
		sdkmetric.WithView(sdkmetric.NewView(
			sdkmetric.Instrument{Kind: sdkmetric.InstrumentKindHistogram, Scope: instrumentation.Scope{Name: temporalScope}},
			sdkmetric.Stream{Aggregation: sdkmetric.AggregationExplicitBucketHistogram{Boundaries: LatencyBuckets}},
		)),
	)
	m := &Metrics{provider: provider, registry: reg}
	m.temporal = temporalotel.NewMetricsHandler(temporalotel.MetricsHandlerOptions{
		Meter: provider.Meter(temporalScope),
		// Counters are monotonic, so Prometheus sees counters (_total),
		// not gauges.
		UseMonotonicCounters: true,
		// The default panics on an instrument error; a metric is never
		// worth a crashed worker.
		OnError: func(error) {},
	})
	if err := m.instruments(provider.Meter(domainScope)); err != nil {
		provider.Shutdown(context.Background())
		return nil, err
	}
	return m, nil
}

// MustNew is New for callers that cannot go on without metrics; New fails
// only on a programming error.
func MustNew() *Metrics {
	m, err := New()
	if err != nil {
		panic(err)
	}
	return m
}

func (m *Metrics) instruments(meter metric.Meter) error {
	var errs []error
	f64h := func(name, desc string, buckets []float64) metric.Float64Histogram {
		h, err := meter.Float64Histogram(name, metric.WithDescription(desc), metric.WithUnit("s"), metric.WithExplicitBucketBoundaries(buckets...))
		errs = append(errs, err)
		return h
	}
	i64c := func(name, desc string) metric.Int64Counter {
		c, err := meter.Int64Counter(name, metric.WithDescription(desc))
		errs = append(errs, err)
		return c
	}
	// Names are OpenTelemetry style; the exporter adds the Prometheus
	// suffixes (_seconds from the unit, _total for counters).
	m.syncPassDuration = f64h("metalpower.sync.pass.duration", "Duration of finished power sync passes.", PassBuckets)
	m.syncNodes = i64c("metalpower.sync.nodes", "Nodes handled by finished power sync passes, by result.")
	_, err := meter.Int64ObservableGauge("metalpower.nodes.out_of_sync",
		metric.WithDescription("Nodes whose hardware did not match their record (or could not be read) in the latest sync pass."),
		metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
			o.Observe(m.outOfSync.Load())
			return nil
		}))
	errs = append(errs, err)
	m.bmcCall = f64h("metalpower.bmc.call.duration", "Latency of BMC calls, by driver, operation and outcome.", LatencyBuckets)
	m.novaNotifications = i64c("metalpower.nova.notifications", "Nova power-update notifications, by outcome.")
	m.novaQueueAge = f64h("metalpower.nova.notification.queue_age", "Time from a power change to Nova accepting its notification.", QueueAgeBuckets)
	m.novaErrors = i64c("metalpower.nova.delivery.errors", "Nova deliveries that failed transiently and will be retried.")
	m.maintenanceEntries = i64c("metalpower.maintenance.entries", "Nodes put in maintenance by metalpower, by reason.")
	m.recoveries = i64c("metalpower.maintenance.recoveries", "Nodes taken out of power-failure maintenance by the recovery pass.")
	m.httpRequests = i64c("metalpower.api.requests", "API requests, by method, route pattern and status.")
	m.httpDuration = f64h("metalpower.api.request.duration", "API request latency, by method and route pattern.", LatencyBuckets)
	return errors.Join(errs...)
}

// Handler serves the registry in Prometheus' text (or OpenMetrics) format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{EnableOpenMetrics: true})
}

// Registry is where every series is collected (tests gather from it).
func (m *Metrics) Registry() *prometheus.Registry { return m.registry }

// TemporalHandler is the Temporal SDK's metrics handler (client.Options
// MetricsHandler): client requests, workers, workflows and activities.
func (m *Metrics) TemporalHandler() client.MetricsHandler {
	if m == nil {
		return nil
	}
	return m.temporal
}

// Shutdown flushes and stops the MeterProvider.
func (m *Metrics) Shutdown(ctx context.Context) error {
	if m == nil {
		return nil
	}
	return m.provider.Shutdown(ctx)
}

// SyncPass records a finished pass: its duration and its per-result node
// counts (zero counts still create the series, so every result shows).
func (m *Metrics) SyncPass(d time.Duration, counts map[string]int) {
	if m == nil {
		return
	}
	ctx := context.Background()
	m.syncPassDuration.Record(ctx, d.Seconds())
	for result, n := range counts {
		m.syncNodes.Add(ctx, int64(n), metric.WithAttributes(attribute.String("result", result)))
	}
}

// NodesOutOfSync sets how many nodes the latest sync pass found out of sync.
func (m *Metrics) NodesOutOfSync(n int) {
	if m != nil {
		m.outOfSync.Store(int64(n))
	}
}

// AddNodesOutOfSync adds a later page's out-of-sync nodes to the pass's.
func (m *Metrics) AddNodesOutOfSync(n int) {
	if m != nil {
		m.outOfSync.Add(int64(n))
	}
}

// ObserveBMCCall records one BMC call (pool.Observer).
func (m *Metrics) ObserveBMCCall(driver, op string, d time.Duration, err error) {
	if m == nil {
		return
	}
	m.bmcCall.Record(context.Background(), d.Seconds(), metric.WithAttributes(
		attribute.String("driver", driver), attribute.String("op", op), attribute.String("outcome", Outcome(err))))
}

// Outcome classifies a BMC call's error by bmc.Kind.
func Outcome(err error) string {
	if err == nil {
		return OutcomeOK
	}
	if k, ok := bmc.KindOf(err); ok {
		switch k {
		case bmc.Transient:
			return OutcomeTransient
		case bmc.Auth:
			return OutcomeAuth
		case bmc.Unsupported:
			return OutcomeUnsupported
		case bmc.Config:
			return OutcomeConfig
		}
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return OutcomeTransient
	}
	return OutcomeError
}

// NovaNotification counts n notifications with an outcome (Nova* constants).
func (m *Metrics) NovaNotification(outcome string, n int) {
	if m == nil || n <= 0 {
		return
	}
	m.novaNotifications.Add(context.Background(), int64(n), metric.WithAttributes(attribute.String("outcome", outcome)))
}

// NovaDelivered records a delivered notification and how long after the
// change Nova heard of it (skipped when the change time is unknown).
func (m *Metrics) NovaDelivered(changedAt time.Time) {
	if m == nil {
		return
	}
	m.NovaNotification(NovaDelivered, 1)
	if !changedAt.IsZero() {
		m.novaQueueAge.Record(context.Background(), max(0, time.Since(changedAt).Seconds()))
	}
}

// NovaDeliveryError counts a transient delivery failure (to be retried).
func (m *Metrics) NovaDeliveryError() {
	if m != nil {
		m.novaErrors.Add(context.Background(), 1)
	}
}

// MaintenanceEntered counts a node metalpower put in maintenance.
func (m *Metrics) MaintenanceEntered(reason string) {
	if m != nil {
		m.maintenanceEntries.Add(context.Background(), 1, metric.WithAttributes(attribute.String("reason", reason)))
	}
}

// Recovered counts a node taken out of power-failure maintenance.
func (m *Metrics) Recovered() {
	if m != nil {
		m.recoveries.Add(context.Background(), 1)
	}
}

// HTTPRequest records one API request by its route pattern (never the raw
// path, which would make a series per node).
func (m *Metrics) HTTPRequest(method, route string, status int, d time.Duration) {
	if m == nil {
		return
	}
	ctx := context.Background()
	m.httpRequests.Add(ctx, 1, metric.WithAttributes(attribute.String("method", method),
		attribute.String("route", route), attribute.String("status", strconv.Itoa(status))))
	m.httpDuration.Record(ctx, d.Seconds(), metric.WithAttributes(attribute.String("method", method), attribute.String("route", route)))
}
