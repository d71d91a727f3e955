package node

import (
	"encoding/json"
)

// view is a node as Ironic's API shows it: its field names, null for unset
// optional fields, secrets masked.
type view struct {
	UUID              string         `json:"uuid"`
	Name              *string        `json:"name"`
	Driver            string         `json:"driver"`
	DriverInfo        DriverInfo     `json:"driver_info"`
	PowerState        *string        `json:"power_state"`
	TargetPowerState  *string        `json:"target_power_state"`
	ProvisionState    string         `json:"provision_state"`
	Maintenance       bool           `json:"maintenance"`
	MaintenanceReason *string        `json:"maintenance_reason"`
	Fault             *string        `json:"fault"`
	LastError         *string        `json:"last_error"`
	InstanceUUID      *string        `json:"instance_uuid"`
	DisablePowerOff   bool           `json:"disable_power_off"`
	Extra             map[string]any `json:"extra"`
	ResourceClass     *string        `json:"resource_class"`
	Properties        map[string]any `json:"properties"`
	Traits            []string       `json:"traits"`
	ConductorGroup    string         `json:"conductor_group"`
	Owner             *string        `json:"owner"`
	Lessee            *string        `json:"lessee"`
	SyncFailures      int            `json:"power_sync_failures"`
	CreatedAt         string         `json:"created_at"`
	UpdatedAt         *string        `json:"updated_at"`
}

// TimeFormat is how Ironic writes times: microseconds and an explicit
// UTC offset.
const TimeFormat = "2006-01-02T15:04:05.000000+00:00"

// MarshalJSON renders the node with Ironic's field names and every
// driver_info secret masked, so no output path can leak a password.
func (n *Node) MarshalJSON() ([]byte, error) {
	v := view{
		UUID: n.UUID, Name: ptr(n.Name), Driver: n.Driver, DriverInfo: n.DriverInfo.Masked(),
		PowerState: ptr(n.PowerState), TargetPowerState: ptr(n.TargetPowerState), ProvisionState: n.ProvisionState,
		Maintenance: n.Maintenance, MaintenanceReason: ptr(n.MaintenanceReason), Fault: ptr(n.Fault),
		LastError: ptr(n.LastError), InstanceUUID: ptr(n.InstanceUUID), DisablePowerOff: n.DisablePowerOff,
		Extra: n.Extra, ResourceClass: ptr(n.ResourceClass), Properties: n.Properties, Traits: n.Traits,
		ConductorGroup: n.ConductorGroup, Owner: ptr(n.Owner), Lessee: ptr(n.Lessee),
		SyncFailures: n.SyncFailures, CreatedAt: n.CreatedAt.UTC().Format(TimeFormat),
	}
	if v.Properties == nil {
		v.Properties = map[string]any{}
	}
	if v.Traits == nil {
		v.Traits = []string{}
	}
	if v.DriverInfo == nil {
		v.DriverInfo = DriverInfo{}
	}
	if v.Extra == nil {
		v.Extra = map[string]any{}
	}
	if !n.UpdatedAt.IsZero() && !n.UpdatedAt.Equal(n.CreatedAt) {
		u := n.UpdatedAt.UTC().Format(TimeFormat)
		v.UpdatedAt = &u
	}
	return json.Marshal(v)
}

func ptr(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}
