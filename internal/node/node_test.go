package node

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/metalpower/metalpower/internal/bmc"
)

func validNode() *Node {
	return New("", "r1-n07", fakeDriver, DriverInfo{"fake_address": "10.0.0.7", "fake_username": "admin", "fake_password": "s3cret"})
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
		{"unknown driver", func(n *Node) { n.Driver = "ilo" }, bmc.ErrUnknownDriver},
		{"missing fake_address", func(n *Node) { delete(n.DriverInfo, "fake_address") }, ErrMissingDriverInfo},
		{"blank fake_address", func(n *Node) { n.DriverInfo["fake_address"] = " " }, ErrMissingDriverInfo},
		{"username not a string", func(n *Node) { n.DriverInfo["fake_username"] = float64(3) }, ErrMalformedDriverInfo},
		{"port not a number", func(n *Node) { n.DriverInfo["fake_port"] = "abc" }, ErrMalformedDriverInfo},
		{"power state rebooting", func(n *Node) { n.PowerState = Reboot }, ErrInvalidPowerState},
		{"target soft off", func(n *Node) { n.TargetPowerState = SoftPowerOff }, ErrInvalidPowerState},
		{"unknown provision state", func(n *Node) { n.ProvisionState = "flying" }, ErrInvalidProvisionState},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := validNode()
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
	if m := (DriverInfo{"fake_community": "public"}).Masked(); m["fake_community"] != Masked {
		t.Errorf("a key its driver declares secret is shown: %v", m)
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
	n := validNode()
	n.Extra = map[string]any{"rack": "r1"}
	c := n.Clone()
	c.DriverInfo["fake_address"] = "changed"
	c.Extra["rack"] = "r2"
	if n.DriverInfo["fake_address"] != "10.0.0.7" || n.Extra["rack"] != "r1" {
		t.Fatal("Clone shares maps with the original")
	}
}

func TestJSONMasksSecretsAndUsesNulls(t *testing.T) {
	n := validNode()
	b, err := json.Marshal(n)
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	for _, want := range []string{`"fake_password":"******"`, `"power_state":null`, `"name":"r1-n07"`, `"provision_state":"enroll"`, `"instance_uuid":null`} {
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
			n := New("", "n", fakeDriver, nil)
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
