//go:build tools

// Package tools pins, in their own module so their dependencies stay out
// of the product's go.mod: the temporal CLI (dev server with Web UI), the
// real Temporal server and its SQL schema tool (the production topology,
// `make cluster`), and the Web UI server. tctl pins itself in tools/tctl.
package tools

import (
	_ "github.com/temporalio/cli/cmd/temporal"
	_ "github.com/temporalio/ui-server/v2/cmd/server"
	_ "go.temporal.io/server/cmd/server"
	_ "go.temporal.io/server/cmd/tools/sql"
)
