package node_test

import (
	"encoding/json"
	"errors"
	"net/url"
	"strings"
	"testing"

	"github.com/metalpower/metalpower/internal/bmc"
	_ "github.com/metalpower/metalpower/internal/bmc/drivers"
	"github.com/metalpower/metalpower/internal/node"
)

// userinfoPassword returns the password a URL-shaped address carries in
// its user info, as net/url reads it, or "".
func userinfoPassword(addr string) string {
	raw := addr
	if !strings.Contains(raw, "://") {
		raw = "https://" + raw
	}
	u, err := url.Parse(raw)
	if err != nil || u.User == nil {
		return ""
	}
	pw, _ := u.User.Password()
	return pw
}

// FuzzDriverInfo parses an arbitrary driver_info object for every driver
// and validates nodes carrying it: nothing panics, every error is a
// *ValidationError, and no error shows a password, whether it is given
// as ipmi_password / redfish_password or inside an address URL.
func FuzzDriverInfo(f *testing.F) {
	for _, s := range []string{
		`{"ipmi_address":"10.0.0.1","ipmi_username":"admin","ipmi_password":"ipmiPASS1"}`,
		`{"ipmi_address":"10.0.0.1","ipmi_port":"624","ipmi_password":"ipmiPASS1","ipmi_cipher_suite":17}`,
		`{"ipmi_address":"10.0.0.1","ipmi_port":70000,"ipmi_password":"ipmiPASS1"}`,
		`{"ipmi_address":"10.0.0.1","ipmi_port":1.5,"ipmi_password":"ipmiPASS1"}`,
		`{"ipmi_address":"10.0.0.1","ipmi_port":"ipmiPASS1"}`,
		`{"ipmi_address":"10.0.0.1","ipmi_password":123}`,
		`{"ipmi_address":"10.0.0.1","ipmi_cipher_suite":20}`,
		`{"ipmi_address":"bmc 1"}`, `{"ipmi_address":" "}`, `{"ipmi_address":null}`, `{}`, `null`,
		`{"redfish_address":"https://bmc.example","redfish_username":"root","redfish_password":"rfPASS22"}`,
		`{"redfish_address":"bmc.example:8443","redfish_system_id":"1","redfish_password":"rfPASS22","redfish_verify_ca":"/etc/ca.pem"}`,
		`{"redfish_address":"http://bmc.example/","redfish_system_id":"/redfish/v1/Systems/1/","redfish_auth_type":"session"}`,
		`{"redfish_address":"https://root:rfPASS22@bmc.example"}`,
		`{"redfish_address":"https://bmc.example:99999","redfish_password":"rfPASS22"}`,
		`{"redfish_address":"ftp://bmc.example","redfish_password":"rfPASS22"}`,
		`{"redfish_address":"https://bmc.example/redfish/v1","redfish_password":"rfPASS22"}`,
		`{"redfish_address":"https://bmc.example","redfish_verify_ca":"maybe","redfish_password":"rfPASS22"}`,
		`{"redfish_address":"https://bmc.example","redfish_auth_type":"rfPASS22","redfish_password":"rfPASS22"}`,
		`{"redfish_address":"https://bmc.example","redfish_password":{"nested":"rfPASS22"}}`,
		`{"redfish_address":["https://bmc.example"]}`, `{"redfish_address":"https://[::1"}`,
	} {
		f.Add([]byte(s), uint8(0))
		f.Add([]byte(s), uint8(1))
	}
	f.Fuzz(func(t *testing.T, data []byte, driver uint8) {
		var info node.DriverInfo
		if json.Unmarshal(data, &info) != nil {
			return
		}
		// Passwords the errors must not show, when they are not also
		// given as the value of some other, non-secret key.
		var secrets []string
		for k, v := range info {
			s, ok := v.(string)
			if !ok || len(s) < 4 {
				continue
			}
			if node.IsSecretKey(k) {
				secrets = append(secrets, s)
			} else if pw := userinfoPassword(s); len(pw) >= 4 {
				secrets = append(secrets, pw)
				// Also each part between '@'s, which a redaction that
				// stops at the first '@' would show.
				for _, part := range strings.Split(pw, "@") {
					if len(part) >= 4 {
						secrets = append(secrets, part)
					}
				}
			}
		}
		var shown []string
		for k, v := range info {
			if node.IsSecretKey(k) {
				continue
			}
			if s, ok := v.(string); ok {
				shown = append(shown, strings.ReplaceAll(s, userinfoPassword(s), ""))
			} else if b, err := json.Marshal(v); err == nil {
				shown = append(shown, string(b))
			}
		}
		others := strings.Join(shown, "\x00")
		check := func(what string, err error) {
			if err == nil {
				return
			}
			var ve *node.ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("%s: error %v is a %T, not a *ValidationError", what, err, err)
			}
			for _, s := range secrets {
				if strings.Contains(err.Error(), s) && !strings.Contains(others, s) && !strings.Contains("driver_info "+ve.Err.Error()+" "+ve.Field, s) {
					t.Fatalf("%s: error shows the password %q: %v\ndriver_info: %s", what, s, err, data)
				}
			}
		}
		drivers := bmc.Drivers()
		for _, d := range drivers {
			_, err := d.Parse(info)
			check(d.Name, err)
		}
		n := node.New("", "node-1", drivers[int(driver)%len(drivers)].Name, info)
		check("Validate", n.Validate())
	})
}
