//go:build tools

// Package tools pins the temporal CLI (dev server with Web UI) in its own
// module, so its dependencies stay out of the product's go.mod.
package tools

import _ "github.com/temporalio/cli/cmd/temporal"
