//go:build tools

// Package tctl pins tctl v1.18.0, the older Temporal command line many
// operators still script against, in a module of its own: its
// dependencies are older than the temporal CLI's, and `go install
// ...@v1.18.0` is refused (its go.mod has replace directives).
package tctl

import _ "github.com/temporalio/tctl/cmd/tctl"
