package redfish

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/metalpower/metalpower/internal/bmc"
	"github.com/metalpower/metalpower/internal/config"
	"github.com/metalpower/metalpower/internal/node"
)

// Name is the driver's name in a node's driver field.
const Name = "redfish"

func init() {
	bmc.Register(bmc.Driver{
		Name: Name,
		Fields: []bmc.Field{
			{Name: "redfish_address", Required: true, Description: "The BMC's URL (http or https), or host[:port] meaning https."},
			{Name: "redfish_system_id", Description: "Path of the system's resource (/redfish/v1/Systems/1); absent: the service's only system."},
			{Name: "redfish_username", Description: "User name on the BMC."},
			{Name: "redfish_password", Secret: true, Description: "Password of redfish_username."},
			{Name: "redfish_verify_ca", Default: true, Description: "Verify the BMC's certificate (a boolean), or the path of the CA bundle to verify it with."},
			{Name: "redfish_auth_type", Default: "basic", Description: "basic or session."},
		},
		Supports: bmc.Supports{SoftPowerOff: true, Reboot: true, SoftReboot: true},
		Section:  Name,
		Parse:    func(info map[string]any) (bmc.Access, error) { return ParseDriverInfo(info) },
		NewConnector: func(env bmc.Env) bmc.Connector {
			opts, _ := env.Options.(config.Redfish)
			return connector{Options{
				// One Redfish service may manage many of a pass's systems.
				MaxConcurrentRequests:   max(4, env.SyncWorkers),
				PowerOnConflictRetries:  opts.PowerOnConflictRetryAttempts,
				PowerOnConflictInterval: time.Duration(opts.PowerOnConflictRetryInterval) * time.Second,
				UserAgent:               UserAgent(env.Group),
			}}
		},
	})
}

// UserAgent is what a worker of group tells Redfish BMCs it is.
func UserAgent(group string) string {
	return fmt.Sprintf("metalpower (conductor_group=%q)", strings.ToLower(group))
}

// connector dials one Conn per service and credentials; the systems it
// manages share it.
type connector struct{ opts Options }

func (c connector) Dial(a bmc.Access) bmc.Conn { return Dial(a.(Info), c.opts) }

func (connector) Paced() bool { return false }

// PowerManager returns the handle on a's system.
func (c *Conn) PowerManager(a bmc.Access) bmc.PowerManager { return c.System(a.(Info).SystemID) }

// Info is the parsed driver_info of a redfish node.
type Info struct {
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

// ParseDriverInfo parses the driver_info of a redfish node.
func ParseDriverInfo(d node.DriverInfo) (Info, error) {
	info := Info{VerifyCA: true, AuthType: "basic"}
	addr, err := d.RequiredString("redfish_address")
	if err != nil {
		return info, err
	}
	if info.Endpoint, err = parseRedfishAddress(addr); err != nil {
		return info, err
	}
	sys, err := d.OptionalString("redfish_system_id")
	if err != nil {
		return info, err
	}
	if sys != "" && !strings.HasPrefix(sys, "/") {
		// A bare identifier is accepted for convenience; Ironic stores the path.
		sys = "/redfish/v1/Systems/" + sys
	}
	info.SystemID = strings.TrimRight(sys, "/")
	if info.Username, err = d.OptionalString("redfish_username"); err != nil {
		return info, err
	}
	if info.Password, err = d.OptionalString("redfish_password"); err != nil {
		return info, err
	}
	if err := parseVerifyCA(d, &info); err != nil {
		return info, err
	}
	if info.AuthType, err = d.OptionalString("redfish_auth_type"); err != nil {
		return info, err
	}
	switch info.AuthType {
	case "":
		info.AuthType = "basic"
	case "basic", "session":
	default:
		return info, node.InvalidField("driver_info.redfish_auth_type", node.ErrMalformedDriverInfo, "must be basic or session, got %q", info.AuthType)
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
		return "", node.InvalidField("driver_info.redfish_address", node.ErrMalformedDriverInfo, "must be http(s)://host[:port] without a path or credentials, got %q", redactURL(addr))
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return "", node.InvalidField("driver_info.redfish_address", node.ErrMalformedDriverInfo, "has an invalid port %q", p)
		}
	}
	if h := u.Hostname(); h == "" || strings.ContainsAny(h, " /") {
		return "", node.InvalidField("driver_info.redfish_address", node.ErrMalformedDriverInfo, "has an invalid host %q", h)
	}
	return u.Scheme + "://" + u.Host, nil
}

// redactURL keeps a credential someone put into a URL out of error messages.
func redactURL(s string) string {
	// The userinfo ends at the last '@', as net/url reads it.
	if i := strings.LastIndex(s, "@"); i >= 0 {
		if j := strings.Index(s, "://"); j >= 0 && j < i {
			return s[:j+3] + node.Masked + s[i:]
		}
		return node.Masked + s[i:]
	}
	return s
}

func parseVerifyCA(d node.DriverInfo, info *Info) error {
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
	return node.InvalidField("driver_info.redfish_verify_ca", node.ErrMalformedDriverInfo, "must be a boolean or the absolute path of a CA bundle")
}

// BMC is the endpoint and system path.
func (r Info) BMC() string { return r.Endpoint + r.SystemID }

// Key is one connection per service and credentials, whatever the system.
func (r Info) Key() []string {
	return []string{Name, r.Endpoint, r.Username, r.Password, r.AuthType, strconv.FormatBool(r.VerifyCA), r.CAFile}
}

// Secrets is the password.
func (r Info) Secrets() []string { return []string{r.Password} }

// String never prints the password.
func (r Info) String() string {
	return fmt.Sprintf("redfish %s%s user=%s", r.Endpoint, r.SystemID, r.Username)
}
