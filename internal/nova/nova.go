// Package nova sends Ironic's power-state notifications to OpenStack Nova:
// one "power-update" external event per power change, so that Nova takes
// the bare-metal node's state as the truth instead of forcing its own view
// back onto the hardware at its next power sync.
//
// The request is exactly Ironic's (ironic/common/nova.py): POST
// /os-server-external-events at microversion 2.76 with a single event,
// authenticated with the service credentials of [nova] through Keystone v3.
// Unlike Ironic, which logs every failure and gives up, a failure is
// returned as an *Error that says whether retrying can help, so the caller
// can retry transient failures and drop the rest.
package nova

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack"

	"github.com/metalpower/metalpower/internal/config"
	"github.com/metalpower/metalpower/internal/keystone"
)

// ErrNotConfigured means [nova] lacks auth_url or credentials, so no
// notification can be sent.
var ErrNotConfigured = errors.New("nova notifications not configured")

// microversion is the first one whose schema allows "power-update".
const microversion = "2.76"

// DefaultTimeout bounds each HTTP request when Options.Timeout is zero.
const DefaultTimeout = 30 * time.Second

// Configured reports whether cfg has what a Notifier needs: auth_url and
// either username and password or an application credential ID and
// secret. The error wraps ErrNotConfigured and names what is missing.
// It does not look at send_power_notifications; that is the caller's
// switch.
func Configured(cfg config.Nova) error {
	var missing []string
	if cfg.AuthURL == "" {
		missing = append(missing, "auth_url")
	}
	password := []string{}
	if cfg.Username == "" {
		password = append(password, "username")
	}
	if cfg.Password == "" {
		password = append(password, "password")
	}
	appCred := []string{}
	if cfg.ApplicationCredentialID == "" {
		appCred = append(appCred, "application_credential_id")
	}
	if cfg.ApplicationCredentialSecret == "" {
		appCred = append(appCred, "application_credential_secret")
	}
	switch {
	case len(password) == 0 || len(appCred) == 0:
		// One complete set of credentials.
	case len(password) == 1 && len(appCred) == 2:
		// Half of a password login: name the other half.
		missing = append(missing, password[0])
	case len(appCred) == 1 && len(password) == 2:
		missing = append(missing, appCred[0])
	default:
		missing = append(missing, "username and password (or application_credential_id and application_credential_secret)")
	}
	if len(missing) == 0 {
		return nil
	}
	return fmt.Errorf("%w: [nova] %s not set", ErrNotConfigured, strings.Join(missing, "; "))
}

// Tag maps an Ironic power state to the tag of Nova's power-update event.
// Only "power on" and "power off" have one; callers map reboot targets to
// "power on" first, as Ironic does, and drop everything else.
func Tag(powerState string) (string, bool) {
	switch powerState {
	case "power on":
		return "POWER_ON", true
	case "power off":
		return "POWER_OFF", true
	}
	return "", false
}

// Options tunes a Notifier. The zero value is usable.
type Options struct {
	// HTTPClient is copied and used for Keystone and Nova; nil means a
	// plain http.Client. Set its Transport for custom TLS.
	HTTPClient *http.Client
	// Timeout bounds each HTTP request (default DefaultTimeout). It
	// replaces HTTPClient.Timeout.
	Timeout time.Duration
}

// Notifier sends power-update events to Nova. It is safe for concurrent
// use. It logs in to Keystone on first use and keeps the token and the
// compute endpoint for later calls, re-authenticating once when Nova
// answers 401.
type Notifier struct {
	cfg   config.Nova
	http  http.Client
	avail gophercloud.Availability

	// login holds one token for whoever builds or replaces compute. It is
	// a channel rather than a mutex so that a caller queued behind a slow
	// Keystone can give up when its context ends.
	login   chan struct{}
	compute *gophercloud.ServiceClient // nil until the first successful login
}

// New returns a Notifier for cfg. It does not contact Keystone, so a
// worker can start while Keystone is down; problems with the credentials
// show up in the first PowerUpdate.
func New(cfg config.Nova, opts Options) (*Notifier, error) {
	if err := Configured(cfg); err != nil {
		return nil, err
	}
	if u, err := url.Parse(cfg.AuthURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("[nova] auth_url %q is not an http:// or https:// URL", redactURL(cfg.AuthURL))
	}
	avail, err := keystone.Availability(cfg.Interface)
	if err != nil {
		return nil, fmt.Errorf("[nova] %w", err)
	}
	var client http.Client
	if opts.HTTPClient != nil {
		client = *opts.HTTPClient
	}
	client.Timeout = opts.Timeout
	if client.Timeout <= 0 {
		client.Timeout = DefaultTimeout
	}
	return &Notifier{cfg: cfg, http: client, avail: avail, login: make(chan struct{}, 1)}, nil
}

// authOptions is the Keystone v3 login of [nova].
func (n *Notifier) authOptions() gophercloud.AuthOptions {
	c := n.cfg
	return keystone.Login{AuthURL: c.AuthURL, Username: c.Username, Password: c.Password,
		ProjectName: c.ProjectName, UserDomainName: c.UserDomainName, ProjectDomainName: c.ProjectDomainName,
		ApplicationCredentialID: c.ApplicationCredentialID, ApplicationCredentialSecret: c.ApplicationCredentialSecret,
	}.AuthOptions()
}

// client returns the compute client, logging in first if needed.
func (n *Notifier) client(ctx context.Context) (*gophercloud.ServiceClient, error) {
	select {
	case n.login <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { <-n.login }()
	if n.compute != nil {
		return n.compute, nil
	}

	// openstack.AuthenticatedClient would use http.DefaultClient; build the
	// provider by hand to give it ours.
	provider, err := openstack.NewClient(n.cfg.AuthURL)
	if err != nil {
		return nil, err
	}
	provider.HTTPClient = n.http
	provider.UserAgent.Prepend("metalpower")
	if err := openstack.Authenticate(ctx, provider, n.authOptions()); err != nil {
		return nil, err
	}
	compute, err := openstack.NewComputeV2(provider, gophercloud.EndpointOpts{
		Region:       n.cfg.RegionName,
		Availability: n.avail,
	})
	if err != nil {
		return nil, fmt.Errorf("compute endpoint with interface %q in region %q: %w", n.avail, n.cfg.RegionName, err)
	}
	// The service client sets both OpenStack-API-Version: compute 2.76 and
	// the legacy X-OpenStack-Nova-API-Version: 2.76 from this.
	compute.Microversion = microversion
	n.compute = compute
	return compute, nil
}

// forget drops compute from the cache, if it is still the cached one, so
// that the next call logs in from scratch.
func (n *Notifier) forget(ctx context.Context, compute *gophercloud.ServiceClient) {
	select {
	case n.login <- struct{}{}:
	case <-ctx.Done():
		return // the next 401 will try again
	}
	if n.compute == compute {
		n.compute = nil
	}
	<-n.login
}

type event struct {
	Name       string `json:"name"`
	ServerUUID string `json:"server_uuid"`
	Tag        string `json:"tag"`
}

// okCodes are the statuses whose body is read for the event's own code:
// Nova answers 200 or 207, and, like Ironic, any other non-error status
// is judged by its body too.
var okCodes = func() []int {
	codes := make([]int, 0, 100)
	for c := 200; c < 300; c++ {
		codes = append(codes, c)
	}
	return codes
}()

// maxResponse bounds the answer read; one event's answer is tiny.
const maxResponse = 1 << 20

// PowerUpdate tells Nova that the node hosting instanceUUID is now in
// powerState ("power on" or "power off"). It returns nil once Nova has
// accepted the event, and otherwise an *Error; see IsPermanent.
func (n *Notifier) PowerUpdate(ctx context.Context, instanceUUID, powerState string) error {
	tag, ok := Tag(powerState)
	if !ok {
		return &Error{
			Permanent: true,
			Msg:       fmt.Sprintf("nova: power-update for instance %s: invalid power state %q (only \"power on\" and \"power off\" are sent)", instanceUUID, powerState),
		}
	}
	what := fmt.Sprintf("nova: power-update %s for instance %s", tag, instanceUUID)

	compute, err := n.client(ctx)
	if err != nil {
		return n.fail(what+": logging in to Keystone", err, nil)
	}
	body := map[string][]event{"events": {{Name: "power-update", ServerUUID: instanceUUID, Tag: tag}}}
	resp, err := compute.Post(ctx, compute.ServiceURL("os-server-external-events"), body, nil, &gophercloud.RequestOpts{
		OkCodes:          okCodes,
		KeepResponseBody: true,
	})
	if err != nil {
		var reauth *gophercloud.ErrUnableToReauthenticate
		if errors.As(err, &reauth) || gophercloud.ResponseCodeIs(err, http.StatusUnauthorized) {
			// The cached login is no good; start over next time.
			n.forget(ctx, compute)
		}
		return n.fail(what, err, compute)
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
	if err != nil {
		return n.fail(what+": reading the answer", err, compute)
	}
	if e := eventResult(resp.StatusCode, answer); e != nil {
		e.Msg = n.redact(what+": "+e.Msg, compute)
		return e
	}
	return nil
}

// fail classifies err and prefixes its message with what was attempted.
func (n *Notifier) fail(what string, err error, compute *gophercloud.ServiceClient) error {
	e := classify(err)
	e.Msg = n.redact(what+": "+e.Msg, compute)
	return e
}

// redact removes the secrets from msg. None should ever be there, but the
// message is built partly from text other programs wrote.
func (n *Notifier) redact(msg string, compute *gophercloud.ServiceClient) string {
	secrets := []string{n.cfg.Password, n.cfg.ApplicationCredentialSecret}
	if compute != nil {
		secrets = append(secrets, compute.Token())
	}
	for _, s := range secrets {
		if s != "" {
			msg = strings.ReplaceAll(msg, s, "***")
		}
	}
	return msg
}
