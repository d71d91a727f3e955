package snmp

import (
	"errors"
	"strings"
	"testing"

	"github.com/metalpower/metalpower/internal/bmc"
	"github.com/metalpower/metalpower/internal/node"
)

func TestParseDriverInfo(t *testing.T) {
	v2 := func() node.DriverInfo {
		return node.DriverInfo{"snmp_driver": "apc_rackpdu", "snmp_address": "10.0.0.9", "snmp_outlet": "3", "snmp_version": "2c", "snmp_community": "pdu-secret"}
	}
	v3 := func() node.DriverInfo {
		return node.DriverInfo{"snmp_driver": "auto", "snmp_address": "pdu1", "snmp_outlet": float64(7), "snmp_version": "3",
			"snmp_user": "ironic", "snmp_auth_key": "authkey-secret", "snmp_priv_key": "privkey-secret"}
	}
	tests := []struct {
		name    string
		base    func() node.DriverInfo
		change  func(node.DriverInfo)
		want    error
		message string // a part of Ironic's wording the error must have
		check   func(Info) bool
	}{
		{"v2c", v2, func(node.DriverInfo) {}, nil, "", func(i Info) bool {
			return i.Outlet == 3 && i.Port == 161 && i.ReadCommunity == "pdu-secret" && i.WriteCommunity == "pdu-secret"
		}},
		{"version 1 by default", v2, func(d node.DriverInfo) { delete(d, "snmp_version") }, nil, "", func(i Info) bool { return i.Version == "1" }},
		{"read and write communities", v2, func(d node.DriverInfo) {
			d["snmp_community_read"], d["snmp_community_write"] = "ro-secret", "rw-secret"
		}, nil, "",
			func(i Info) bool { return i.ReadCommunity == "ro-secret" && i.WriteCommunity == "rw-secret" }},
		{"v3 defaults md5 and des", v3, func(node.DriverInfo) {}, nil, "", func(i Info) bool {
			return i.AuthProtocol == "md5" && i.PrivProtocol == "des" && i.Outlet == 7
		}},
		{"v3 deprecated snmp_security", v3, func(d node.DriverInfo) { delete(d, "snmp_user"); d["snmp_security"] = "old" }, nil, "", func(i Info) bool { return i.User == "old" }},
		{"missing required", v2, func(d node.DriverInfo) { delete(d, "snmp_driver"); delete(d, "snmp_outlet") }, node.ErrMissingDriverInfo,
			"SNMP driver requires the following parameters to be set in node's driver_info: ['snmp_driver', 'snmp_outlet']", nil},
		{"unknown family", v2, func(d node.DriverInfo) { d["snmp_driver"] = "acme" }, node.ErrMalformedDriverInfo, "SNMPPowerDriver: unknown driver: 'acme'", nil},
		{"unknown version", v2, func(d node.DriverInfo) { d["snmp_version"] = "2" }, node.ErrMalformedDriverInfo, "SNMPPowerDriver: unknown SNMP version: '2'", nil},
		{"port out of range", v2, func(d node.DriverInfo) { d["snmp_port"] = float64(70000) }, node.ErrMalformedDriverInfo, "SNMP UDP port out of range: 70000", nil},
		{"outlet not an integer", v2, func(d node.DriverInfo) { d["snmp_outlet"] = "three" }, node.ErrMalformedDriverInfo, "PDU power outlet index is not an integer: three", nil},
		{"outlet zero", v2, func(d node.DriverInfo) { d["snmp_outlet"] = "0" }, node.ErrMalformedDriverInfo, "1-based", nil},
		{"no community", v2, func(d node.DriverInfo) { delete(d, "snmp_community") }, node.ErrMissingDriverInfo,
			"SNMP driver requires `snmp_community` or `snmp_community_read`/`snmp_community_write` properties to be set for version 2c.", nil},
		{"empty write community", v2, func(d node.DriverInfo) { d["snmp_community_write"] = "" }, node.ErrMissingDriverInfo, "snmp_community_write", nil},
		{"v3 without user", v3, func(d node.DriverInfo) { delete(d, "snmp_user") }, node.ErrMissingDriverInfo, "requires `driver_info/snmp_user`", nil},
		{"v3 short auth key", v3, func(d node.DriverInfo) { d["snmp_auth_key"] = "short" }, node.ErrMalformedDriverInfo, "short SNMPv3 authentication key", nil},
		{"v3 unknown auth protocol", v3, func(d node.DriverInfo) { d["snmp_auth_protocol"] = "sha3" }, node.ErrMalformedDriverInfo, "unknown SNMPv3 authentication protocol", nil},
		{"v3 privacy without authentication", v3, func(d node.DriverInfo) { delete(d, "snmp_auth_key") }, node.ErrMissingDriverInfo, "SNMPv3 privacy requires authentication", nil},
		{"v3 auth protocol without key", v3, func(d node.DriverInfo) {
			delete(d, "snmp_auth_key")
			delete(d, "snmp_priv_key")
			d["snmp_auth_protocol"] = "sha"
		}, node.ErrMissingDriverInfo, "missing SNMPv3 authentication key", nil},
		{"address with credentials", v2, func(d node.DriverInfo) { d["snmp_address"] = "admin@pdu" }, node.ErrMalformedDriverInfo, "snmp_address", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := tt.base()
			tt.change(d)
			info, err := ParseDriverInfo(d)
			if !errors.Is(err, tt.want) {
				t.Fatalf("ParseDriverInfo() = %v, want %v", err, tt.want)
			}
			if err != nil {
				if !strings.Contains(err.Error(), tt.message) {
					t.Errorf("error %q lacks %q", err, tt.message)
				}
				for _, s := range []string{"pdu-secret", "authkey-secret", "privkey-secret"} {
					if strings.Contains(err.Error(), s) {
						t.Errorf("error shows a secret: %v", err)
					}
				}
				return
			}
			if !tt.check(info) {
				t.Errorf("ParseDriverInfo() = %+v", info)
			}
		})
	}
}

// Communities and keys are masked wherever a node is shown.
func TestSecretsAreMasked(t *testing.T) {
	d := node.DriverInfo{"snmp_community": "c", "snmp_community_read": "r", "snmp_community_write": "w",
		"snmp_auth_key": "a", "snmp_priv_key": "p", "snmp_user": "ironic", "snmp_outlet": "1"}
	m := d.Masked()
	for _, k := range []string{"snmp_community", "snmp_community_read", "snmp_community_write", "snmp_auth_key", "snmp_priv_key"} {
		if m[k] != node.Masked {
			t.Errorf("%s = %v, want masked", k, m[k])
		}
	}
	if m["snmp_user"] != "ironic" || m["snmp_outlet"] != "1" {
		t.Errorf("non-secrets changed: %v", m)
	}
	info := Info{Family: "aten", Address: "pdu", Port: 161, Outlet: 2, Version: "2c", ReadCommunity: "r-secret", WriteCommunity: "w-secret"}
	for _, s := range []string{info.String(), info.BMC()} {
		if strings.Contains(s, "secret") {
			t.Errorf("%q shows a community", s)
		}
	}
}

func TestFamilyBySysObjectID(t *testing.T) {
	tests := []struct{ id, want string }{
		{".1.3.6.1.4.1.318.1.1.12", "apc_rackpdu"},
		{"1.3.6.1.4.1.318.1.1.12.3", "apc_rackpdu"},
		{"1.3.6.1.4.1.318.1.1.4", "apc_masterswitch"},
		{"1.3.6.1.4.1.318.1.1.6.1", "apc_masterswitchplus"},
		{"1.3.6.1.4.1.21317", "aten"},
		{"1.3.6.1.4.1.534.6", "eatonpower"},
		{"1.3.6.1.4.1.3808.1", "cyberpower"},
		{"1.3.6.1.4.1.23620", "teltronix"},
		{"1.3.6.1.4.1.31", ""},      // no family
		{"1.3.6.1.4.1.3180", ""},    // a prefix of digits is not a prefix of arcs
		{"1.3.6.1.4.1.4779", ""},    // Baytech: Ironic names no system ID
		{"1.3.6.1.4.1.318.1.1", ""}, // shorter than every APC family
	}
	for _, tt := range tests {
		f, ok := bySysObjectID(tt.id)
		if got := f.name; got != tt.want || ok != (tt.want != "") {
			t.Errorf("bySysObjectID(%s) = %q, want %q", tt.id, got, tt.want)
		}
	}
}

func TestFamilyValues(t *testing.T) {
	tests := []struct {
		family         string
		outlet         int
		onOID, offOID  string
		onVal, offVal  int
		readOn, readOf int
	}{
		{"apc_rackpdu", 4, "1.3.6.1.4.1.318.1.1.12.3.3.1.1.4.4", "1.3.6.1.4.1.318.1.1.12.3.3.1.1.4.4", 1, 2, 1, 2},
		{"apc_masterswitchplus", 1, "1.3.6.1.4.1.318.1.1.6.5.1.1.5.1", "1.3.6.1.4.1.318.1.1.6.5.1.1.5.1", 1, 3, 1, 3},
		{"aten", 2, "1.3.6.1.4.1.21317.1.3.2.2.2.2.2.0", "1.3.6.1.4.1.21317.1.3.2.2.2.2.2.0", 2, 1, 2, 1},
		{"baytech_mrp27", 5, "1.3.6.1.4.1.4779.1.3.5.3.1.3.1.5", "1.3.6.1.4.1.4779.1.3.5.3.1.3.1.5", 1, 0, 1, 0},
		{"eatonpower", 3, "1.3.6.1.4.1.534.6.6.7.6.6.1.4.3", "1.3.6.1.4.1.534.6.6.7.6.6.1.3.3", 0, 0, 2, 3},
	}
	for _, tt := range tests {
		f := families[tt.family]
		onOID, onVal := f.command(true, tt.outlet)
		offOID, offVal := f.command(false, tt.outlet)
		if onOID != tt.onOID || offOID != tt.offOID || onVal != tt.onVal || offVal != tt.offVal {
			t.Errorf("%s: on %s=%d off %s=%d", tt.family, onOID, onVal, offOID, offVal)
		}
		if f.state(tt.readOn) != node.PowerOn || f.state(tt.readOf) != node.PowerOff || f.state(99) != "" {
			t.Errorf("%s: %d reads %q, %d reads %q, 99 reads %q", tt.family, tt.readOn, f.state(tt.readOn), tt.readOf, f.state(tt.readOf), f.state(99))
		}
	}
}

func TestRegistered(t *testing.T) {
	d, err := bmc.Lookup(Name)
	if err != nil {
		t.Fatal(err)
	}
	if d.Supports.SoftPowerOff || d.Supports.SoftReboot || !d.Supports.Reboot {
		t.Errorf("supports %+v, want reboot only", d.Supports)
	}
	if !bmc.SecretField("snmp_community") || bmc.SecretField("snmp_user") {
		t.Error("snmp_community must be secret, snmp_user not")
	}
}
