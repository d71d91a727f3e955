// Package snmp switches server power through a PDU outlet over SNMP, as
// Ironic's snmp power interface does (ironic/drivers/modules/snmp.py):
// the same driver_info, PDU families and [snmp] options, with gosnmp.
package snmp

import (
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/gosnmp/gosnmp"

	"github.com/metalpower/metalpower/internal/bmc"
	"github.com/metalpower/metalpower/internal/node"
)

// Name is the driver's name in a node's driver field.
const Name = "snmp"

// DefaultPort is SNMP's UDP port.
const DefaultPort = 161

// Options are Ironic's [snmp] options.
type Options struct {
	PowerTimeout        int `toml:"power_timeout" help:"Seconds to wait for a PDU outlet to reach the requested state during a reboot (off, then on)."`
	RebootDelay         int `toml:"reboot_delay" help:"Seconds an outlet stays off during a reboot before it is switched on again."`
	UDPTransportTimeout int `toml:"udp_transport_timeout" help:"Seconds to wait for the PDU to answer one SNMP request (Ironic's default 1.0; whole seconds here)."`
	UDPTransportRetries int `toml:"udp_transport_retries" help:"How many times an unanswered SNMP request is sent again."`
}

// DefaultOptions are Ironic's defaults.
var DefaultOptions = Options{PowerTimeout: 10, RebootDelay: 0, UDPTransportTimeout: 1, UDPTransportRetries: 5}

func init() {
	bmc.Register(bmc.Driver{
		Name:   Name,
		Fields: fields,
		// A PDU cuts the outlet: no soft actions; a reboot is off, then on.
		Supports: bmc.Supports{Reboot: true},
		Section:  Name,
		Options:  DefaultOptions,
		Parse:    func(info map[string]any) (bmc.Access, error) { return ParseDriverInfo(info) },
		NewConnector: func(env bmc.Env) bmc.Connector {
			opts, ok := env.Options.(Options)
			if !ok {
				opts = DefaultOptions
			}
			return connector{opts}
		},
	})
}

// fields are Ironic's REQUIRED_PROPERTIES and OPTIONAL_PROPERTIES.
var fields = []bmc.Field{
	{Name: "snmp_driver", Required: true, Description: "PDU manufacturer driver: " + strings.Join(familyNames(), ", ") + "."},
	{Name: "snmp_address", Required: true, Description: "PDU IPv4 address or hostname."},
	{Name: "snmp_outlet", Required: true, Description: "PDU power outlet index (1-based)."},
	{Name: "snmp_version", Default: "1", Description: "SNMP protocol version: 1, 2c or 3."},
	{Name: "snmp_port", Default: DefaultPort, Description: "SNMP port."},
	{Name: "snmp_community", Secret: true, Description: "SNMP community for reads and writes unless snmp_community_read or snmp_community_write is given (versions 1 and 2c)."},
	{Name: "snmp_community_read", Secret: true, Description: "SNMP community for reads; takes precedence over snmp_community."},
	{Name: "snmp_community_write", Secret: true, Description: "SNMP community for writes; takes precedence over snmp_community."},
	{Name: "snmp_user", Description: "SNMPv3 User-based Security Model user name; required for version 3."},
	{Name: "snmp_auth_protocol", Description: "SNMPv3 authentication protocol: " + strings.Join(sortedKeys(authProtocols), ", ") + "; md5 when snmp_auth_key is given, else none."},
	{Name: "snmp_auth_key", Secret: true, Description: "SNMPv3 authentication key, 8 characters or more."},
	{Name: "snmp_priv_protocol", Description: "SNMPv3 privacy protocol: " + strings.Join(sortedKeys(privProtocols), ", ") + "; des when snmp_priv_key is given, else none."},
	{Name: "snmp_priv_key", Secret: true, Description: "SNMPv3 privacy key, 8 characters or more."},
	{Name: "snmp_context_engine_id", Description: "SNMPv3 context engine ID; default the authoritative engine ID."},
	{Name: "snmp_context_name", Description: "SNMPv3 context name; default empty."},
	{Name: "snmp_security", Description: "Deprecated synonym of snmp_user."},
}

// Ironic's protocol names. Ironic's 3des has no gosnmp counterpart and is
// refused. pysnmp's aes192/aes256 extend the key as Reeder (gosnmp's
// AES192C/AES256C), its *blmt variants as Blumenthal.
var (
	authProtocols = map[string]gosnmp.SnmpV3AuthProtocol{"none": gosnmp.NoAuth, "md5": gosnmp.MD5, "sha": gosnmp.SHA,
		"sha224": gosnmp.SHA224, "sha256": gosnmp.SHA256, "sha384": gosnmp.SHA384, "sha512": gosnmp.SHA512}
	privProtocols = map[string]gosnmp.SnmpV3PrivProtocol{"none": gosnmp.NoPriv, "des": gosnmp.DES, "aes": gosnmp.AES,
		"aes192": gosnmp.AES192C, "aes256": gosnmp.AES256C, "aes192blmt": gosnmp.AES192, "aes256blmt": gosnmp.AES256}
)

// Info is the parsed driver_info of an snmp node.
type Info struct {
	Family  string // snmp_driver
	Address string
	Port    int
	Outlet  int
	Version string // "1", "2c" or "3"
	// ReadCommunity and WriteCommunity, for versions 1 and 2c.
	ReadCommunity, WriteCommunity string
	// The SNMPv3 user and keys.
	User                     string
	AuthProtocol, AuthKey    string
	PrivProtocol, PrivKey    string
	ContextEngineID, Context string
}

// invalid is Ironic's InvalidParameterValue for a field.
func invalid(key, format string, args ...any) error {
	return node.InvalidField("driver_info."+key, node.ErrMalformedDriverInfo, format, args...)
}

// missing is Ironic's MissingParameterValue.
func missing(key, format string, args ...any) error {
	return node.InvalidField("driver_info."+key, node.ErrMissingDriverInfo, format, args...)
}

// ParseDriverInfo parses the driver_info of an snmp node as Ironic's
// _parse_driver_info, with its messages.
func ParseDriverInfo(d node.DriverInfo) (Info, error) {
	var info Info
	var absent []string
	for _, k := range []string{"snmp_driver", "snmp_address", "snmp_outlet"} {
		if v, ok := d[k]; !ok || v == nil || v == "" {
			absent = append(absent, "'"+k+"'")
		}
	}
	if len(absent) > 0 {
		return info, missing(strings.Trim(absent[0], "'"), "is required: SNMP driver requires the following parameters to be set in node's driver_info: [%s].", strings.Join(absent, ", "))
	}
	var err error
	if info.Family, err = d.RequiredString("snmp_driver"); err != nil {
		return info, err
	}
	if _, ok := families[info.Family]; !ok && info.Family != auto {
		return info, invalid("snmp_driver", "SNMPPowerDriver: unknown driver: '%s' (use %s)", info.Family, strings.Join(familyNames(), ", "))
	}
	if info.Address, err = d.RequiredString("snmp_address"); err != nil {
		return info, err
	}
	if strings.ContainsAny(info.Address, "/ @") {
		return info, invalid("snmp_address", "must be an IPv4 address or host name, got %q", info.Address)
	}
	if info.Outlet, err = d.OptionalInt("snmp_outlet", 0); err != nil {
		return info, invalid("snmp_outlet", "SNMPPowerDriver: PDU power outlet index is not an integer: %v", d["snmp_outlet"])
	}
	if info.Outlet < 1 {
		return info, invalid("snmp_outlet", "SNMPPowerDriver: PDU power outlet index is 1-based, got %d", info.Outlet)
	}
	if info.Port, err = d.OptionalInt("snmp_port", DefaultPort); err != nil {
		return info, err
	}
	if info.Port < 1 || info.Port > 65535 {
		return info, invalid("snmp_port", "SNMPPowerDriver: SNMP UDP port out of range: %d", info.Port)
	}
	if info.Version, err = d.OptionalString("snmp_version"); err != nil {
		return info, invalid("snmp_version", "SNMPPowerDriver: unknown SNMP version: '%v'", d["snmp_version"])
	}
	switch info.Version {
	case "":
		info.Version = "1"
	case "1", "2c":
	case "3":
		return info, parseV3(d, &info)
	default:
		return info, invalid("snmp_version", "SNMPPowerDriver: unknown SNMP version: '%s'", info.Version)
	}
	community, err := d.OptionalString("snmp_community")
	if err != nil {
		return info, err
	}
	if info.ReadCommunity, err = orElse(d, "snmp_community_read", community); err != nil {
		return info, err
	}
	if info.WriteCommunity, err = orElse(d, "snmp_community_write", community); err != nil {
		return info, err
	}
	if info.ReadCommunity == "" || info.WriteCommunity == "" {
		return info, missing("snmp_community", "is required: SNMP driver requires `snmp_community` or `snmp_community_read`/`snmp_community_write` properties to be set for version %s.", info.Version)
	}
	return info, nil
}

// orElse is key's value when present, else def.
func orElse(d node.DriverInfo, key, def string) (string, error) {
	if _, ok := d[key]; !ok {
		return def, nil
	}
	return d.OptionalString(key)
}

func parseV3(d node.DriverInfo, info *Info) error {
	var err error
	if info.User, err = d.OptionalString("snmp_user"); err != nil {
		return err
	}
	if info.User == "" {
		if info.User, err = d.OptionalString("snmp_security"); err != nil {
			return err
		}
	}
	if info.User == "" {
		return missing("snmp_user", "is required: SNMP driver requires `driver_info/snmp_user` to be set in node configuration for SNMP version 3.")
	}
	for _, k := range []struct {
		key   string
		dst   *string
		known func(string) bool
		what  string
	}{
		{"snmp_auth_protocol", &info.AuthProtocol, func(p string) bool { _, ok := authProtocols[p]; return ok }, "authentication"},
		{"snmp_priv_protocol", &info.PrivProtocol, func(p string) bool { _, ok := privProtocols[p]; return ok }, "privacy"},
	} {
		if *k.dst, err = d.OptionalString(k.key); err != nil {
			return err
		}
		if *k.dst != "" && !k.known(*k.dst) {
			return invalid(k.key, "SNMPPowerDriver: unknown SNMPv3 %s protocol `driver_info/%s` %s, known protocols are: %s", k.what, k.key, *k.dst, strings.Join(knownProtocols(k.key), ", "))
		}
	}
	for _, k := range []struct {
		key, what string
		dst       *string
	}{{"snmp_auth_key", "authentication", &info.AuthKey}, {"snmp_priv_key", "privacy", &info.PrivKey}} {
		if *k.dst, err = d.OptionalString(k.key); err != nil {
			return err
		}
		if _, ok := d[k.key]; ok && len(*k.dst) < 8 {
			return invalid(k.key, "SNMPPowerDriver: short SNMPv3 %s key `driver_info/%s` (8+ chars required)", k.what, k.key)
		}
	}
	if info.AuthKey != "" && info.AuthProtocol == "" {
		info.AuthProtocol = "md5"
	}
	if info.PrivKey != "" && info.PrivProtocol == "" {
		info.PrivProtocol = "des"
	}
	switch {
	case info.PrivProtocol != "" && info.PrivProtocol != "none" && (info.AuthProtocol == "" || info.AuthProtocol == "none"):
		return missing("snmp_auth_protocol", "SNMPPowerDriver: SNMPv3 privacy requires authentication. Please add `driver_info/auth_protocol` property to node configuration.")
	case info.AuthProtocol != "" && info.AuthProtocol != "none" && info.AuthKey == "":
		return missing("snmp_auth_key", "SNMPPowerDriver: missing SNMPv3 authentication key while `driver_info/snmp_auth_protocol` is present. Please add `driver_info/snmp_auth_key` to node configuration.")
	case info.PrivProtocol != "" && info.PrivProtocol != "none" && info.PrivKey == "":
		return missing("snmp_priv_key", "SNMPPowerDriver: missing SNMPv3 privacy key while `driver_info/snmp_priv_protocol` is present. Please add `driver_info/snmp_priv_key` to node configuration.")
	}
	if info.ContextEngineID, err = d.OptionalString("snmp_context_engine_id"); err != nil {
		return err
	}
	info.Context, err = d.OptionalString("snmp_context_name")
	return err
}

func knownProtocols(key string) []string {
	if key == "snmp_auth_protocol" {
		return sortedKeys(authProtocols)
	}
	return sortedKeys(privProtocols)
}

// HostPort is the agent's UDP address.
func (i Info) HostPort() string { return net.JoinHostPort(i.Address, strconv.Itoa(i.Port)) }

// BMC names the agent and the outlet: the "BMC" of a node on a PDU.
func (i Info) BMC() string { return fmt.Sprintf("%s outlet %d", i.HostPort(), i.Outlet) }

// Key is one connection per agent and credentials: the outlets of one PDU
// share it, and take turns on it.
func (i Info) Key() []string {
	return []string{Name, i.HostPort(), i.Family, i.Version, i.ReadCommunity, i.WriteCommunity, i.User,
		i.AuthProtocol, i.AuthKey, i.PrivProtocol, i.PrivKey, i.ContextEngineID, i.Context}
}

// Secrets are the communities and keys.
func (i Info) Secrets() []string {
	return []string{i.ReadCommunity, i.WriteCommunity, i.AuthKey, i.PrivKey}
}

// String never prints a community or key.
func (i Info) String() string {
	return fmt.Sprintf("snmp v%s %s %s", i.Version, i.Family, i.BMC())
}

// connector dials one PDU per agent and credentials.
type connector struct{ opts Options }

func (c connector) Dial(a bmc.Access) bmc.Conn { return newPDU(a.(Info), c.opts) }

// Paced: Ironic spaces no SNMP commands, and a PDU serves its outlets one
// request at a time on the shared connection anyway.
func (connector) Paced() bool { return false }

func seconds(n int) time.Duration { return time.Duration(n) * time.Second }
