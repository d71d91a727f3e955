package nova

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/metalpower/metalpower/internal/config"
)

const (
	fuzzPassword = "pw-Hunter2-fuzz"
	fuzzToken    = "tok-Gq7ZsecretTOKEN"
)

// eventSeeds are Nova answers to os-server-external-events, good and bad.
var eventSeeds = []struct {
	status int
	body   string
}{
	{200, `{"events":[{"name":"power-update","server_uuid":"u","tag":"POWER_ON","status":"completed","code":200}]}`},
	{207, `{"events":[{"status":"completed","code":200}]}`},
	{207, `{"events":[{"status":"failed","code":404}]}`},
	{207, `{"events":[{"status":"failed","code":422}]}`},
	{207, `{"events":[{"status":"failed","code":400}]}`},
	{200, `{"events":[{"code":500}]}`},
	{200, `{"events":[{"code":200},{"code":404}]}`},
	{200, `{"events":[{"code":1e3}]}`},
	{200, `{"events":[{"code":200.5}]}`},
	{200, `{"events":[{"code":99999999999999999999}]}`},
	{200, `{"events":[{"code":-1}]}`},
	{200, `{"events":[{"code":null}]}`},
	{200, `{"events":{"code":200}}`},
	{200, `{"events":[]}`}, {200, `{"events":null}`}, {200, `{"events":[null]}`}, {200, `{"events":[{}]}`},
	{200, `{}`}, {200, `[]`}, {200, `null`}, {200, ``}, {204, ``}, {202, `{"events":[{"code":200}]}`},
	{200, `{"events":[{"code":"200"}]}`},
	{200, `<html>ok</html>`},
	{200, `{"events":[{"code":200}]} trailing`},
	{200, "\xff\xfe{\"events\""},
	{200, `{"events":[{"code":400,"status":"` + fuzzPassword + `"}]}`},
	{200, `not json, yet it echoes ` + fuzzPassword + " and " + fuzzToken},
	{400, `{"badRequest":{"code":400,"message":"token ` + fuzzToken + ` password ` + fuzzPassword + `"}}`},
	{404, `{"itemNotFound":{"message":"no"}}`},
	{500, `{"computeFault":{"message":"` + strings.Repeat("x", 300) + fuzzPassword + `"}}`},
	{503, ``}, {429, `slow down`}, {408, ``}, {409, `{"conflictingRequest":{"message":"no"}}`},
	{401, `{"error":{"message":"expired ` + fuzzToken + `"}}`}, {403, `forbidden`},
	{300, `{"events":[{"code":200}]}`}, {302, ``},
	{205, `{"events":[{"Code":0}]}`}, {205, ``},
}

// FuzzEventResult feeds arbitrary answers to the parser of Nova's
// os-server-external-events answer: it never panics, code 200 is
// success, a code of 400 or more is a permanent rejection carrying the
// code, and anything unreadable is a permanent error.
func FuzzEventResult(f *testing.F) {
	for _, s := range eventSeeds {
		f.Add(s.status, []byte(s.body))
	}
	f.Fuzz(func(t *testing.T, status int, body []byte) {
		e := eventResult(status, body)
		checkEventResult(t, status, body, e)
	})
}

// checkEventResult checks the verdict on a 2xx answer.
func checkEventResult(t *testing.T, status int, body []byte, err error) {
	t.Helper()
	var doc struct {
		Events []*struct {
			Code *int `json:"code"`
		} `json:"events"`
	}
	parsed := json.Unmarshal(body, &doc) == nil && len(doc.Events) > 0 && doc.Events[0] != nil && doc.Events[0].Code != nil
	var e *Error
	if err != nil && !errors.As(err, &e) {
		t.Fatalf("error %v is a %T, not an *Error", err, err)
	}
	switch {
	case !parsed:
		if e == nil || !e.Permanent || e.HTTPStatus != status || e.EventCode != 0 {
			t.Fatalf("unreadable answer (HTTP %d) %q: got %#v, want a permanent error", status, body, e)
		}
	case *doc.Events[0].Code == 200:
		if e != nil {
			t.Fatalf("answer (HTTP %d) %q with code 200: got %v, want success", status, body, e)
		}
	case *doc.Events[0].Code >= 400:
		if code := *doc.Events[0].Code; e == nil || !e.Permanent || e.HTTPStatus != status || e.EventCode != code {
			t.Fatalf("answer (HTTP %d) %q with code %d: got %#v, want a permanent rejection", status, body, code, e)
		}
	}
}

// fakeOpenStack is a Keystone that hands out fuzzToken with a catalog
// naming itself as Nova, and a Nova that answers every event with the
// status and body set last.
type fakeOpenStack struct {
	srv    *httptest.Server
	mu     sync.Mutex
	status int
	body   []byte
}

func newFakeOpenStack(tb testing.TB) *fakeOpenStack {
	fo := &fakeOpenStack{}
	fo.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/v3/auth/tokens":
			var req struct {
				Auth struct {
					Identity struct {
						Password struct {
							User struct {
								Password string `json:"password"`
							} `json:"user"`
						} `json:"password"`
					} `json:"identity"`
				} `json:"auth"`
			}
			if json.NewDecoder(r.Body).Decode(&req) != nil || req.Auth.Identity.Password.User.Password != fuzzPassword {
				w.WriteHeader(http.StatusUnauthorized)
				return
			}
			endpoint := func(iface string) map[string]any {
				return map[string]any{"id": iface, "interface": iface, "region": "RegionOne", "region_id": "RegionOne", "url": fo.srv.URL + "/v2.1"}
			}
			w.Header().Set("X-Subject-Token", fuzzToken)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusCreated)
			json.NewEncoder(w).Encode(map[string]any{"token": map[string]any{
				"methods":    []string{"password"},
				"expires_at": time.Now().Add(time.Hour).UTC().Format("2006-01-02T15:04:05.000000Z"),
				"project":    map[string]any{"id": "p", "name": "service", "domain": map[string]any{"id": "default", "name": "Default"}},
				"catalog": []any{map[string]any{"type": "compute", "name": "nova", "id": "nova",
					"endpoints": []any{endpoint("public"), endpoint("internal"), endpoint("admin")}}},
			}})
		case "/v2.1/os-server-external-events":
			if r.Header.Get("X-Auth-Token") != fuzzToken {
				w.WriteHeader(http.StatusUnauthorized)
				return
			}
			fo.mu.Lock()
			status, body := fo.status, fo.body
			fo.mu.Unlock()
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(status)
			w.Write(body)
		default:
			http.NotFound(w, r)
		}
	}))
	tb.Cleanup(fo.srv.Close)
	return fo
}

func (fo *fakeOpenStack) answer(status int, body []byte) {
	fo.mu.Lock()
	fo.status, fo.body = status, body
	fo.mu.Unlock()
}

// FuzzPowerUpdateResponse drives PowerUpdate end to end against a Nova
// answering with an arbitrary status and body: it never panics, a 2xx
// with events[0].code 200 succeeds, an unreadable 2xx is a permanent
// error, other statuses are errors carrying the status (transient only
// for 5xx, 408 and 429), and no error shows the password or the token.
func FuzzPowerUpdateResponse(f *testing.F) {
	for _, s := range eventSeeds {
		f.Add(s.status, []byte(s.body))
	}
	fo := newFakeOpenStack(f)
	cfg := config.Default().Nova
	cfg.AuthURL = fo.srv.URL + "/v3"
	cfg.Username, cfg.Password, cfg.ProjectName = "ironic", fuzzPassword, "service"
	f.Fuzz(func(t *testing.T, status int, body []byte) {
		// Statuses a server can send with a body the client reads; 1xx
		// are interim answers and a redirect would be followed.
		if status < 200 || status > 599 || status == 301 || status == 302 || status == 303 || status == 307 || status == 308 {
			return
		}
		fo.answer(status, body)
		n, err := New(cfg, Options{Timeout: 10 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		err = n.PowerUpdate(context.Background(), "11111111-2222-4333-8444-555555555501", "power off")
		if err != nil {
			for _, secret := range []string{fuzzPassword, fuzzToken} {
				if strings.Contains(err.Error(), secret) {
					t.Fatalf("error shows a secret (HTTP %d, body %q): %v", status, body, err)
				}
			}
		}
		var e *Error
		if err != nil && !errors.As(err, &e) {
			t.Fatalf("error %v is a %T, not an *Error", err, err)
		}
		// Go's server sends a 205's body (HTTP says it has none), so only
		// a 204 is sure to arrive empty.
		if status < 300 && status != http.StatusNoContent {
			checkEventResult(t, status, body, err)
			return
		}
		if status < 300 {
			// 204 carries no body: unreadable, permanent.
			if e == nil || !e.Permanent {
				t.Fatalf("HTTP %d without a body: got %#v, want a permanent error", status, e)
			}
			return
		}
		if e == nil || e.HTTPStatus != status {
			t.Fatalf("HTTP %d: got %#v, want an error with that status", status, e)
		}
		if want := !retryableStatus(status); e.Permanent != want {
			t.Fatalf("HTTP %d: Permanent = %v, want %v", status, e.Permanent, want)
		}
	})
}
