// Package redfish drives server power over Redfish with gofish, mapping
// actions as Ironic's redfish power interface does.
package redfish

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/stmcginnis/gofish"
	"github.com/stmcginnis/gofish/schemas"

	"github.com/metalpower/metalpower/internal/bmc"
	"github.com/metalpower/metalpower/internal/node"
)

// Options tunes the client; zero values take the defaults.
type Options struct {
	// PollInterval is the first wait between reads when a reboot must wait
	// for the server to go off (default 500 ms, growing 1.5x).
	PollInterval time.Duration
	// Transport, when set, is used instead of one built from driver_info
	// (tests; sharing one pool of connections across many BMCs).
	Transport http.RoundTripper
	// MaxConcurrentRequests bounds requests in flight on one connection
	// (default 4); a service managing many systems (a chassis manager, the
	// simulator) needs more during a sync pass.
	MaxConcurrentRequests int
	// PowerOnConflictRetries and PowerOnConflictInterval retry a power-on
	// the BMC refuses with 409 (Ironic's [redfish]
	// power_on_conflict_retry_attempts and _interval): Dell iDRAC10 does
	// so for up to a minute after a power-off.
	PowerOnConflictRetries  int
	PowerOnConflictInterval time.Duration
	// UserAgent, when set, is sent instead of gofish's: it names the
	// worker's conductor group in the BMC's logs.
	UserAgent string
}

// Conn is a connection to one Redfish service (an endpoint and its
// credentials), shared by every system it manages: one HTTP keep-alive
// pool, one session at most. Safe for concurrent use.
type Conn struct {
	info Info
	opts Options

	mu  sync.Mutex
	api *gofish.APIClient
}

// Dial returns a connection to info's endpoint; it connects on first use.
func Dial(info Info, opts Options) *Conn {
	if opts.PollInterval <= 0 {
		opts.PollInterval = 500 * time.Millisecond
	}
	if opts.MaxConcurrentRequests <= 0 {
		opts.MaxConcurrentRequests = 4
	}
	return &Conn{info: info, opts: opts}
}

// System returns a handle on one system of the service; path "" means the
// service's only system. Closing the handle leaves the connection open.
func (c *Conn) System(path string) *Client {
	return &Client{conn: c, info: c.info, system: path}
}

// Client manages one Redfish system. Safe for concurrent use.
type Client struct {
	conn *Conn
	info Info
	owns bool

	mu     sync.Mutex
	system string // resolved system path
}

var _ bmc.PowerManager = (*Client)(nil)

// New returns a client for the system in info on a connection of its own.
// It connects on first use and keeps the connection (and, with session
// auth, the session) for reuse.
func New(info Info, opts Options) *Client {
	c := Dial(info, opts).System(info.SystemID)
	c.owns = true
	return c
}

// Ironic's GET_POWER_STATE_MAP: a transition reports where it is going.
var powerStates = map[schemas.PowerState]string{
	schemas.OnPowerState:          node.PowerOn,
	schemas.PoweringOnPowerState:  node.PowerOn,
	schemas.OffPowerState:         node.PowerOff,
	schemas.PoweringOffPowerState: node.PowerOff,
}

// PowerState reads the system's PowerState.
func (c *Client) PowerState(ctx context.Context) (string, error) {
	const op = "get power state"
	state := "" // a state Ironic cannot map is no state (None)
	err := c.withAPI(ctx, op, func(api *gofish.APIClient) error {
		path, err := c.systemPath(ctx, api, op)
		if err != nil {
			return err
		}
		// Only PowerState is decoded: decoding the whole ComputerSystem
		// was 43% of a worker's processor time in a sync pass.
		resp, err := api.WithContext(ctx).Get(path)
		if err != nil {
			return c.classify(ctx, op, err)
		}
		defer resp.Body.Close()
		var sys struct{ PowerState schemas.PowerState }
		if err := json.NewDecoder(resp.Body).Decode(&sys); err != nil {
			return c.classify(ctx, op, fmt.Errorf("decode %s: %w", path, err))
		}
		if s, ok := powerStates[sys.PowerState]; ok {
			state = s
		}
		return nil
	})
	if err != nil {
		return "", err
	}
	return state, nil
}

// SetPowerState maps Ironic's actions onto reset types: on → On,
// off → ForceOff, soft reboot → GracefulRestart, soft off →
// GracefulShutdown. A reboot of a server that is on is ForceOff, wait
// until off, then On, as Ironic's redfish driver (ForceRestart is
// unreliable on several vendors); with disable_power_off it is
// ForceRestart, and nothing that powers the node off is sent. A reboot
// of a server that is off powers it on. Only reset types the system
// advertises are sent.
func (c *Client) SetPowerState(ctx context.Context, target string, p bmc.Policy) error {
	op := "set power state to " + target
	if p.DisablePowerOff && (target == node.PowerOff || target == node.SoftPowerOff) {
		return &bmc.Error{Kind: bmc.Unsupported, Op: op, BMC: c.info.Endpoint, Err: bmc.ErrPowerOffDisabled}
	}
	return c.withAPI(ctx, op, func(api *gofish.APIClient) error { return c.setPowerState(ctx, api, target, p, op) })
}

func (c *Client) setPowerState(ctx context.Context, api *gofish.APIClient, target string, p bmc.Policy, op string) error {
	sys, err := c.getSystem(ctx, api, op)
	if err != nil {
		return err
	}
	allowed, err := sys.GetSupportedResetTypes()
	if err != nil {
		return c.classify(ctx, op, err)
	}
	has := func(t schemas.ResetType) bool { return len(allowed) == 0 || slices.Contains(allowed, t) }
	first := func(types ...schemas.ResetType) (schemas.ResetType, bool) {
		for _, t := range types {
			if has(t) {
				return t, true
			}
		}
		return "", false
	}

	var reset schemas.ResetType
	var ok bool
	isOn := powerStates[sys.PowerState] == node.PowerOn
	switch target {
	case node.PowerOn:
		reset, ok = first(schemas.OnResetType, schemas.ForceOnResetType)
	case node.PowerOff:
		reset, ok = first(schemas.ForceOffResetType)
	case node.SoftPowerOff:
		reset, ok = first(schemas.GracefulShutdownResetType)
	case node.Reboot:
		switch {
		case !isOn:
			reset, ok = first(schemas.OnResetType, schemas.ForceOnResetType)
		case p.DisablePowerOff:
			reset, ok = first(schemas.ForceRestartResetType)
		case has(schemas.ForceOffResetType):
			return c.offThenOn(ctx, sys, op)
		default:
			// A system without ForceOff: its own restart is all there is.
			reset, ok = first(schemas.ForceRestartResetType, schemas.PowerCycleResetType)
		}
	case node.SoftReboot:
		if !isOn {
			reset, ok = first(schemas.OnResetType, schemas.ForceOnResetType)
			break
		}
		reset, ok = first(schemas.GracefulRestartResetType)
	default:
		return &bmc.Error{Kind: bmc.Unsupported, Op: op, BMC: c.info.Endpoint, Err: bmc.ErrUnsupportedTarget}
	}
	if !ok {
		return &bmc.Error{Kind: bmc.Unsupported, Op: op, BMC: c.info.Endpoint,
			Err: fmt.Errorf("the system advertises no reset type for %q (allowed: %v)", target, allowed)}
	}
	return c.reset(ctx, sys, reset, op)
}

// reset sends one reset, retrying a power-on refused with 409.
func (c *Client) reset(ctx context.Context, sys *schemas.ComputerSystem, reset schemas.ResetType, op string) error {
	powerOn := reset == schemas.OnResetType || reset == schemas.ForceOnResetType
	for attempt := 0; ; attempt++ {
		_, err := sys.Reset(reset)
		if err == nil {
			return nil
		}
		var rerr *schemas.Error
		if !powerOn || attempt >= c.conn.opts.PowerOnConflictRetries || !errors.As(err, &rerr) || rerr.HTTPReturnedStatusCode != http.StatusConflict {
			return c.classify(ctx, op, err)
		}
		select {
		case <-ctx.Done():
			return c.classify(ctx, op, err)
		case <-time.After(c.conn.opts.PowerOnConflictInterval):
		}
	}
}

// offThenOn reboots a system that is on: ForceOff, wait until off, On.
func (c *Client) offThenOn(ctx context.Context, sys *schemas.ComputerSystem, op string) error {
	if _, err := sys.Reset(schemas.ForceOffResetType); err != nil {
		return c.classify(ctx, op, err)
	}
	if err := bmc.WaitForState(ctx, c.PowerState, node.PowerOff, c.conn.opts.PollInterval); err != nil {
		return c.classify(ctx, op, err)
	}
	reset := schemas.OnResetType
	if allowed, _ := sys.GetSupportedResetTypes(); len(allowed) > 0 && !slices.Contains(allowed, reset) {
		reset = schemas.ForceOnResetType
	}
	return c.reset(ctx, sys, reset, op)
}

// withAPI runs fn on the connection's API client. When the service has
// expired the session since it was made (SessionTimeout, a BMC reboot),
// the request gets 401: the session is dropped, a new one made, and fn runs
// once more. A 401 on a session made by this very call is not retried: the
// credentials are wrong, and another login could lock the account.
func (c *Client) withAPI(ctx context.Context, op string, fn func(*gofish.APIClient) error) error {
	for retried := false; ; retried = true {
		api, fresh, err := c.conn.connect(ctx, op)
		if err != nil {
			return err
		}
		err = fn(api)
		if err == nil || fresh || retried || c.info.AuthType != "session" || !unauthorized(err) {
			return err
		}
		c.conn.expire(api)
	}
}

func unauthorized(err error) bool {
	var rerr *schemas.Error
	return errors.As(err, &rerr) && rerr.HTTPReturnedStatusCode == http.StatusUnauthorized
}

// getSystem fetches the system with ctx bounding the request.
func (c *Client) getSystem(ctx context.Context, api *gofish.APIClient, op string) (*schemas.ComputerSystem, error) {
	path, err := c.systemPath(ctx, api, op)
	if err != nil {
		return nil, err
	}
	sys, err := schemas.GetComputerSystem(api.WithContext(ctx), path)
	if err != nil {
		return nil, c.classify(ctx, op, err)
	}
	return sys, nil
}

// systemPath resolves "" to the service's only system.
func (c *Client) systemPath(ctx context.Context, api *gofish.APIClient, op string) (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.system != "" {
		return c.system, nil
	}
	systems, err := api.WithContext(ctx).Service.Systems()
	if err != nil {
		return "", c.classify(ctx, op, err)
	}
	if len(systems) != 1 {
		return "", &bmc.Error{Kind: bmc.Config, Op: op, BMC: c.info.Endpoint,
			Err: fmt.Errorf("the BMC manages %d systems: set driver_info redfish_system_id", len(systems))}
	}
	c.system = systems[0].ODataID
	return c.system, nil
}

// connect returns the connection's API client, connecting on first use;
// fresh reports a connection (with session auth, a login) made just now.
func (c *Conn) connect(ctx context.Context, op string) (api *gofish.APIClient, fresh bool, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.api != nil {
		return c.api, false, nil
	}
	httpClient, err := c.httpClient()
	if err != nil {
		return nil, false, &bmc.Error{Kind: bmc.Config, Op: op, BMC: c.info.Endpoint, Err: err}
	}
	api, err = gofish.ConnectContext(ctx, gofish.ClientConfig{
		Endpoint:   c.info.Endpoint,
		Username:   c.info.Username,
		Password:   c.info.Password,
		BasicAuth:  c.info.AuthType != "session",
		HTTPClient: httpClient,
		// Our own transport is already set up; keep-alive saves a TCP (and
		// TLS) handshake per call, which is most of a read's latency.
		NoModifyTransport:     true,
		ReuseConnections:      true,
		MaxConcurrentRequests: int64(c.opts.MaxConcurrentRequests),
	})
	if err != nil {
		return nil, false, classify(ctx, c.info, op, err)
	}
	c.api = api
	return api, true, nil
}

// expire forgets api's session, which the service no longer knows; no
// logout is sent, since its token is refused. The next call logs in anew.
func (c *Conn) expire(api *gofish.APIClient) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.api == api {
		c.api = nil
	}
}

func (c *Conn) httpClient() (*http.Client, error) {
	if c.opts.Transport != nil {
		return &http.Client{Transport: retryStale{next: c.opts.Transport, agent: c.opts.UserAgent}}, nil
	}
	tlsConf := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: !c.info.VerifyCA} //nolint:gosec // operator's choice, as Ironic's redfish_verify_ca=False
	if c.info.CAFile != "" {
		pem, err := os.ReadFile(c.info.CAFile)
		if err != nil {
			return nil, fmt.Errorf("redfish_verify_ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("redfish_verify_ca: no certificate in %s", c.info.CAFile)
		}
		tlsConf.RootCAs = pool
	}
	return &http.Client{Transport: retryStale{agent: c.opts.UserAgent, next: &http.Transport{
		Proxy:               http.ProxyFromEnvironment,
		DialContext:         (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:     tlsConf,
		TLSHandshakeTimeout: 10 * time.Second,
		MaxIdleConnsPerHost: c.opts.MaxConcurrentRequests,
		IdleConnTimeout:     IdleConnTimeout,
	}}}, nil
}

// Close closes the connection when the client owns it (New); a handle
// from Conn.System leaves the shared connection to its owner.
func (c *Client) Close() error {
	if c.owns {
		return c.conn.Close()
	}
	return nil
}

// Close logs out of the session (session auth), so the BMC's session table
// never fills, and drops idle connections. A later call reconnects.
func (c *Conn) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.api != nil {
		c.api.Logout()
		c.api.HTTPClient.CloseIdleConnections()
		c.api = nil
	}
	return nil
}

func (c *Client) classify(ctx context.Context, op string, err error) error {
	return classify(ctx, c.info, op, err)
}

// classify turns a gofish or transport error into a bmc.Error.
func classify(ctx context.Context, info Info, op string, err error) error {
	if _, ok := bmc.KindOf(err); ok {
		return err
	}
	kind := bmc.Transient
	var rerr *schemas.Error
	var uerr *url.Error
	var certErr *tls.CertificateVerificationError
	var unknownAuth x509.UnknownAuthorityError
	var hostErr x509.HostnameError
	switch {
	case ctx.Err() != nil || errors.Is(err, context.DeadlineExceeded):
		kind = bmc.Transient
	case errors.As(err, &rerr):
		kind = statusKind(rerr)
	case errors.As(err, &certErr), errors.As(err, &unknownAuth), errors.As(err, &hostErr):
		kind = bmc.Config
	case errors.As(err, &uerr):
		kind = bmc.Transient
	case strings.Contains(err.Error(), "is not supported by this service"):
		kind = bmc.Unsupported
	}
	return &bmc.Error{Kind: kind, Op: op, BMC: info.Endpoint, Err: bmc.Scrub(err, info.Password)}
}

// statusKind sorts Redfish HTTP answers. 409 is transient: iDRAC10 answers
// it to "On" for up to a minute after a power-off (Ironic bug 2162995).
func statusKind(e *schemas.Error) bmc.Kind {
	switch s := e.HTTPReturnedStatusCode; {
	case s == http.StatusUnauthorized || s == http.StatusForbidden:
		return bmc.Auth
	case s == http.StatusNotFound:
		return bmc.Config
	case s == http.StatusBadRequest || s == http.StatusMethodNotAllowed || s == http.StatusNotImplemented:
		return bmc.Unsupported
	}
	return bmc.Transient
}
