package node

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
)

func validIPMI() *Node {
	return New("", "r1-n07", DriverIPMI, DriverInfo{"ipmi_address": "10.0.0.7", "ipmi_username": "admin", "ipmi_password": "s3cret"})
}

func TestValidateRejectsBadInput(t *testing.T) {
	tests := []struct {
		name   string
		change func(n *Node)
		want   error
	}{
		{"bad uuid", func(n *Node) { n.UUID = "not-a-uuid" }, ErrInvalidUUID},
		{"uppercase uuid", func(n *Node) { n.UUID = strings.ToUpper(n.UUID) }, ErrInvalidUUID},
		{"name with space", func(n *Node) { n.Name = "r1 n07" }, ErrInvalidName},
		{"name like uuid", func(n *Node) { n.Name = "1be26c0b-03f2-4d2e-ae87-c02d7f33c123" }, ErrInvalidName},
		{"bad instance uuid", func(n *Node) { n.InstanceUUID = "x" }, ErrInvalidUUID},
		{"unknown driver", func(n *Node) { n.Driver = "ilo" }, ErrUnknownDriver},
		{"missing ipmi_address", func(n *Node) { delete(n.DriverInfo, "ipmi_address") }, ErrMissingDriverInfo},
		{"blank ipmi_address", func(n *Node) { n.DriverInfo["ipmi_address"] = " " }, ErrMissingDriverInfo},
		{"url as ipmi_address", func(n *Node) { n.DriverInfo["ipmi_address"] = "http://x" }, ErrMalformedDriverInfo},
		{"port not a number", func(n *Node) { n.DriverInfo["ipmi_port"] = "abc" }, ErrMalformedDriverInfo},
		{"port out of range", func(n *Node) { n.DriverInfo["ipmi_port"] = float64(70000) }, ErrMalformedDriverInfo},
		{"username not a string", func(n *Node) { n.DriverInfo["ipmi_username"] = float64(3) }, ErrMalformedDriverInfo},
		{"bad cipher suite", func(n *Node) { n.DriverInfo["ipmi_cipher_suite"] = float64(42) }, ErrMalformedDriverInfo},
		{"power state rebooting", func(n *Node) { n.PowerState = Reboot }, ErrInvalidPowerState},
		{"target soft off", func(n *Node) { n.TargetPowerState = SoftPowerOff }, ErrInvalidPowerState},
		{"unknown provision state", func(n *Node) { n.ProvisionState = "flying" }, ErrInvalidProvisionState},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := validIPMI()
			tt.change(n)
			err := n.Validate()
			if !errors.Is(err, tt.want) {
				t.Fatalf("Validate() = %v, want %v", err, tt.want)
			}
			var ve *ValidationError
			if !errors.As(err, &ve) || ve.Field == "" {
				t.Fatalf("error %v does not name the field", err)
			}
			if strings.Contains(err.Error(), "s3cret") {
				t.Fatalf("error leaks the password: %v", err)
			}
		})
	}
}

func TestValidateAcceptsIronicForms(t *testing.T) {
	tests := []struct {
		name string
		n    *Node
	}{
		{"ipmi minimal", New("", "", DriverIPMI, DriverInfo{"ipmi_address": "bmc.example.org"})},
		{"ipmi port as string", New("", "a", DriverIPMI, DriverInfo{"ipmi_address": "10.0.0.1", "ipmi_port": "6230", "ipmi_cipher_suite": "3"})},
		{"redfish url", New("", "b", DriverRedfish, DriverInfo{"redfish_address": "https://10.0.0.2:8443", "redfish_system_id": "/redfish/v1/Systems/1"})},
		{"redfish bare host", New("", "c", DriverRedfish, DriverInfo{"redfish_address": "10.0.0.3", "redfish_verify_ca": "False"})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.n.Validate(); err != nil {
				t.Fatalf("Validate() = %v", err)
			}
		})
	}
}

func TestIPMIInfoDefaults(t *testing.T) {
	info, err := DriverInfo{"ipmi_address": "10.0.0.7"}.IPMI()
	if err != nil {
		t.Fatal(err)
	}
	if info.Port != DefaultIPMIPort || info.CipherSuite != -1 {
		t.Fatalf("defaults = port %d suite %d, want 623 and auto (-1)", info.Port, info.CipherSuite)
	}
	if info.HostPort() != "10.0.0.7:623" {
		t.Fatalf("HostPort() = %q", info.HostPort())
	}
}

func TestRedfishInfoParsing(t *testing.T) {
	tests := []struct {
		name             string
		info             DriverInfo
		endpoint, system string
		verify           bool
		caFile           string
		wantErr          error
	}{
		{"full", DriverInfo{"redfish_address": "https://bmc:8000/", "redfish_system_id": "/redfish/v1/Systems/abc/"}, "https://bmc:8000", "/redfish/v1/Systems/abc", true, "", nil},
		{"bare id", DriverInfo{"redfish_address": "http://bmc", "redfish_system_id": "7"}, "http://bmc", "/redfish/v1/Systems/7", true, "", nil},
		{"verify false bool", DriverInfo{"redfish_address": "bmc", "redfish_verify_ca": false}, "https://bmc", "", false, "", nil},
		{"ca file", DriverInfo{"redfish_address": "bmc", "redfish_verify_ca": "/etc/ca.pem"}, "https://bmc", "", true, "/etc/ca.pem", nil},
		{"missing address", DriverInfo{}, "", "", false, "", ErrMissingDriverInfo},
		{"ftp scheme", DriverInfo{"redfish_address": "ftp://bmc"}, "", "", false, "", ErrMalformedDriverInfo},
		{"path in address", DriverInfo{"redfish_address": "https://bmc/redfish/v1"}, "", "", false, "", ErrMalformedDriverInfo},
		{"bad verify", DriverInfo{"redfish_address": "bmc", "redfish_verify_ca": "maybe"}, "", "", false, "", ErrMalformedDriverInfo},
		{"bad auth type", DriverInfo{"redfish_address": "bmc", "redfish_auth_type": "kerberos"}, "", "", false, "", ErrMalformedDriverInfo},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.info.Redfish()
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Redfish() error = %v, want %v", err, tt.wantErr)
			}
			if err != nil {
				return
			}
			if got.Endpoint != tt.endpoint || got.SystemID != tt.system || got.VerifyCA != tt.verify || got.CAFile != tt.caFile {
				t.Fatalf("Redfish() = %+v", got)
			}
		})
	}
}

func TestCredentialsInAddressNeverEchoed(t *testing.T) {
	_, err := DriverInfo{"redfish_address": "https://root:calvin@bmc/x"}.Redfish()
	if err == nil || strings.Contains(err.Error(), "calvin") {
		t.Fatalf("error = %v, want an error without the password", err)
	}
}

func TestMaskedHidesSecrets(t *testing.T) {
	d := DriverInfo{"ipmi_password": "pw", "redfish_password": "pw2", "ipmi_username": "admin", "ipmi_port": 623.0, "kg_secret": "k"}
	m := d.Masked()
	for _, k := range []string{"ipmi_password", "redfish_password", "kg_secret"} {
		if m[k] != Masked {
			t.Errorf("%s = %v, want %s", k, m[k], Masked)
		}
	}
	if m["ipmi_username"] != "admin" || m["ipmi_port"] != 623.0 {
		t.Errorf("non-secret values changed: %v", m)
	}
	if d["ipmi_password"] != "pw" {
		t.Error("Masked changed the original")
	}
	if s := (IPMIInfo{Address: "a", Port: 1, Username: "u", Password: "pw"}).String(); strings.Contains(s, "pw") {
		t.Errorf("IPMIInfo.String() = %q leaks the password", s)
	}
}

func TestFinalState(t *testing.T) {
	want := map[string]string{PowerOn: PowerOn, Reboot: PowerOn, SoftReboot: PowerOn, PowerOff: PowerOff, SoftPowerOff: PowerOff, "bogus": ""}
	for target, final := range want {
		if got := FinalState(target); got != final {
			t.Errorf("FinalState(%q) = %q, want %q", target, got, final)
		}
	}
}

func TestCloneIsDeep(t *testing.T) {
	n := validIPMI()
	n.Extra = map[string]any{"rack": "r1"}
	c := n.Clone()
	c.DriverInfo["ipmi_address"] = "changed"
	c.Extra["rack"] = "r2"
	if n.DriverInfo["ipmi_address"] != "10.0.0.7" || n.Extra["rack"] != "r1" {
		t.Fatal("Clone shares maps with the original")
	}
}

func TestJSONMasksSecretsAndUsesNulls(t *testing.T) {
	n := validIPMI()
	b, err := json.Marshal(n)
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	for _, want := range []string{`"ipmi_password":"******"`, `"power_state":null`, `"name":"r1-n07"`, `"provision_state":"enroll"`, `"instance_uuid":null`} {
		if !strings.Contains(s, want) {
			t.Errorf("JSON lacks %s: %s", want, s)
		}
	}
	if strings.Contains(s, "s3cret") {
		t.Fatalf("JSON leaks the password: %s", s)
	}
}

// A request clears last_error (change_node_power_state); a change the
// sync forces keeps it in a failure state (node_power_action).
func TestMarkRequestAndMarkTarget(t *testing.T) {
	tests := []struct {
		provision, final string
		request          bool
		wantLastError    string
	}{
		{Active, PowerOff, false, ""},
		{Manageable, PowerOn, false, ""},
		{DeployFailed, PowerOn, false, "deploy broke"},
		{CleanFailed, PowerOff, false, "deploy broke"},
		{AdoptFailed, PowerOn, false, "deploy broke"},
		{Active, PowerOff, true, ""},
		{DeployFailed, PowerOn, true, ""},
		{CleanFailed, PowerOff, true, ""},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s request=%v", tt.provision, tt.request), func(t *testing.T) {
			n := New("", "n", DriverIPMI, nil)
			n.ProvisionState, n.LastError = tt.provision, "deploy broke"
			if tt.request {
				n.MarkRequest(tt.final)
			} else {
				n.MarkTarget(tt.final)
			}
			if n.TargetPowerState != tt.final || n.LastError != tt.wantLastError {
				t.Fatalf("target %q, last_error %q; want %q, %q", n.TargetPowerState, n.LastError, tt.final, tt.wantLastError)
			}
		})
	}
}
