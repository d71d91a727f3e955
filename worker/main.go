// Command worker runs metalpower's Temporal worker: every workflow and
// activity of its conductor group, on [temporal] task_queue (the default
// group) or task_queue.<[conductor] conductor_group>. SIGINT or SIGTERM
// stops it gracefully.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/metalpower/metalpower/internal/conductor"
	"github.com/metalpower/metalpower/internal/config"
	"github.com/metalpower/metalpower/internal/logging"
)

func main() {
	path := flag.String("config", os.Getenv("METALPOWER_CONFIG"), "configuration file (TOML); env METALPOWER_CONFIG")
	metricsAddr := flag.String("metrics-addr", ":9090", "serve Prometheus /metrics, /healthz and /readyz on this address (\"\" to disable)")
	flag.Parse()
	conductor.TuneGC()
	// The default address is best effort: a second worker on the host
	// runs without it. An address asked for must work.
	explicit := false
	flag.Visit(func(f *flag.Flag) { explicit = explicit || f.Name == "metrics-addr" })
	if err := run(*path, conductor.WorkerOptions{MetricsAddr: *metricsAddr, MetricsBestEffort: !explicit}); err != nil {
		fmt.Fprintln(os.Stderr, "worker:", err)
		os.Exit(1)
	}
}

func run(path string, opts conductor.WorkerOptions) error {
	cfg, err := config.Load(path)
	if err != nil {
		return err
	}
	log, err := logging.New(os.Stderr, cfg.Log.Level, cfg.Log.Format)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	w, err := conductor.NewWorker(ctx, cfg, log, opts)
	if err != nil {
		return err
	}
	defer w.Close()
	return w.Run(ctx)
}
