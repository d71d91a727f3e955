// Package dispatch is the one way work reaches a node's conductor, as
// Ironic's conductor/rpcapi.py (get_topic_for) is for Ironic's API: the
// node's lock (the workflow ID every workflow acting on the node runs
// under), the task queue of its conductor group and whether a live worker
// polls it, the options every start under the lock uses, and the two
// refusals, LockedError and NoWorkerError, each worded once.
//
// A conductor group is a BMC network segment (Ironic's conductor_group):
// only the workers of a node's group may talk to its BMC. Workflows may
// run on any worker; every activity that talks to a BMC runs on the queue
// of the node's group (docs/design.md).
package dispatch
