package snmp

import (
	"fmt"
	"slices"
	"strings"

	"github.com/metalpower/metalpower/internal/node"
)

// family is one PDU model's object for an outlet, as Ironic's SNMPDriver*
// classes define it (ironic/drivers/modules/snmp.py).
type family struct {
	name string
	// sysObjectID is the prefix of the agent's sysObjectID that tells the
	// family (Ironic's system_id); "" when Ironic names none.
	sysObjectID string
	// status is the OID read for the state; <n> is the outlet index.
	status string
	// on and off are the values written to command (status for simple
	// PDUs) to switch, and read back.
	on, off int
	// readOn and readOff, when set, are the values that read as on and
	// off (Eaton reads 0-3 where it writes 0 to one of two objects).
	readOn, readOff []int
	// onCommand and offCommand, when set, are separate objects written to
	// switch (Eaton); otherwise status is written.
	onCommand, offCommand string
}

const enterprise = "1.3.6.1.4.1."

// families are Ironic's snmp_driver values. "auto" picks one by the
// agent's sysObjectID.
var families = map[string]family{
	"apc":                  apcMasterSwitch("apc"),
	"apc_masterswitch":     apcMasterSwitch("apc_masterswitch"),
	"apc_masterswitchplus": {name: "apc_masterswitchplus", sysObjectID: enterprise + "318.1.1.6", status: enterprise + "318.1.1.6.5.1.1.5.<n>", on: 1, off: 3},
	"apc_rackpdu":          {name: "apc_rackpdu", sysObjectID: enterprise + "318.1.1.12", status: enterprise + "318.1.1.12.3.3.1.1.4.<n>", on: 1, off: 2},
	"aten":                 {name: "aten", sysObjectID: enterprise + "21317", status: enterprise + "21317.1.3.2.2.2.2.<n>.0", on: 2, off: 1},
	"cyberpower":           {name: "cyberpower", sysObjectID: enterprise + "3808", status: enterprise + "3808.1.1.3.3.3.1.1.4.<n>", on: 1, off: 2},
	"teltronix":            {name: "teltronix", sysObjectID: enterprise + "23620", status: enterprise + "23620.1.2.2.1.4.<n>", on: 2, off: 1},
	// Ironic gives Baytech no system ID: "auto" never picks it.
	"baytech_mrp27": {name: "baytech_mrp27", status: enterprise + "4779.1.3.5.3.1.3.1.<n>", on: 1, off: 0},
	// Eaton reads 0 off, 1 on, 2 pending off, 3 pending on; a pending
	// state reads as where the outlet is now, as Ironic maps it.
	"eatonpower": {name: "eatonpower", sysObjectID: enterprise + "534", status: enterprise + "534.6.6.7.6.6.1.2.<n>",
		readOn: []int{1, 2}, readOff: []int{0, 3},
		onCommand: enterprise + "534.6.6.7.6.6.1.4.<n>", offCommand: enterprise + "534.6.6.7.6.6.1.3.<n>"},
}

func apcMasterSwitch(name string) family {
	return family{name: name, sysObjectID: enterprise + "318.1.1.4", status: enterprise + "318.1.1.4.4.2.1.3.<n>", on: 1, off: 2}
}

// auto is the snmp_driver that detects the family.
const auto = "auto"

// familyNames lists the snmp_driver values, for messages.
func familyNames() []string {
	names := []string{auto}
	for n := range families {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// oid fills in the outlet.
func oid(pattern string, outlet int) string {
	return strings.Replace(pattern, "<n>", fmt.Sprint(outlet), 1)
}

// state maps a value read from status to node.PowerOn, node.PowerOff or
// "" (a value Ironic cannot map).
func (f family) state(v int) string {
	on, off := f.readOn, f.readOff
	if on == nil {
		on, off = []int{f.on}, []int{f.off}
	}
	switch {
	case slices.Contains(on, v):
		return node.PowerOn
	case slices.Contains(off, v):
		return node.PowerOff
	}
	return ""
}

// command is the object and value that switch the outlet on or off.
func (f family) command(on bool, outlet int) (string, int) {
	switch {
	case on && f.onCommand != "":
		return oid(f.onCommand, outlet), 0
	case !on && f.offCommand != "":
		return oid(f.offCommand, outlet), 0
	case on:
		return oid(f.status, outlet), f.on
	}
	return oid(f.status, outlet), f.off
}

// bySysObjectID picks the family whose system ID is the longest prefix of
// id, as Ironic's SNMPDriverAuto; "" when none is. APC's families share
// 318.1.1: the longest match wins.
func bySysObjectID(id string) (family, bool) {
	id = strings.TrimPrefix(id, ".")
	var best family
	for _, f := range families {
		if f.sysObjectID == "" || !(id == f.sysObjectID || strings.HasPrefix(id, f.sysObjectID+".")) {
			continue
		}
		// apc and apc_masterswitch are one family under two names: keep
		// the stable, specific one.
		if len(f.sysObjectID) > len(best.sysObjectID) || (len(f.sysObjectID) == len(best.sysObjectID) && f.name > best.name) {
			best = f
		}
	}
	return best, best.name != ""
}
