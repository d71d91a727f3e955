// Package operator carries out what an operator asks of metalpower, for
// every front end (the REST API, the starter CLI, the demo, the benches
// and the tests): a power change, a provision move, maintenance, the sync
// schedules, a worker deployment's builds. It checks the request, records
// what must be recorded before anyone is answered, and starts the workflow
// on the conductor group that serves the node; it never runs workflows.
//
// It is the front ends' side of the conductor, as Ironic's
// conductor/rpcapi.py is ironic-api's: internal/conductor is the
// conductor itself (Ironic's conductor/manager.py), the worker that runs
// the workflows and activities.
package operator
