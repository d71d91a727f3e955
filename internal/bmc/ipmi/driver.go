package ipmi

import (
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/metalpower/metalpower/internal/bmc"
	"github.com/metalpower/metalpower/internal/config"
	"github.com/metalpower/metalpower/internal/node"
)

// Name is the driver's name in a node's driver field.
const Name = "ipmi"

// DefaultPort is the RMCP port Ironic assumes when ipmi_port is absent.
const DefaultPort = 623

func init() {
	bmc.Register(bmc.Driver{
		Name: Name,
		Fields: []bmc.Field{
			{Name: "ipmi_address", Required: true, Description: "IP address or host name of the BMC."},
			{Name: "ipmi_port", Default: DefaultPort, Description: "Remote IPMI RMCP port."},
			{Name: "ipmi_username", Description: "User name on the BMC; empty for the anonymous user."},
			{Name: "ipmi_password", Secret: true, Description: "Password of ipmi_username."},
			{Name: "ipmi_cipher_suite", Description: "RMCP+ cipher suite (0-19); absent: discovered, falling back to 3."},
		},
		Supports: bmc.Supports{SoftPowerOff: true, Reboot: true, SoftReboot: true},
		Section:  Name,
		Parse:    func(info map[string]any) (bmc.Access, error) { return ParseDriverInfo(info) },
		NewConnector: func(env bmc.Env) bmc.Connector {
			opts, _ := env.Options.(config.IPMI)
			return newConnector(time.Duration(opts.MinCommandInterval)*time.Second, env.SharedPace)
		},
	})
}

// Info is the parsed driver_info of an ipmi node.
type Info struct {
	Address  string
	Port     int
	Username string
	Password string
	// CipherSuite is the RMCP+ cipher suite to use; -1 means discover
	// automatically, falling back to suite 3.
	CipherSuite int
}

// ParseDriverInfo parses the driver_info of an ipmi node.
func ParseDriverInfo(d node.DriverInfo) (Info, error) {
	info := Info{Port: DefaultPort, CipherSuite: -1}
	var err error
	if info.Address, err = d.RequiredString("ipmi_address"); err != nil {
		return info, err
	}
	if strings.ContainsAny(info.Address, "/ ") || strings.Contains(info.Address, "://") {
		return info, node.InvalidField("driver_info.ipmi_address", node.ErrMalformedDriverInfo, "must be a host name or IP address, got %q", info.Address)
	}
	if info.Port, err = d.OptionalInt("ipmi_port", DefaultPort); err != nil {
		return info, err
	}
	if info.Port < 1 || info.Port > 65535 {
		return info, node.InvalidField("driver_info.ipmi_port", node.ErrMalformedDriverInfo, "must be between 1 and 65535, got %d", info.Port)
	}
	if info.Username, err = d.OptionalString("ipmi_username"); err != nil {
		return info, err
	}
	if info.Password, err = d.OptionalString("ipmi_password"); err != nil {
		return info, err
	}
	if info.CipherSuite, err = d.OptionalInt("ipmi_cipher_suite", -1); err != nil {
		return info, err
	}
	if info.CipherSuite < -1 || info.CipherSuite > 19 {
		return info, node.InvalidField("driver_info.ipmi_cipher_suite", node.ErrMalformedDriverInfo, "must be an RMCP+ cipher suite between 0 and 19, got %d", info.CipherSuite)
	}
	return info, nil
}

// HostPort joins the address and port for dialing and for keys.
func (i Info) HostPort() string { return net.JoinHostPort(i.Address, strconv.Itoa(i.Port)) }

// BMC is the BMC's host:port.
func (i Info) BMC() string { return i.HostPort() }

// Key is one client per BMC and credentials: one session at a time.
func (i Info) Key() []string {
	return []string{Name, i.HostPort(), i.Username, i.Password, strconv.Itoa(i.CipherSuite)}
}

// Secrets is the password.
func (i Info) Secrets() []string { return []string{i.Password} }

// String never prints the password.
func (i Info) String() string {
	return fmt.Sprintf("ipmi://%s@%s", i.Username, i.HostPort())
}

// sharedPaceLease bounds how long one command holds a BMC's shared pace:
// longer than any command (three attempts of at most 5 s each, or of the
// interval), so only a process that died holding it makes others wait it
// out.
const sharedPaceLease = time.Minute

// connector holds what every client of a process shares: the pace
// ([ipmi] min_command_interval) and the session limit per BMC.
type connector struct{ opts Options }

func newConnector(interval time.Duration, shared bmc.SharedPace) *connector {
	opts := Options{Pacer: NewPacer(interval), Sessions: NewSessions(0)}
	if shared != nil {
		opts.Pacer.WithShared(shared, sharedPaceLease)
	}
	return &connector{opts: opts}
}

func (c *connector) Dial(a bmc.Access) bmc.Conn { return conn{New(a.(Info), c.opts)} }

func (c *connector) Paced() bool { return c.opts.Pacer.Interval() > 0 }

// conn is a client: an IPMI session serves one system.
type conn struct{ *Client }

func (c conn) PowerManager(bmc.Access) bmc.PowerManager { return c.Client }
