package nova

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/metalpower/metalpower/internal/config"
	"github.com/metalpower/metalpower/internal/testbed/sim/novasim"
)

const (
	uuidOn     = "11111111-2222-4333-8444-555555555501" // active, running
	uuidOff    = "11111111-2222-4333-8444-555555555502" // stopped, shutdown
	uuidNoHost = "11111111-2222-4333-8444-555555555503"
	uuidWarm   = "11111111-2222-4333-8444-555555555504" // for warming the login cache
	uuidGone   = "11111111-2222-4333-8444-555555555599" // not in Nova
)

const (
	tokensPath = "/v3/auth/tokens"
	eventsPath = "/v2.1/os-server-external-events"
)

// setup starts a simulator with a few instances and returns it with a
// [nova] section pointing at it.
func setup(t *testing.T, opts novasim.Options) (*novasim.Sim, config.Nova) {
	t.Helper()
	s := novasim.New(opts)
	authURL := s.Start()
	t.Cleanup(s.Close)
	s.AddInstance(uuidOn, "compute-1", "active", "running")
	s.AddInstance(uuidOff, "compute-1", "stopped", "shutdown")
	s.AddInstance(uuidNoHost, "", "active", "running")
	s.AddInstance(uuidWarm, "compute-1", "active", "running")
	cfg := config.Default().Nova
	cfg.AuthURL = authURL
	cfg.Username, cfg.Password, cfg.ProjectName = "ironic", "secret", "service"
	return s, cfg
}

func newNotifier(t *testing.T, cfg config.Nova, opts Options) *Notifier {
	t.Helper()
	n, err := New(cfg, opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return n
}

// requests returns the recorded requests with the given path.
func requests(s *novasim.Sim, path string) []novasim.Request {
	var out []novasim.Request
	for _, r := range s.Requests() {
		if r.Path == path {
			out = append(out, r)
		}
	}
	return out
}

// wantError checks err against the expected classification.
func wantError(t *testing.T, err error, permanent bool, httpStatus, eventCode int) *Error {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v (%T) is not an *Error", err, err)
	}
	if e.Permanent != permanent || IsPermanent(err) != permanent {
		t.Errorf("Permanent = %v, want %v: %v", e.Permanent, permanent, err)
	}
	if e.HTTPStatus != httpStatus || e.EventCode != eventCode {
		t.Errorf("HTTPStatus %d EventCode %d, want %d %d: %v", e.HTTPStatus, e.EventCode, httpStatus, eventCode, err)
	}
	if !strings.HasPrefix(e.Msg, "nova: ") {
		t.Errorf("message %q lacks the nova: prefix", e.Msg)
	}
	return e
}

func TestPowerUpdate(t *testing.T) {
	tests := []struct {
		name       string
		warm       bool           // deliver one event first, so the login is cached
		outage     novasim.Outage // set after warming up
		uuid       string
		state      string
		wantErr    bool
		permanent  bool
		httpStatus int
		eventCode  int
		wantVM     string // VM state of uuid afterwards; "" to skip
		noRequests bool   // nothing at all may reach Keystone or Nova
	}{
		{name: "power off delivered", uuid: uuidOn, state: "power off", wantVM: "stopped"},
		{name: "power on delivered", uuid: uuidOff, state: "power on", wantVM: "active"},
		{name: "already on is accepted", uuid: uuidOn, state: "power on", wantVM: "active"},
		{name: "unknown instance", uuid: uuidGone, state: "power off",
			wantErr: true, permanent: true, httpStatus: 207, eventCode: 404},
		{name: "instance without host", uuid: uuidNoHost, state: "power off",
			wantErr: true, permanent: true, httpStatus: 207, eventCode: 422, wantVM: "active"},
		{name: "server uuid Nova rejects", uuid: "node-1", state: "power off",
			wantErr: true, permanent: true, httpStatus: 400},
		{name: "rebooting is not sent", uuid: uuidOn, state: "rebooting",
			wantErr: true, permanent: true, noRequests: true},
		{name: "error is not sent", uuid: uuidOn, state: "error",
			wantErr: true, permanent: true, noRequests: true},
		{name: "no state is not sent", uuid: uuidOn, state: "",
			wantErr: true, permanent: true, noRequests: true},
		{name: "Nova 503", warm: true, outage: novasim.Outage503, uuid: uuidOn, state: "power off",
			wantErr: true, httpStatus: 503},
		{name: "Keystone 503", outage: novasim.Outage503, uuid: uuidOn, state: "power off",
			wantErr: true, httpStatus: 503},
		{name: "Nova refuses connections", warm: true, outage: novasim.OutageRefuse, uuid: uuidOn, state: "power off",
			wantErr: true},
		{name: "Keystone refuses connections", outage: novasim.OutageRefuse, uuid: uuidOn, state: "power off",
			wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, cfg := setup(t, novasim.Options{})
			n := newNotifier(t, cfg, Options{})
			ctx := context.Background()
			if tt.warm {
				if err := n.PowerUpdate(ctx, uuidWarm, "power off"); err != nil {
					t.Fatalf("warming up: %v", err)
				}
			}
			s.SetOutage(tt.outage)
			before := len(s.Events())

			err := n.PowerUpdate(ctx, tt.uuid, tt.state)
			if !tt.wantErr {
				if err != nil {
					t.Fatalf("PowerUpdate: %v", err)
				}
				if got := len(s.Events()) - before; got != 1 {
					t.Errorf("Nova got %d events, want 1", got)
				}
			} else {
				wantError(t, err, tt.permanent, tt.httpStatus, tt.eventCode)
			}
			if tt.noRequests && len(s.Requests()) != 0 {
				t.Errorf("requests were sent: %+v", s.Requests())
			}
			if tt.wantVM != "" {
				if inst, _ := s.Instance(tt.uuid); inst.VMState != tt.wantVM {
					t.Errorf("vm_state %q, want %q", inst.VMState, tt.wantVM)
				}
			}
		})
	}
}

func TestOutageRecovery(t *testing.T) {
	s, cfg := setup(t, novasim.Options{})
	n := newNotifier(t, cfg, Options{})
	ctx := context.Background()

	// A Keystone failure must not leave a broken login cached.
	s.SetOutage(novasim.OutageRefuse)
	if err := n.PowerUpdate(ctx, uuidOn, "power off"); err == nil || IsPermanent(err) {
		t.Fatalf("during outage: %v, want a transient error", err)
	}
	s.SetOutage(novasim.OutageNone)
	if err := n.PowerUpdate(ctx, uuidOn, "power off"); err != nil {
		t.Fatalf("after outage: %v", err)
	}
	if inst, _ := s.Instance(uuidOn); inst.VMState != "stopped" {
		t.Errorf("vm_state %q, want stopped", inst.VMState)
	}
}

func TestWrongCredentials(t *testing.T) {
	tests := []struct {
		name   string
		edit   func(*config.Nova)
		secret string
	}{
		{"password", func(c *config.Nova) { c.Password = "hunter2-wrong" }, "hunter2-wrong"},
		{"user domain", func(c *config.Nova) { c.UserDomainName = "Elsewhere" }, "secret"},
		{"project", func(c *config.Nova) { c.ProjectName = "admin" }, "secret"},
		{"application credential", func(c *config.Nova) {
			c.Username, c.Password = "", ""
			c.ApplicationCredentialID, c.ApplicationCredentialSecret = "ac-id", "ac-wrong-secret"
		}, "ac-wrong-secret"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, cfg := setup(t, novasim.Options{AppCredID: "ac-id", AppCredSecret: "ac-secret"})
			tt.edit(&cfg)
			n := newNotifier(t, cfg, Options{})
			for range 2 {
				err := n.PowerUpdate(context.Background(), uuidOn, "power off")
				e := wantError(t, err, true, 401, 0)
				if strings.Contains(e.Error(), tt.secret) {
					t.Errorf("message %q contains the secret", e.Error())
				}
				if !strings.Contains(e.Error(), "Keystone") || !strings.Contains(e.Error(), "401") {
					t.Errorf("message %q does not say Keystone refused the login", e.Error())
				}
			}
			// Each call tries again: a rejected login is not cached.
			if got := len(requests(s, tokensPath)); got != 2 {
				t.Errorf("%d token requests, want 2", got)
			}
			if got := len(requests(s, eventsPath)); got != 0 {
				t.Errorf("%d event requests without a token", got)
			}
		})
	}
}

func TestReauthenticatesOnce(t *testing.T) {
	s, cfg := setup(t, novasim.Options{})
	n := newNotifier(t, cfg, Options{})
	ctx := context.Background()
	if err := n.PowerUpdate(ctx, uuidWarm, "power off"); err != nil {
		t.Fatal(err)
	}
	s.ExpireTokens()
	if err := n.PowerUpdate(ctx, uuidOn, "power off"); err != nil {
		t.Fatalf("after token expiry: %v", err)
	}
	if got := len(requests(s, tokensPath)); got != 2 {
		t.Errorf("%d token requests, want 2 (login, re-login)", got)
	}
	var statuses []int
	for _, r := range requests(s, eventsPath) {
		statuses = append(statuses, r.Status)
	}
	if !reflect.DeepEqual(statuses, []int{200, 401, 200}) {
		t.Errorf("event request statuses %v, want [200 401 200]", statuses)
	}
	if inst, _ := s.Instance(uuidOn); inst.VMState != "stopped" {
		t.Errorf("vm_state %q, want stopped", inst.VMState)
	}
}

func TestUnauthorizedAfterReauth(t *testing.T) {
	// Tokens that are dead on arrival: Nova answers 401 to the fresh
	// token too, and the client must give up rather than loop.
	s, cfg := setup(t, novasim.Options{TokenTTL: time.Nanosecond})
	n := newNotifier(t, cfg, Options{})
	err := n.PowerUpdate(context.Background(), uuidOn, "power off")
	e := wantError(t, err, true, 401, 0)
	if !strings.Contains(e.Msg, "after re-authenticating") {
		t.Errorf("message %q does not mention the re-authentication", e.Msg)
	}
	if tokens, events := len(requests(s, tokensPath)), len(requests(s, eventsPath)); tokens != 2 || events != 2 {
		t.Errorf("%d token and %d event requests, want 2 and 2", tokens, events)
	}
	// The failed login was dropped: the next call logs in afresh.
	n.PowerUpdate(context.Background(), uuidOn, "power off")
	if got := len(requests(s, tokensPath)); got != 4 {
		t.Errorf("%d token requests after a second call, want 4", got)
	}
}

func TestApplicationCredential(t *testing.T) {
	tests := []struct {
		name             string
		username, passwd string
	}{
		{"alone", "", ""},
		{"preferred over a password", "ironic", "wrong-password"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, cfg := setup(t, novasim.Options{AppCredID: "ac-id", AppCredSecret: "ac-secret"})
			cfg.Username, cfg.Password = tt.username, tt.passwd
			cfg.ApplicationCredentialID, cfg.ApplicationCredentialSecret = "ac-id", "ac-secret"
			n := newNotifier(t, cfg, Options{})
			if err := n.PowerUpdate(context.Background(), uuidOn, "power off"); err != nil {
				t.Fatal(err)
			}
			login := requests(s, tokensPath)[0].Body
			if !strings.Contains(login, `"application_credential"`) || strings.Contains(login, `"scope"`) {
				t.Errorf("login body %s, want an unscoped application credential login", login)
			}
		})
	}
}

func TestEndpointSelection(t *testing.T) {
	tests := []struct {
		iface, region string
		wantPath      string // "" when no endpoint matches
	}{
		{"", "", eventsPath},
		{"internal", "", eventsPath},
		{"internal", "RegionOne", eventsPath},
		{"public", "", "/public" + eventsPath},
		{"publicURL", "", "/public" + eventsPath},
		{"admin", "RegionOne", "/admin" + eventsPath},
		{"internal", "RegionTwo", ""},
	}
	for _, tt := range tests {
		t.Run(tt.iface+"/"+tt.region, func(t *testing.T) {
			s, cfg := setup(t, novasim.Options{})
			cfg.Interface, cfg.RegionName = tt.iface, tt.region
			n := newNotifier(t, cfg, Options{})
			err := n.PowerUpdate(context.Background(), uuidOn, "power off")
			var paths []string
			for _, r := range s.Requests() {
				if strings.HasSuffix(r.Path, "/os-server-external-events") {
					paths = append(paths, r.Path)
				}
			}
			if tt.wantPath == "" {
				e := wantError(t, err, true, 0, 0)
				if !strings.Contains(e.Msg, "catalog") {
					t.Errorf("message %q does not point at the catalog", e.Msg)
				}
				if len(paths) != 0 {
					t.Errorf("event sent to %v", paths)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(paths) != 1 || paths[0] != tt.wantPath {
				t.Errorf("event sent to %v, want %s", paths, tt.wantPath)
			}
		})
	}
}

func TestRequestFormat(t *testing.T) {
	s, cfg := setup(t, novasim.Options{})
	n := newNotifier(t, cfg, Options{})
	if err := n.PowerUpdate(context.Background(), uuidOff, "power on"); err != nil {
		t.Fatal(err)
	}
	reqs := s.Requests()
	if len(reqs) != 2 || reqs[0].Path != tokensPath || reqs[1].Path != eventsPath {
		t.Fatalf("requests %+v, want a login then one event POST", reqs)
	}
	r := reqs[1]
	header := map[string]string{
		"OpenStack-API-Version":        "compute 2.76",
		"X-OpenStack-Nova-API-Version": "2.76",
		"Content-Type":                 "application/json",
	}
	for k, want := range header {
		if got := r.Header.Get(k); got != want {
			t.Errorf("%s: %q, want %q", k, got, want)
		}
	}
	if r.Method != "POST" || r.Microversion != "2.76" || r.Header.Get("X-Auth-Token") == "" {
		t.Errorf("request %s microversion %q token %q", r.Method, r.Microversion, r.Header.Get("X-Auth-Token"))
	}
	if ua := r.Header.Get("User-Agent"); !strings.HasPrefix(ua, "metalpower ") {
		t.Errorf("User-Agent %q", ua)
	}
	var got any
	if err := json.Unmarshal([]byte(r.Body), &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"events": []any{map[string]any{
		"name": "power-update", "server_uuid": uuidOff, "tag": "POWER_ON",
	}}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("body %s, want exactly one power-update event %v", r.Body, want)
	}
}

func TestLoginCached(t *testing.T) {
	s, cfg := setup(t, novasim.Options{})
	n := newNotifier(t, cfg, Options{})
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, 40)
	for i := range 40 {
		wg.Go(func() {
			state := "power off"
			if i%2 == 1 {
				state = "power on"
			}
			errs <- n.PowerUpdate(ctx, uuidWarm, state)
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if got := len(requests(s, tokensPath)); got != 1 {
		t.Errorf("%d logins for 40 concurrent events, want 1", got)
	}
	if got := len(requests(s, eventsPath)); got != 40 {
		t.Errorf("%d event requests, want 40", got)
	}
}

func TestVersionlessAuthURL(t *testing.T) {
	s, cfg := setup(t, novasim.Options{})
	cfg.AuthURL = s.URL() // gophercloud must discover /v3 itself
	n := newNotifier(t, cfg, Options{})
	if err := n.PowerUpdate(context.Background(), uuidOn, "power off"); err != nil {
		t.Fatal(err)
	}
	if r := s.Requests()[0]; r.Method != "GET" || r.Path != "/" {
		t.Errorf("first request %s %s, want version discovery GET /", r.Method, r.Path)
	}
}

func TestTimeouts(t *testing.T) {
	// A server that accepts connections and never answers.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		var conns []net.Conn
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c)
		}
	}()
	cfg := config.Default().Nova
	cfg.AuthURL = "http://" + ln.Addr().String() + "/v3"
	cfg.Username, cfg.Password, cfg.ProjectName = "ironic", "secret", "service"

	t.Run("request timeout", func(t *testing.T) {
		n := newNotifier(t, cfg, Options{Timeout: 100 * time.Millisecond})
		start := time.Now()
		err := n.PowerUpdate(context.Background(), uuidOn, "power off")
		wantError(t, err, false, 0, 0)
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("took %v", d)
		}
	})
	t.Run("context deadline", func(t *testing.T) {
		n := newNotifier(t, cfg, Options{})
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		err := n.PowerUpdate(ctx, uuidOn, "power off")
		wantError(t, err, false, 0, 0)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("error %v does not wrap context.DeadlineExceeded", err)
		}
	})
}

func TestConcurrentReauth(t *testing.T) {
	s, cfg := setup(t, novasim.Options{})
	n := newNotifier(t, cfg, Options{})
	ctx := context.Background()
	if err := n.PowerUpdate(ctx, uuidWarm, "power off"); err != nil {
		t.Fatal(err)
	}
	const rounds = 3
	for range rounds {
		s.ExpireTokens()
		var wg sync.WaitGroup
		for range 20 {
			wg.Go(func() {
				if err := n.PowerUpdate(ctx, uuidWarm, "power off"); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
	}
	// The 401s of one round share a single new login.
	if got := len(requests(s, tokensPath)); got != 1+rounds {
		t.Errorf("%d logins, want %d", got, 1+rounds)
	}
}
