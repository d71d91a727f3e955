package redfish

import (
	"errors"
	"strings"
	"testing"

	"github.com/metalpower/metalpower/internal/node"
)

func TestParseDriverInfo(t *testing.T) {
	tests := []struct {
		name             string
		info             node.DriverInfo
		endpoint, system string
		verify           bool
		caFile           string
		wantErr          error
	}{
		{"full", node.DriverInfo{"redfish_address": "https://bmc:8000/", "redfish_system_id": "/redfish/v1/Systems/abc/"}, "https://bmc:8000", "/redfish/v1/Systems/abc", true, "", nil},
		{"bare id", node.DriverInfo{"redfish_address": "http://bmc", "redfish_system_id": "7"}, "http://bmc", "/redfish/v1/Systems/7", true, "", nil},
		{"bare host", node.DriverInfo{"redfish_address": "10.0.0.3", "redfish_verify_ca": "False"}, "https://10.0.0.3", "", false, "", nil},
		{"verify false bool", node.DriverInfo{"redfish_address": "bmc", "redfish_verify_ca": false}, "https://bmc", "", false, "", nil},
		{"ca file", node.DriverInfo{"redfish_address": "bmc", "redfish_verify_ca": "/etc/ca.pem"}, "https://bmc", "", true, "/etc/ca.pem", nil},
		{"missing address", node.DriverInfo{}, "", "", false, "", node.ErrMissingDriverInfo},
		{"ftp scheme", node.DriverInfo{"redfish_address": "ftp://bmc"}, "", "", false, "", node.ErrMalformedDriverInfo},
		{"path in address", node.DriverInfo{"redfish_address": "https://bmc/redfish/v1"}, "", "", false, "", node.ErrMalformedDriverInfo},
		{"bad verify", node.DriverInfo{"redfish_address": "bmc", "redfish_verify_ca": "maybe"}, "", "", false, "", node.ErrMalformedDriverInfo},
		{"bad auth type", node.DriverInfo{"redfish_address": "bmc", "redfish_auth_type": "kerberos"}, "", "", false, "", node.ErrMalformedDriverInfo},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseDriverInfo(tt.info)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("ParseDriverInfo() error = %v, want %v", err, tt.wantErr)
			}
			if err != nil {
				return
			}
			if got.Endpoint != tt.endpoint || got.SystemID != tt.system || got.VerifyCA != tt.verify || got.CAFile != tt.caFile {
				t.Fatalf("ParseDriverInfo() = %+v", got)
			}
		})
	}
}

func TestCredentialsInAddressNeverEchoed(t *testing.T) {
	_, err := ParseDriverInfo(node.DriverInfo{"redfish_address": "https://root:calvin@bmc/x"})
	if err == nil || strings.Contains(err.Error(), "calvin") {
		t.Fatalf("error = %v, want an error without the password", err)
	}
}
