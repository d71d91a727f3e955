package pdusim

import (
	"slices"
	"strconv"
)

// A family is one of the PDU kinds Ironic's snmp power interface drives,
// as its snmp_driver option names them. The OIDs and values are Ironic's
// (ironic/drivers/modules/snmp.py), so a driver modelled on it finds what
// it expects, and a driver configured for another family finds nothing.
type family struct {
	// sysObjectID is what the agent reports as SNMPv2-MIB::sysObjectID.0;
	// Ironic's "auto" driver picks the family whose system_id is its
	// longest prefix.
	sysObjectID string
	// subtree is the part of the MIB pdu.pl serves through pass_persist.
	subtree string
	// columns are the outlet table's objects; the first is the one that
	// tells the outlet's state.
	columns []column
}

// A column is an object that exists once per outlet, at
// prefix.<outlet>suffix.
type column struct {
	prefix string
	suffix string // "" or ".0"
	kind   string // "switch", or Eaton's "status", "offcmd", "oncmd"
	// on and off are what a switch column reads and accepts.
	on, off int
}

// oid is the column's object for outlet n (1-based).
func (c column) oid(n int) string {
	return c.prefix + "." + strconv.Itoa(n) + c.suffix
}

// simple is a family with one read-write object per outlet that reads as
// the state and switches when written, Ironic's SNMPDriverSimple.
func simple(sysObjectID, prefix, suffix string, on, off int) family {
	return family{
		sysObjectID: sysObjectID,
		subtree:     prefix,
		columns:     []column{{prefix: prefix, suffix: suffix, kind: "switch", on: on, off: off}},
	}
}

const (
	eatonEntry = "1.3.6.1.4.1.534.6.6.7.6.6.1" // EATON-EPDU-MIB outletControlEntry
	apcRackPDU = "1.3.6.1.4.1.318.1.1.12"
)

var families = map[string]family{
	// PowerNet-MIB sPDUOutletCtl: 1=on, 2=off, 3=reboot, ...
	"apc":              simple("1.3.6.1.4.1.318.1.1.4", "1.3.6.1.4.1.318.1.1.4.4.2.1.3", "", 1, 2),
	"apc_masterswitch": simple("1.3.6.1.4.1.318.1.1.4", "1.3.6.1.4.1.318.1.1.4.4.2.1.3", "", 1, 2),
	// PowerNet-MIB sPDUOutletControlMSPOutletCommand: 1=on, 3=off, ...
	"apc_masterswitchplus": simple("1.3.6.1.4.1.318.1.1.6", "1.3.6.1.4.1.318.1.1.6.5.1.1.5", "", 1, 3),
	// PowerNet-MIB rPDUOutletControlOutletCommand: 1=on, 2=off, 3=reboot, ...
	"apc_rackpdu": simple(apcRackPDU, apcRackPDU+".3.3.1.1.4", "", 1, 2),
	// Aten outlet power, one scalar per outlet: 1=off, 2=on, 3=pending, 4=reset.
	"aten": simple("1.3.6.1.4.1.21317", "1.3.6.1.4.1.21317.1.3.2.2.2.2", ".0", 2, 1),
	// CyberPower ePDUOutletControlOutletCommand: 1=on, 2=off, 3=reboot, ...
	"cyberpower": simple("1.3.6.1.4.1.3808", "1.3.6.1.4.1.3808.1.1.3.3.3.1.1.4", "", 1, 2),
	// Teltronix outlet power: 1=off, 2=on.
	"teltronix": simple("1.3.6.1.4.1.23620", "1.3.6.1.4.1.23620.1.2.2.1.4", "", 2, 1),
	// Baytech MRP27 outlet power of unit 1: 0=off, 1=on, 2=reboot. Ironic
	// has no system_id for it, so "auto" never picks it; the enterprise
	// number stands in.
	"baytech_mrp27": simple("1.3.6.1.4.1.4779", "1.3.6.1.4.1.4779.1.3.5.3.1.3.1", "", 1, 0),
	// EATON-EPDU-MIB outletControlTable: outletControlStatus reads 0=off,
	// 1=on, 2=pending off, 3=pending on and is read-only; writing seconds
	// (0 = now) to outletControlOffCmd (.3) or outletControlOnCmd (.4)
	// switches. Ironic's code has it the other way round (oid_poweron =
	// (3,), against its own docstring); the PDU follows the MIB, as a
	// real one does.
	"eatonpower": {
		sysObjectID: "1.3.6.1.4.1.534",
		subtree:     eatonEntry,
		columns: []column{
			{prefix: eatonEntry + ".2", kind: "status"},
			{prefix: eatonEntry + ".3", kind: "offcmd"},
			{prefix: eatonEntry + ".4", kind: "oncmd"},
		},
	},
}

// Families lists the snmp_driver names Start accepts, sorted. "auto" is
// not one: a simulated PDU is always of one family.
func Families() []string {
	var names []string
	for name := range families {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

// stateColumn is the column whose object tells the outlet's state.
func (f family) stateColumn() column { return f.columns[0] }

// column finds the column of the given kind.
func (f family) column(kind string) (column, bool) {
	for _, c := range f.columns {
		if c.kind == kind {
			return c, true
		}
	}
	return column{}, false
}
