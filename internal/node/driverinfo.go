package node

import (
	"maps"
	"strconv"
	"strings"

	"github.com/metalpower/metalpower/internal/bmc"
)

// Masked is what Ironic shows in place of a secret.
const Masked = "******"

// DriverInfo holds the driver's access details under Ironic's keys
// (ipmi_address, redfish_password, ...). It is a free-form map, as in Ironic,
// so unknown keys survive a round trip; each driver parses it (bmc.Driver).
type DriverInfo map[string]any

func (d DriverInfo) clone() DriverInfo { return maps.Clone(d) }

// IsSecretKey reports whether a driver_info key holds a secret that must be
// masked wherever the node is shown: a key a driver declares secret, and,
// as Ironic masks them, any key containing "password" or "secret" and
// private keys.
func IsSecretKey(key string) bool {
	k := strings.ToLower(key)
	return strings.Contains(k, "password") || strings.Contains(k, "secret") || strings.HasSuffix(k, "_key") || bmc.SecretField(key)
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

// RequiredString returns key's string value, which must be present and
// not blank.
func (d DriverInfo) RequiredString(key string) (string, error) {
	v, err := d.OptionalString(key)
	if err != nil {
		return "", err
	}
	if strings.TrimSpace(v) == "" {
		return "", InvalidField("driver_info."+key, ErrMissingDriverInfo, "is required")
	}
	return v, nil
}

// OptionalString returns key's string value, "" when absent.
func (d DriverInfo) OptionalString(key string) (string, error) {
	v, ok := d[key]
	if !ok || v == nil {
		return "", nil
	}
	s, ok := v.(string)
	if !ok {
		return "", InvalidField("driver_info."+key, ErrMalformedDriverInfo, "must be a string")
	}
	return s, nil
}

// OptionalInt accepts a JSON number or a decimal string, as Ironic does for
// ports given on the command line.
func (d DriverInfo) OptionalInt(key string, def int) (int, error) {
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
	return 0, InvalidField("driver_info."+key, ErrMalformedDriverInfo, "must be an integer, got %v", v)
}

// Access parses the node's driver_info by its driver's rules: what the
// driver needs to reach the BMC, or a ValidationError in Ironic's words.
func (n *Node) Access() (bmc.Access, error) {
	d, err := bmc.Lookup(n.Driver)
	if err != nil {
		return nil, InvalidField("driver", bmc.ErrUnknownDriver, "%q: use %s", n.Driver, bmc.NameList())
	}
	return d.Parse(n.DriverInfo)
}

// BMC names the node's BMC without credentials, for summaries and logs;
// "unknown" when its driver_info does not parse.
func (n *Node) BMC() string {
	a, err := n.Access()
	if err != nil {
		return "unknown"
	}
	return a.BMC()
}
