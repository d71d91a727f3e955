// Command starter is the operator's CLI: configuration, the node store,
// simulators, and power changes through Temporal.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/metalpower/metalpower/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Main(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
