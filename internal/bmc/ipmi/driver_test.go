package ipmi

import (
	"errors"
	"strings"
	"testing"

	"github.com/metalpower/metalpower/internal/node"
)

func TestParseDriverInfo(t *testing.T) {
	valid := func() node.DriverInfo {
		return node.DriverInfo{"ipmi_address": "10.0.0.7", "ipmi_username": "admin", "ipmi_password": "s3cret"}
	}
	tests := []struct {
		name   string
		change func(node.DriverInfo)
		want   error
	}{
		{"minimal", func(d node.DriverInfo) { d["ipmi_address"] = "bmc.example.org" }, nil},
		{"port and suite as strings", func(d node.DriverInfo) { d["ipmi_port"], d["ipmi_cipher_suite"] = "6230", "3" }, nil},
		{"missing ipmi_address", func(d node.DriverInfo) { delete(d, "ipmi_address") }, node.ErrMissingDriverInfo},
		{"blank ipmi_address", func(d node.DriverInfo) { d["ipmi_address"] = " " }, node.ErrMissingDriverInfo},
		{"url as ipmi_address", func(d node.DriverInfo) { d["ipmi_address"] = "http://x" }, node.ErrMalformedDriverInfo},
		{"port not a number", func(d node.DriverInfo) { d["ipmi_port"] = "abc" }, node.ErrMalformedDriverInfo},
		{"port out of range", func(d node.DriverInfo) { d["ipmi_port"] = float64(70000) }, node.ErrMalformedDriverInfo},
		{"username not a string", func(d node.DriverInfo) { d["ipmi_username"] = float64(3) }, node.ErrMalformedDriverInfo},
		{"bad cipher suite", func(d node.DriverInfo) { d["ipmi_cipher_suite"] = float64(42) }, node.ErrMalformedDriverInfo},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := valid()
			tt.change(d)
			_, err := ParseDriverInfo(d)
			if !errors.Is(err, tt.want) {
				t.Fatalf("ParseDriverInfo() = %v, want %v", err, tt.want)
			}
			var ve *node.ValidationError
			if err != nil && (!errors.As(err, &ve) || ve.Field == "") {
				t.Fatalf("error %v does not name the field", err)
			}
			if err != nil && strings.Contains(err.Error(), "s3cret") {
				t.Fatalf("error leaks the password: %v", err)
			}
		})
	}
}

func TestInfoDefaults(t *testing.T) {
	info, err := ParseDriverInfo(node.DriverInfo{"ipmi_address": "10.0.0.7"})
	if err != nil {
		t.Fatal(err)
	}
	if info.Port != DefaultPort || info.CipherSuite != -1 {
		t.Fatalf("defaults = port %d suite %d, want 623 and auto (-1)", info.Port, info.CipherSuite)
	}
	if info.BMC() != "10.0.0.7:623" {
		t.Fatalf("BMC() = %q", info.BMC())
	}
}

func TestInfoNeverShowsThePassword(t *testing.T) {
	info := Info{Address: "a", Port: 1, Username: "u", Password: "pw-secret"}
	for _, s := range []string{info.String(), info.BMC()} {
		if strings.Contains(s, "pw-secret") {
			t.Errorf("%q leaks the password", s)
		}
	}
}
