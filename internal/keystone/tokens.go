package keystone

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack"
	"github.com/gophercloud/gophercloud/v2/openstack/identity/v3/tokens"

	"github.com/metalpower/metalpower/internal/config"
	"github.com/metalpower/metalpower/internal/policy"
)

// UnavailableError is Keystone failing to answer whether a token is
// valid (down, slow, refusing the service user): the API answers 503,
// never 401, since the token may well be good.
type UnavailableError struct{ Reason string }

func (e *UnavailableError) Error() string {
	return "Keystone is unavailable, so the request's token cannot be validated: " + e.Reason
}

// Options configure a Validator; [keystone_authtoken] supplies them.
type Options struct {
	Login Login
	// WWWAuthenticateURI is sent to unauthenticated clients; AuthURL when
	// empty.
	WWWAuthenticateURI string
	// RegionName and Interface pick the identity endpoint tokens are
	// validated at from the catalog; Login.AuthURL when the catalog has
	// none.
	RegionName, Interface string
	// CacheTime bounds how long a validation (valid or not) is reused;
	// negative: never cached.
	CacheTime time.Duration
	// HTTPClient talks to Keystone; its Timeout bounds each request.
	HTTPClient http.Client
}

// Validator validates users' tokens as keystonemiddleware does: it logs
// in as its own service user and asks Keystone about each token
// (GET /v3/auth/tokens with X-Subject-Token), caching each answer for
// CacheTime and never past the token's expiry. It is safe for
// concurrent use.
type Validator struct {
	opts  Options
	avail gophercloud.Availability
	now   func() time.Time

	// login serialises building and renewing the service login.
	login     sync.Mutex
	identity  *gophercloud.ServiceClient
	loginErr  error
	loginTime time.Time

	mu       sync.Mutex
	cache    map[[32]byte]entry
	inflight map[[32]byte]*call

	requests atomic.Int64
}

type entry struct {
	creds policy.Credentials
	valid bool
	until time.Time
}

type call struct {
	done  chan struct{}
	creds policy.Credentials
	err   error
}

// maxCached bounds the cache; past it expired entries are dropped, and
// if none has expired, all of them (a flood of distinct tokens must not
// grow memory without bound).
const maxCached = 100_000

// renewBefore is how long before its expiry the service token is
// replaced, as keystoneauth does, so no validation is sent with a token
// that expires on the way.
const renewBefore = 2 * time.Minute

// loginRetry is how long a failed service login is reported again before
// the next attempt, so a Keystone that is down is not asked once per
// request.
const loginRetry = time.Second

// maxTokenBytes refuses a token no Keystone issues (fernet tokens are
// under 300 bytes, PKI ones were a few KB) without asking Keystone.
const maxTokenBytes = 8192

// New returns a Validator. It does not contact Keystone: the API starts
// while Keystone is down and answers 503 until it is back.
func New(opts Options) (*Validator, error) {
	avail, err := Availability(opts.Interface)
	if err != nil {
		return nil, err
	}
	if opts.WWWAuthenticateURI == "" {
		opts.WWWAuthenticateURI = opts.Login.AuthURL
	}
	return &Validator{opts: opts, avail: avail, now: time.Now,
		cache: map[[32]byte]entry{}, inflight: map[[32]byte]*call{}}, nil
}

// Challenge is the WWW-Authenticate header of a 401, as keystonemiddleware
// sends it.
func (v *Validator) Challenge() string {
	return fmt.Sprintf("Keystone uri=%q", v.opts.WWWAuthenticateURI)
}

// Requests is how many tokens have been sent to Keystone for validation.
func (v *Validator) Requests() int64 { return v.requests.Load() }

// Authenticate validates the request's X-Auth-Token.
func (v *Validator) Authenticate(r *http.Request) (policy.Credentials, error) {
	return v.Validate(r.Context(), r.Header.Get("X-Auth-Token"))
}

// Validate returns the credentials token stands for. Errors wrap
// policy.ErrUnauthenticated (no token, or one Keystone does not accept:
// 401) or are an *UnavailableError (503).
func (v *Validator) Validate(ctx context.Context, token string) (policy.Credentials, error) {
	token = strings.TrimSpace(token)
	switch {
	case token == "":
		return policy.Credentials{}, fmt.Errorf("no X-Auth-Token: %w", policy.ErrUnauthenticated)
	case len(token) > maxTokenBytes || strings.ContainsFunc(token, func(r rune) bool { return r < '!' || r > '~' }):
		return policy.Credentials{}, fmt.Errorf("malformed token: %w", policy.ErrUnauthenticated)
	}
	key := sha256.Sum256([]byte(token))
	v.mu.Lock()
	if e, ok := v.cache[key]; ok && v.now().Before(e.until) {
		v.mu.Unlock()
		return e.result()
	}
	// One request to Keystone per token, however many requests carry it
	// at once.
	if c, ok := v.inflight[key]; ok {
		v.mu.Unlock()
		select {
		case <-c.done:
			return c.creds, c.err
		case <-ctx.Done():
			return policy.Credentials{}, &UnavailableError{Reason: ctx.Err().Error()}
		}
	}
	c := &call{done: make(chan struct{})}
	v.inflight[key] = c
	v.mu.Unlock()

	e, err := v.fetch(context.WithoutCancel(ctx), token)
	v.mu.Lock()
	delete(v.inflight, key)
	if err == nil && v.opts.CacheTime > 0 {
		v.keep(key, e)
	}
	v.mu.Unlock()
	if err == nil {
		c.creds, c.err = e.result()
	} else {
		c.err = err
	}
	close(c.done)
	return c.creds, c.err
}

func (e entry) result() (policy.Credentials, error) {
	if !e.valid {
		return policy.Credentials{}, fmt.Errorf("token not valid: %w", policy.ErrUnauthenticated)
	}
	return e.creds, nil
}

// keep caches e; v.mu is held.
func (v *Validator) keep(key [32]byte, e entry) {
	if len(v.cache) >= maxCached {
		now := v.now()
		for k, old := range v.cache {
			if !now.Before(old.until) {
				delete(v.cache, k)
			}
		}
		if len(v.cache) >= maxCached {
			clear(v.cache)
		}
	}
	v.cache[key] = e
}

// tokenBody is what GET /v3/auth/tokens says of a token.
type tokenBody struct {
	Token struct {
		ExpiresAt time.Time `json:"expires_at"`
		User      struct {
			ID   string `json:"id"`
			Name string `json:"name"`
		} `json:"user"`
		Project *struct {
			ID   string `json:"id"`
			Name string `json:"name"`
		} `json:"project"`
		System map[string]any `json:"system"`
		Roles  []struct {
			Name string `json:"name"`
		} `json:"roles"`
	} `json:"token"`
}

// fetch asks Keystone about token; an error means no answer (503).
func (v *Validator) fetch(ctx context.Context, token string) (entry, error) {
	identity, err := v.client(ctx)
	if err != nil {
		return entry{}, err
	}
	v.requests.Add(1)
	var body tokenBody
	_, err = identity.Get(ctx, identity.ServiceURL("auth", "tokens")+"?nocatalog", &body, &gophercloud.RequestOpts{
		MoreHeaders: map[string]string{"X-Subject-Token": token},
		OkCodes:     []int{200, 203},
	})
	now := v.now()
	var reauth *gophercloud.ErrUnableToReauthenticate
	switch {
	case err == nil:
	case gophercloud.ResponseCodeIs(err, http.StatusNotFound):
		// Unknown, expired or revoked.
		return entry{until: now.Add(v.opts.CacheTime)}, nil
	case errors.As(err, &reauth):
		v.forget(identity)
		return entry{}, &UnavailableError{Reason: "the service user cannot log in again: " + describe(err)}
	case gophercloud.ResponseCodeIs(err, http.StatusUnauthorized):
		// Still 401 with a fresh service token: Keystone refuses the
		// subject token itself.
		return entry{until: now.Add(v.opts.CacheTime)}, nil
	case gophercloud.ResponseCodeIs(err, http.StatusForbidden):
		return entry{}, &UnavailableError{Reason: "Keystone does not let the service user validate tokens (identity:validate_token): give it the service role, or admin"}
	default:
		return entry{}, &UnavailableError{Reason: describe(err)}
	}
	t := body.Token
	if !t.ExpiresAt.After(now) {
		return entry{until: now.Add(v.opts.CacheTime)}, nil
	}
	c := policy.Credentials{UserID: t.User.ID, UserName: t.User.Name, System: t.System["all"] == true}
	if t.Project != nil {
		c.ProjectID, c.ProjectName = t.Project.ID, t.Project.Name
	}
	for _, r := range t.Roles {
		c.Roles = append(c.Roles, strings.ToLower(r.Name))
	}
	until := now.Add(v.opts.CacheTime)
	if t.ExpiresAt.Before(until) {
		until = t.ExpiresAt
	}
	return entry{creds: c, valid: true, until: until}, nil
}

// client returns the identity client with a service token that is not
// about to expire, logging in first if needed.
func (v *Validator) client(ctx context.Context) (*gophercloud.ServiceClient, error) {
	v.login.Lock()
	defer v.login.Unlock()
	if v.identity != nil {
		if exp, ok := expiry(v.identity.ProviderClient); ok && v.now().Add(renewBefore).Before(exp) {
			return v.identity, nil
		}
		// Renew: a new login, the same catalog endpoint.
		if err := v.identity.ProviderClient.Reauthenticate(ctx, v.identity.ProviderClient.Token()); err != nil {
			v.identity = nil
			return nil, &UnavailableError{Reason: "renewing the service token: " + describe(err)}
		}
		return v.identity, nil
	}
	if v.loginErr != nil && v.now().Sub(v.loginTime) < loginRetry {
		return nil, v.loginErr
	}
	identity, err := v.logIn(ctx)
	v.loginErr, v.loginTime = err, v.now()
	if err != nil {
		return nil, err
	}
	v.identity = identity
	return identity, nil
}

func (v *Validator) logIn(ctx context.Context) (*gophercloud.ServiceClient, error) {
	provider, err := openstack.NewClient(v.opts.Login.AuthURL)
	if err != nil {
		return nil, &UnavailableError{Reason: "[keystone_authtoken] auth_url: " + err.Error()}
	}
	provider.HTTPClient = v.opts.HTTPClient
	provider.UserAgent.Prepend("metalpower")
	if err := openstack.Authenticate(ctx, provider, v.opts.Login.AuthOptions()); err != nil {
		if gophercloud.ResponseCodeIs(err, http.StatusUnauthorized) {
			return nil, &UnavailableError{Reason: "Keystone refuses the service user's credentials ([keystone_authtoken] username, password, project_name or application credential)"}
		}
		return nil, &UnavailableError{Reason: "service login: " + describe(err)}
	}
	identity, err := openstack.NewIdentityV3(provider, gophercloud.EndpointOpts{Region: v.opts.RegionName, Availability: v.avail})
	if err != nil {
		// No identity endpoint in the catalog for this region and
		// interface: validate where we logged in.
		identity = &gophercloud.ServiceClient{ProviderClient: provider, Endpoint: gophercloud.NormalizeURL(v.opts.Login.AuthURL)}
	}
	return identity, nil
}

// forget drops identity so the next request logs in from scratch.
func (v *Validator) forget(identity *gophercloud.ServiceClient) {
	v.login.Lock()
	if v.identity == identity {
		v.identity = nil
	}
	v.login.Unlock()
}

// expiry is when the provider's token expires.
func expiry(p *gophercloud.ProviderClient) (time.Time, bool) {
	res, ok := p.GetAuthResult().(tokens.CreateResult)
	if !ok {
		return time.Time{}, false
	}
	t, err := res.ExtractToken()
	if err != nil {
		return time.Time{}, false
	}
	return t.ExpiresAt, true
}

// describe is an error without what could hold a secret: gophercloud's
// messages name URLs and statuses, never the credentials sent.
func describe(err error) string {
	var status gophercloud.ErrUnexpectedResponseCode
	if errors.As(err, &status) {
		return fmt.Sprintf("%s %s answered %d", status.Method, status.URL, status.Actual)
	}
	return err.Error()
}

// FromConfig returns the Validator [keystone_authtoken] describes.
func FromConfig(c config.KeystoneAuthtoken) (*Validator, error) {
	transport, err := Transport(c.CAFile, c.Insecure)
	if err != nil {
		return nil, fmt.Errorf("[keystone_authtoken] %w", err)
	}
	cache := time.Duration(c.TokenCacheTime) * time.Second
	if c.TokenCacheTime < 0 {
		cache = -1
	}
	v, err := New(Options{
		Login: Login{AuthURL: c.AuthURL, AuthType: c.AuthType, Username: c.Username, Password: c.Password,
			ProjectName: c.ProjectName, UserDomainName: c.UserDomainName, ProjectDomainName: c.ProjectDomainName,
			ApplicationCredentialID: c.ApplicationCredentialID, ApplicationCredentialSecret: c.ApplicationCredentialSecret},
		WWWAuthenticateURI: c.WWWAuthenticateURI,
		RegionName:         c.RegionName,
		Interface:          c.Interface,
		CacheTime:          cache,
		HTTPClient:         http.Client{Transport: transport, Timeout: time.Duration(c.HTTPConnectTimeout) * time.Second},
	})
	if err != nil {
		return nil, fmt.Errorf("[keystone_authtoken] %w", err)
	}
	return v, nil
}
