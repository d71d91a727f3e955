package bmc

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"
	"time"
)

// Driver is everything metalpower knows about one power driver, registered
// by the driver's own package (as database/sql drivers are): nothing
// outside that package names the driver.
type Driver struct {
	// Name is the node's driver field, Ironic's: "ipmi", "redfish", "snmp".
	Name string
	// Fields are the driver_info keys the driver reads, under Ironic's
	// names, for documentation and masking.
	Fields []Field
	// Supports says which actions beyond power on and off the driver has.
	Supports Supports
	// Section and Options, when Options is not nil, are the driver's
	// configuration section ([snmp]) and a struct value holding its
	// defaults, whose fields carry toml and help tags as config's own
	// sections do. The configuration reads, documents and validates it.
	Section string
	Options any
	// Parse validates a node's driver_info with Ironic's wording and
	// returns what the driver needs to reach the BMC.
	Parse func(info map[string]any) (Access, error)
	// NewConnector returns what hands out this driver's PowerManagers in
	// one process: it keeps what clients of one BMC share (sessions,
	// pacing, connections).
	NewConnector func(env Env) Connector
}

// Field is one driver_info key.
type Field struct {
	Name        string
	Description string
	Required    bool
	// Default is the value assumed when the key is absent (nil: none).
	Default any
	// Secret values are shown as "******" wherever a node is shown.
	Secret bool
}

// Supports lists what a driver can do besides power on and power off.
type Supports struct {
	SoftPowerOff bool
	Reboot       bool
	SoftReboot   bool
}

// Access is a node's parsed driver_info.
type Access interface {
	// BMC names the BMC without credentials (host:port, a URL, a PDU
	// outlet): what summaries, logs and errors show.
	BMC() string
	// Key identifies the connection a client of this BMC may share with
	// other nodes': the address and every credential. The pool keeps
	// only a hash of it.
	Key() []string
	// Secrets are the values to scrub from any error text.
	Secrets() []string
}

// Connector hands out PowerManagers for one driver in one process.
type Connector interface {
	// Dial returns a connection for a's Key, made on first use and kept
	// by the pool until idle.
	Dial(a Access) Conn
	// Paced reports whether a call through this connector may wait for a
	// spacing between commands to one BMC, so callers allow for it.
	Paced() bool
}

// Conn is one connection to a BMC (or a service managing several).
type Conn interface {
	// PowerManager returns the client for the system a describes; closing
	// it leaves the connection open.
	PowerManager(a Access) PowerManager
	Close() error
}

// Env is what a process gives each driver's connector.
type Env struct {
	// Options is the driver's configuration section as configured: a value
	// of the type of Driver.Options (or config's own section for drivers
	// whose options predate the registry).
	Options any
	// Group is the worker's conductor group; SyncWorkers its
	// [conductor] sync_power_state_workers.
	Group       string
	SyncWorkers int
	// SharedPace, when set, keeps a BMC's command spacing across
	// processes (the node store).
	SharedPace SharedPace
}

// SharedPace keeps the pace across processes (the node store does):
// several workers and API processes may talk to one BMC.
type SharedPace interface {
	AcquirePace(ctx context.Context, bmc string, interval, lease time.Duration) (token string, err error)
	ReleasePace(ctx context.Context, bmc, token string) error
}

var (
	mu      sync.RWMutex
	drivers = map[string]*Driver{}
)

// Register makes a driver available. It panics on a duplicate name or a
// driver missing Parse or NewConnector: both are programming errors found
// at start-up.
func Register(d Driver) {
	mu.Lock()
	defer mu.Unlock()
	if d.Name == "" || d.Parse == nil || d.NewConnector == nil {
		panic(fmt.Sprintf("bmc: driver %q registered without a name, Parse or NewConnector", d.Name))
	}
	if _, dup := drivers[d.Name]; dup {
		panic("bmc: driver registered twice: " + d.Name)
	}
	drivers[d.Name] = &d
}

// ErrUnknownDriver is wrapped by Lookup's error.
var ErrUnknownDriver = errors.New("unknown driver")

// Lookup returns the driver registered under name.
func Lookup(name string) (*Driver, error) {
	mu.RLock()
	defer mu.RUnlock()
	if d, ok := drivers[name]; ok {
		return d, nil
	}
	return nil, fmt.Errorf("%w %q: use %s", ErrUnknownDriver, name, joinNames(namesLocked()))
}

// Drivers lists the registered drivers by name.
func Drivers() []*Driver {
	mu.RLock()
	defer mu.RUnlock()
	out := make([]*Driver, 0, len(drivers))
	for _, n := range namesLocked() {
		out = append(out, drivers[n])
	}
	return out
}

// NameList lists the registered drivers' names for a message:
// "ipmi, redfish or snmp".
func NameList() string {
	mu.RLock()
	defer mu.RUnlock()
	return joinNames(namesLocked())
}

func namesLocked() []string {
	names := make([]string, 0, len(drivers))
	for n := range drivers {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func joinNames(names []string) string {
	switch len(names) {
	case 0:
		return "(no driver is registered)"
	case 1:
		return names[0]
	}
	return fmt.Sprintf("%s or %s", joinList(names[:len(names)-1]), names[len(names)-1])
}

func joinList(s []string) string {
	out := s[0]
	for _, x := range s[1:] {
		out += ", " + x
	}
	return out
}

// Parse parses info for the named driver.
func Parse(driver string, info map[string]any) (Access, error) {
	d, err := Lookup(driver)
	if err != nil {
		return nil, err
	}
	return d.Parse(info)
}

// SecretField reports whether any driver declares key a secret.
func SecretField(key string) bool {
	mu.RLock()
	defer mu.RUnlock()
	for _, d := range drivers {
		if slices.ContainsFunc(d.Fields, func(f Field) bool { return f.Secret && f.Name == key }) {
			return true
		}
	}
	return false
}
