package node

import (
	"fmt"
	"maps"
	"net"
	"net/url"
	"strconv"
	"strings"
)

// DefaultIPMIPort is the RMCP port Ironic assumes when ipmi_port is absent.
const DefaultIPMIPort = 623

// Masked is what Ironic shows in place of a secret.
const Masked = "******"

// DriverInfo holds the driver's access details under Ironic's keys
// (ipmi_address, redfish_password, ...). It is a free-form map, as in Ironic,
// so unknown keys survive a round trip; IPMI and Redfish parse it.
type DriverInfo map[string]any

func (d DriverInfo) clone() DriverInfo { return maps.Clone(d) }

// IsSecretKey reports whether a driver_info key holds a secret that must be
// masked wherever the node is shown. Ironic masks keys containing "password"
// or "secret", and private keys.
func IsSecretKey(key string) bool {
	k := strings.ToLower(key)
	return strings.Contains(k, "password") || strings.Contains(k, "secret") || strings.HasSuffix(k, "_key")
}

// Masked returns a copy with every secret value replaced by "******".
func (d DriverInfo) Masked() DriverInfo {
	if d == nil {
		return nil
	}
	m := make(DriverInfo, len(d))
	for k, v := range d {
		if IsSecretKey(k) && v != nil && v != "" {
			v = Masked
		}
		m[k] = v
	}
	return m
}

// IPMIInfo is the parsed driver_info of an ipmi node.
type IPMIInfo struct {
	Address  string
	Port     int
	Username string
	Password string
	// CipherSuite is the RMCP+ cipher suite to use; -1 means discover
	// automatically, falling back to suite 3.
	CipherSuite int
}

// RedfishInfo is the parsed driver_info of a redfish node.
type RedfishInfo struct {
	// Endpoint is the BMC's base URL: scheme and host[:port], no path.
	Endpoint string
	// SystemID is the system's resource path (/redfish/v1/Systems/1), or ""
	// when the BMC is expected to manage exactly one system.
	SystemID string
	Username string
	Password string
	// VerifyCA is false when TLS certificates are not verified; CAFile, when
	// set, is the CA bundle used instead of the system's.
	VerifyCA bool
	CAFile   string
	// AuthType is "basic" (default) or "session", as Ironic's redfish_auth_type.
	AuthType string
}

// IPMI parses the driver_info of an ipmi node.
func (d DriverInfo) IPMI() (IPMIInfo, error) {
	info := IPMIInfo{Port: DefaultIPMIPort, CipherSuite: -1}
	var err error
	if info.Address, err = d.requiredString("ipmi_address"); err != nil {
		return info, err
	}
	if strings.ContainsAny(info.Address, "/ ") || strings.Contains(info.Address, "://") {
		return info, invalid("driver_info.ipmi_address", ErrMalformedDriverInfo, "must be a host name or IP address, got %q", info.Address)
	}
	if info.Port, err = d.optionalInt("ipmi_port", DefaultIPMIPort); err != nil {
		return info, err
	}
	if info.Port < 1 || info.Port > 65535 {
		return info, invalid("driver_info.ipmi_port", ErrMalformedDriverInfo, "must be between 1 and 65535, got %d", info.Port)
	}
	if info.Username, err = d.optionalString("ipmi_username"); err != nil {
		return info, err
	}
	if info.Password, err = d.optionalString("ipmi_password"); err != nil {
		return info, err
	}
	if info.CipherSuite, err = d.optionalInt("ipmi_cipher_suite", -1); err != nil {
		return info, err
	}
	if info.CipherSuite < -1 || info.CipherSuite > 19 {
		return info, invalid("driver_info.ipmi_cipher_suite", ErrMalformedDriverInfo, "must be an RMCP+ cipher suite between 0 and 19, got %d", info.CipherSuite)
	}
	return info, nil
}

// Redfish parses the driver_info of a redfish node.
func (d DriverInfo) Redfish() (RedfishInfo, error) {
	info := RedfishInfo{VerifyCA: true, AuthType: "basic"}
	addr, err := d.requiredString("redfish_address")
	if err != nil {
		return info, err
	}
	if info.Endpoint, err = parseRedfishAddress(addr); err != nil {
		return info, err
	}
	sys, err := d.optionalString("redfish_system_id")
	if err != nil {
		return info, err
	}
	if sys != "" && !strings.HasPrefix(sys, "/") {
		// A bare identifier is accepted for convenience; Ironic stores the path.
		sys = "/redfish/v1/Systems/" + sys
	}
	info.SystemID = strings.TrimRight(sys, "/")
	if info.Username, err = d.optionalString("redfish_username"); err != nil {
		return info, err
	}
	if info.Password, err = d.optionalString("redfish_password"); err != nil {
		return info, err
	}
	if err := d.parseVerifyCA(&info); err != nil {
		return info, err
	}
	if info.AuthType, err = d.optionalString("redfish_auth_type"); err != nil {
		return info, err
	}
	switch info.AuthType {
	case "":
		info.AuthType = "basic"
	case "basic", "session":
	default:
		return info, invalid("driver_info.redfish_auth_type", ErrMalformedDriverInfo, "must be basic or session, got %q", info.AuthType)
	}
	return info, nil
}

// parseRedfishAddress accepts what Ironic accepts: a URL with http or https,
// or a bare host[:port] that means https.
func parseRedfishAddress(addr string) (string, error) {
	raw := addr
	if !strings.Contains(raw, "://") {
		raw = "https://" + raw
	}
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") || (u.Path != "" && u.Path != "/") || u.User != nil {
		return "", invalid("driver_info.redfish_address", ErrMalformedDriverInfo, "must be http(s)://host[:port] without a path or credentials, got %q", redactURL(addr))
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return "", invalid("driver_info.redfish_address", ErrMalformedDriverInfo, "has an invalid port %q", p)
		}
	}
	if h := u.Hostname(); h == "" || strings.ContainsAny(h, " /") {
		return "", invalid("driver_info.redfish_address", ErrMalformedDriverInfo, "has an invalid host %q", h)
	}
	return u.Scheme + "://" + u.Host, nil
}

// redactURL keeps a credential someone put into a URL out of error messages.
func redactURL(s string) string {
	// The userinfo ends at the last '@', as net/url reads it.
	if i := strings.LastIndex(s, "@"); i >= 0 {
		if j := strings.Index(s, "://"); j >= 0 && j < i {
			return s[:j+3] + Masked + s[i:]
		}
		return Masked + s[i:]
	}
	return s
}

func (d DriverInfo) parseVerifyCA(info *RedfishInfo) error {
	v, ok := d["redfish_verify_ca"]
	if !ok || v == nil {
		return nil
	}
	switch x := v.(type) {
	case bool:
		info.VerifyCA = x
		return nil
	case string:
		if b, err := strconv.ParseBool(x); err == nil {
			info.VerifyCA = b
			return nil
		}
		if strings.HasPrefix(x, "/") {
			info.CAFile = x
			return nil
		}
	}
	return invalid("driver_info.redfish_verify_ca", ErrMalformedDriverInfo, "must be a boolean or the absolute path of a CA bundle")
}

func (d DriverInfo) requiredString(key string) (string, error) {
	v, err := d.optionalString(key)
	if err != nil {
		return "", err
	}
	if strings.TrimSpace(v) == "" {
		return "", invalid("driver_info."+key, ErrMissingDriverInfo, "is required")
	}
	return v, nil
}

func (d DriverInfo) optionalString(key string) (string, error) {
	v, ok := d[key]
	if !ok || v == nil {
		return "", nil
	}
	s, ok := v.(string)
	if !ok {
		return "", invalid("driver_info."+key, ErrMalformedDriverInfo, "must be a string")
	}
	return s, nil
}

// optionalInt accepts a JSON number or a decimal string, as Ironic does for
// ports given on the command line.
func (d DriverInfo) optionalInt(key string, def int) (int, error) {
	v, ok := d[key]
	if !ok || v == nil || v == "" {
		return def, nil
	}
	switch x := v.(type) {
	case float64:
		if x == float64(int(x)) {
			return int(x), nil
		}
	case int:
		return x, nil
	case int64:
		return int(x), nil
	case string:
		if n, err := strconv.Atoi(strings.TrimSpace(x)); err == nil {
			return n, nil
		}
	}
	return 0, invalid("driver_info."+key, ErrMalformedDriverInfo, "must be an integer, got %v", v)
}

// HostPort joins an IPMI address and port for dialing and for keys.
func (i IPMIInfo) HostPort() string { return net.JoinHostPort(i.Address, strconv.Itoa(i.Port)) }

// String never prints the password.
func (i IPMIInfo) String() string {
	return fmt.Sprintf("ipmi://%s@%s", i.Username, i.HostPort())
}

// String never prints the password.
func (r RedfishInfo) String() string {
	return fmt.Sprintf("redfish %s%s user=%s", r.Endpoint, r.SystemID, r.Username)
}
