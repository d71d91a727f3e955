package novasim

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// start runs a Sim for the test and returns it.
func start(t *testing.T, opts Options) *Sim {
	t.Helper()
	s := New(opts)
	s.Start()
	t.Cleanup(s.Close)
	return s
}

type response struct {
	status int
	header http.Header
	doc    map[string]any
	raw    string
}

// do sends one request with the given headers and decodes the JSON answer.
func do(t *testing.T, method, url, body string, header map[string]string) response {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	r := response{status: resp.StatusCode, header: resp.Header, raw: string(raw)}
	if len(raw) > 0 && method != http.MethodHead {
		if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("%s %s: Content-Type %q, want application/json", method, url, ct)
		}
		if err := json.Unmarshal(raw, &r.doc); err != nil {
			t.Fatalf("%s %s: body %q is not a JSON object: %v", method, url, raw, err)
		}
	}
	return r
}

func passwordAuth(user, pass, userDomain, project, projectDomain string) string {
	return `{"auth":{"identity":{"methods":["password"],"password":{"user":{"name":"` + user +
		`","password":"` + pass + `","domain":{"name":"` + userDomain + `"}}}},` +
		`"scope":{"project":{"name":"` + project + `","domain":{"name":"` + projectDomain + `"}}}}}`
}

// login returns a fresh token for the default password credentials.
func login(t *testing.T, s *Sim) string {
	t.Helper()
	r := do(t, "POST", s.URL()+"/v3/auth/tokens", passwordAuth("ironic", "secret", "Default", "service", "Default"), nil)
	if r.status != http.StatusCreated {
		t.Fatalf("login: status %d: %s", r.status, r.raw)
	}
	return r.header.Get("X-Subject-Token")
}

func TestIssueToken(t *testing.T) {
	opts := Options{AppCredID: "ac-id", AppCredSecret: "ac-secret"}
	tests := []struct {
		name        string
		opts        Options
		body        string
		wantStatus  int
		wantCatalog bool
		wantMethod  string
	}{
		{"password", opts, passwordAuth("ironic", "secret", "Default", "service", "Default"), 201, true, "password"},
		{"password with domain ID", opts,
			`{"auth":{"identity":{"methods":["password"],"password":{"user":{"name":"ironic","password":"secret","domain":{"id":"default"}}}},"scope":{"project":{"name":"service","domain":{"id":"default"}}}}}`,
			201, true, "password"},
		{"custom credentials", Options{Username: "nova-notifier", Password: "pw", ProjectName: "ops"},
			passwordAuth("nova-notifier", "pw", "Default", "ops", "Default"), 201, true, "password"},
		{"unscoped password", opts,
			`{"auth":{"identity":{"methods":["password"],"password":{"user":{"name":"ironic","password":"secret","domain":{"name":"Default"}}}}}}`,
			201, false, "password"},
		{"wrong password", opts, passwordAuth("ironic", "wrong", "Default", "service", "Default"), 401, false, ""},
		{"wrong user", opts, passwordAuth("admin", "secret", "Default", "service", "Default"), 401, false, ""},
		{"wrong user domain", opts, passwordAuth("ironic", "secret", "Other", "service", "Default"), 401, false, ""},
		{"wrong project", opts, passwordAuth("ironic", "secret", "Default", "admin", "Default"), 401, false, ""},
		{"wrong project domain", opts, passwordAuth("ironic", "secret", "Default", "service", "Other"), 401, false, ""},
		{"application credential", opts,
			`{"auth":{"identity":{"methods":["application_credential"],"application_credential":{"id":"ac-id","secret":"ac-secret"}}}}`,
			201, true, "application_credential"},
		{"application credential wrong secret", opts,
			`{"auth":{"identity":{"methods":["application_credential"],"application_credential":{"id":"ac-id","secret":"nope"}}}}`,
			401, false, ""},
		{"application credential with scope", opts,
			`{"auth":{"identity":{"methods":["application_credential"],"application_credential":{"id":"ac-id","secret":"ac-secret"}},"scope":{"project":{"name":"service","domain":{"name":"Default"}}}}}`,
			401, false, ""},
		{"application credential not configured", Options{},
			`{"auth":{"identity":{"methods":["application_credential"],"application_credential":{"id":"","secret":""}}}}`,
			401, false, ""},
		{"token method", opts, `{"auth":{"identity":{"methods":["token"],"token":{"id":"x"}}}}`, 401, false, ""},
		{"malformed", opts, `{"auth":`, 400, false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := start(t, tt.opts)
			r := do(t, "POST", s.URL()+"/v3/auth/tokens", tt.body, nil)
			if r.status != tt.wantStatus {
				t.Fatalf("status %d, want %d: %s", r.status, tt.wantStatus, r.raw)
			}
			if tt.wantStatus != http.StatusCreated {
				e, _ := r.doc["error"].(map[string]any)
				if e["code"] != float64(tt.wantStatus) || e["message"] == "" {
					t.Errorf("error body %s, want Keystone's error object", r.raw)
				}
				if r.header.Get("X-Subject-Token") != "" {
					t.Error("failed login returned a token")
				}
				return
			}
			if r.header.Get("X-Subject-Token") == "" {
				t.Error("no X-Subject-Token")
			}
			tok := r.doc["token"].(map[string]any)
			if m := tok["methods"].([]any); len(m) != 1 || m[0] != tt.wantMethod {
				t.Errorf("methods %v, want [%s]", m, tt.wantMethod)
			}
			exp, err := time.Parse(time.RFC3339Nano, tok["expires_at"].(string))
			if err != nil || time.Until(exp) < 50*time.Minute {
				t.Errorf("expires_at %v (%v), want about an hour ahead", tok["expires_at"], err)
			}
			_, hasCatalog := tok["catalog"]
			if hasCatalog != tt.wantCatalog {
				t.Errorf("catalog present %v, want %v", hasCatalog, tt.wantCatalog)
			}
		})
	}
}

func TestCatalog(t *testing.T) {
	s := start(t, Options{Region: "RegionTwo"})
	r := do(t, "POST", s.URL()+"/v3/auth/tokens", passwordAuth("ironic", "secret", "Default", "service", "Default"), nil)
	var body struct {
		Token struct {
			Catalog []struct {
				Type, Name string
				Endpoints  []struct {
					Interface, Region, URL string
					RegionID               string `json:"region_id"`
				}
			}
		}
	}
	if err := json.Unmarshal([]byte(r.raw), &body); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"public":   s.URL() + "/public/v2.1",
		"internal": s.URL() + "/v2.1",
		"admin":    s.URL() + "/admin/v2.1",
	}
	got := map[string]string{}
	var identity bool
	for _, svc := range body.Token.Catalog {
		switch svc.Type {
		case "compute":
			for _, ep := range svc.Endpoints {
				if ep.Region != "RegionTwo" || ep.RegionID != "RegionTwo" {
					t.Errorf("endpoint %s in region %q/%q, want RegionTwo", ep.URL, ep.Region, ep.RegionID)
				}
				got[ep.Interface] = ep.URL
			}
		case "identity":
			identity = true
		}
	}
	for iface, url := range want {
		if got[iface] != url {
			t.Errorf("compute %s endpoint %q, want %q", iface, got[iface], url)
		}
	}
	if !identity {
		t.Error("no identity service in the catalog")
	}
}

func TestVersionDocuments(t *testing.T) {
	s := start(t, Options{})
	tests := []struct {
		path       string
		wantStatus int
		wantKey    string
	}{
		{"/", http.StatusMultipleChoices, "versions"},
		{"/v3", http.StatusOK, "version"},
		{"/v3/", http.StatusOK, "version"},
		{"/v2.1", http.StatusOK, "version"},
		{"/v2.1/", http.StatusOK, "version"},
		{"/public/v2.1/", http.StatusOK, "version"},
		{"/nowhere", http.StatusNotFound, "error"},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			r := do(t, "GET", s.URL()+tt.path, "", nil)
			if r.status != tt.wantStatus {
				t.Fatalf("status %d, want %d", r.status, tt.wantStatus)
			}
			if _, ok := r.doc[tt.wantKey]; !ok {
				t.Errorf("body %s lacks %q", r.raw, tt.wantKey)
			}
		})
	}
}

func TestTokenExpiry(t *testing.T) {
	s := start(t, Options{TokenTTL: 100 * time.Millisecond})
	s.AddInstance(uuid1, "host1", "active", "running")
	post := func(token string) int {
		return do(t, "POST", s.URL()+"/v2.1/os-server-external-events", powerOff(uuid1),
			map[string]string{"X-Auth-Token": token, "OpenStack-API-Version": "compute 2.76"}).status
	}

	tok := login(t, s)
	if got := post(tok); got != http.StatusOK {
		t.Fatalf("fresh token: status %d, want 200", got)
	}
	time.Sleep(150 * time.Millisecond)
	if got := post(tok); got != http.StatusUnauthorized {
		t.Fatalf("expired token: status %d, want 401", got)
	}

	tok = login(t, s)
	s.ExpireTokens()
	if got := post(tok); got != http.StatusUnauthorized {
		t.Fatalf("after ExpireTokens: status %d, want 401", got)
	}
	if got := post(login(t, s)); got != http.StatusOK {
		t.Fatalf("new token after ExpireTokens: status %d, want 200", got)
	}
}
