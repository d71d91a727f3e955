// Package node holds the node record: a bare-metal server as Ironic knows it,
// with Ironic's field names and values so operators and tools recognise them.
package node

import (
	"maps"
	"slices"
	"time"
)

// Power states as Ironic stores and reports them (ironic/common/states.py).
// The empty string stands for Ironic's NOSTATE (JSON null).
const (
	PowerOn    = "power on"
	PowerOff   = "power off"
	PowerError = "error"
)

// Power actions a client may request. Reboots and soft states are actions
// only: they are never stored as power_state.
const (
	Reboot       = "rebooting"
	SoftReboot   = "soft rebooting"
	SoftPowerOff = "soft power off"
)

// Targets lists every power action a client may request, in Ironic's order.
var Targets = []string{PowerOn, PowerOff, Reboot, SoftReboot, SoftPowerOff}

// IsTarget reports whether s is a power action a client may request.
func IsTarget(s string) bool {
	return slices.Contains(Targets, s)
}

// FinalState is the state a power action ends in, as Ironic's
// _calculate_target_state: on for on and both reboots, off for both offs,
// "" for anything else.
func FinalState(target string) string {
	switch target {
	case PowerOn, Reboot, SoftReboot:
		return PowerOn
	case PowerOff, SoftPowerOff:
		return PowerOff
	}
	return ""
}

// Provision states (the subset metalpower uses, with Ironic's values).
const (
	Enroll       = "enroll"
	Verifying    = "verifying"
	Manageable   = "manageable"
	Available    = "available"
	Active       = "active"
	Adopting     = "adopting"
	AdoptFailed  = "adopt failed"
	DeployWait   = "wait call-back"
	Deploying    = "deploying"
	DeployFailed = "deploy failed"
	Cleaning     = "cleaning"
	CleanWait    = "clean wait"
	CleanFailed  = "clean failed"
	Inspecting   = "inspecting"
	InspectFail  = "inspect failed"
	RescueFailed = "rescue failed"
	Unrescue     = "unrescue failed"
	ServiceFail  = "service failed"
	Error        = "error"
)

// ProvisionStates lists every provision state a node may be in.
var ProvisionStates = []string{
	Enroll, Verifying, Manageable, Available, Active, Adopting, AdoptFailed,
	DeployWait, Deploying, DeployFailed, Cleaning, CleanWait, CleanFailed,
	Inspecting, InspectFail, RescueFailed, Unrescue, ServiceFail, Error,
}

// SyncExcludedStates are the provision states the periodic power sync skips
// (Ironic's manager.SYNC_EXCLUDED_STATES).
var SyncExcludedStates = []string{DeployWait, CleanWait, Enroll, AdoptFailed}

// FailureStates are the provision states in which a power change keeps
// last_error instead of clearing it (Ironic's states.FAILURE_STATES).
var FailureStates = []string{DeployFailed, CleanFailed, InspectFail, RescueFailed, Unrescue, AdoptFailed, ServiceFail}

// Faults (ironic/common/faults.py).
const (
	FaultPowerFailure = "power failure"
	FaultCleanFailure = "clean failure"
	FaultRescueAbort  = "rescue abort failure"
	FaultService      = "service failure"
)

// Node is one bare-metal server. Optional string fields use "" for Ironic's
// null; the store writes them as SQL NULL.
type Node struct {
	// ID is the store's row number: creation order, for keyset paging.
	ID                int64
	UUID              string
	Name              string
	Driver            string
	DriverInfo        DriverInfo
	PowerState        string
	TargetPowerState  string
	ProvisionState    string
	Maintenance       bool
	MaintenanceReason string
	Fault             string
	LastError         string
	InstanceUUID      string
	DisablePowerOff   bool
	Extra             map[string]any
	// ResourceClass, Properties and Traits are what Nova's ironic driver
	// reads for its resource tracker; metalpower only stores them.
	ResourceClass string
	Properties    map[string]any
	Traits        []string
	// ConductorGroup is Ironic's conductor_group: lower case, "" for the
	// default group.
	ConductorGroup string
	// Owner and Lessee are Keystone project IDs, as Ironic's: the project
	// that owns the node and the one it is leased to. The access policy
	// lets their members see and act on it.
	Owner, Lessee string
	// SyncFailures counts consecutive failed power syncs. Ironic keeps this
	// in conductor memory; we keep it with the node so restarts do not reset
	// the road to maintenance.
	SyncFailures int
	// Version increases with every write; updates carry the version they
	// read so a concurrent writer's change is never silently overwritten.
	Version   int64
	CreatedAt time.Time
	UpdatedAt time.Time
}

// Ident returns the name when the node has one, else the UUID: what an
// operator would type.
func (n *Node) Ident() string {
	if n.Name != "" {
		return n.Name
	}
	return n.UUID
}

// Clone returns a deep copy, so callers can change a node read from a shared
// place without touching the original.
func (n *Node) Clone() *Node {
	c := *n
	c.DriverInfo = n.DriverInfo.clone()
	c.Extra = maps.Clone(n.Extra)
	c.Properties = maps.Clone(n.Properties)
	c.Traits = slices.Clone(n.Traits)
	return &c
}

// MarkRequest records the state a requested power change ends in and
// clears last_error: Ironic's change_node_power_state starts a new
// operation for an API or CLI request.
func (n *Node) MarkRequest(final string) {
	n.TargetPowerState, n.LastError = final, ""
}

// MarkTarget records the state a change the sync forces ends in, and
// clears last_error unless the node is in a failure state, as Ironic's
// node_power_action does.
func (n *Node) MarkTarget(final string) {
	n.TargetPowerState = final
	if !n.InFailureState() {
		n.LastError = ""
	}
}

// InFailureState reports whether the provision state is a failure state.
func (n *Node) InFailureState() bool {
	return slices.Contains(FailureStates, n.ProvisionState)
}

// SyncExcluded reports whether the periodic sync skips the node's
// provision state.
func (n *Node) SyncExcluded() bool {
	return slices.Contains(SyncExcludedStates, n.ProvisionState)
}
