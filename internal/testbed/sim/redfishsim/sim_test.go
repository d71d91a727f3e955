package redfishsim

import (
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// auth decorates a test request with credentials.
type auth func(*http.Request)

func basic(user, pass string) auth {
	return func(r *http.Request) { r.SetBasicAuth(user, pass) }
}

func token(tok string) auth {
	return func(r *http.Request) { r.Header.Set("X-Auth-Token", tok) }
}

var (
	admin  = basic("admin", "password")
	noAuth = auth(func(*http.Request) {})
)

type response struct {
	status int
	header http.Header
	doc    map[string]any // decoded JSON body; nil if the body is empty
}

// do sends one request and decodes the answer. It fails the test on
// transport errors and on JSON answers lacking the Redfish headers.
func do(t *testing.T, base, method, path, body string, a auth) response {
	t.Helper()
	resp, err := send(http.DefaultClient, base, method, path, body, a)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	return resp
}

func send(c *http.Client, base, method, path, body string, a auth) (response, error) {
	req, err := http.NewRequest(method, base+path, strings.NewReader(body))
	if err != nil {
		return response{}, err
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	a(req)
	resp, err := c.Do(req)
	if err != nil {
		return response{}, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return response{}, err
	}
	r := response{status: resp.StatusCode, header: resp.Header}
	if len(raw) == 0 {
		return r, nil
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		return r, errors.New("Content-Type is " + ct + ", want application/json")
	}
	if v := resp.Header.Get("OData-Version"); v != "4.0" {
		return r, errors.New("OData-Version is " + v + ", want 4.0")
	}
	if err := json.Unmarshal(raw, &r.doc); err != nil {
		return r, errors.New("invalid JSON body: " + err.Error() + ": " + string(raw))
	}
	return r, nil
}

// get walks a decoded JSON document, e.g. get(doc, "Boot", "BootSourceOverrideMode").
func get(doc map[string]any, keys ...string) any {
	var v any = doc
	for _, k := range keys {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

func stringList(v any) []string {
	list, _ := v.([]any)
	out := make([]string, 0, len(list))
	for _, x := range list {
		s, _ := x.(string)
		out = append(out, s)
	}
	return out
}

// messageID returns the MessageId of the first ExtendedInfo of an error body.
func messageID(doc map[string]any) string {
	info, _ := get(doc, "error", "@Message.ExtendedInfo").([]any)
	if len(info) == 0 {
		return ""
	}
	id, _ := get(info[0].(map[string]any), "MessageId").(string)
	return id
}

func start(t *testing.T, opts Options) (*Sim, string) {
	t.Helper()
	s := New(opts)
	base := s.Start()
	t.Cleanup(s.Close)
	return s, base
}

func TestServiceRootAndVersions(t *testing.T) {
	_, base := start(t, Options{})

	r := do(t, base, "GET", "/redfish", "", noAuth)
	if r.status != 200 || get(r.doc, "v1") != "/redfish/v1/" {
		t.Fatalf("GET /redfish = %d %v", r.status, r.doc)
	}
	for _, path := range []string{"/redfish/v1", "/redfish/v1/"} {
		r := do(t, base, "GET", path, "", noAuth)
		if r.status != 200 {
			t.Fatalf("GET %s without auth = %d, want 200 (roots are public)", path, r.status)
		}
		want := map[string]any{
			"@odata.id":      "/redfish/v1/",
			"@odata.type":    "#ServiceRoot.v1_5_0.ServiceRoot",
			"RedfishVersion": "1.6.0",
		}
		for k, v := range want {
			if r.doc[k] != v {
				t.Errorf("%s: %s = %v, want %v", path, k, r.doc[k], v)
			}
		}
		links := map[string][]string{
			"/redfish/v1/Systems":                 {"Systems", "@odata.id"},
			"/redfish/v1/SessionService":          {"SessionService", "@odata.id"},
			"/redfish/v1/SessionService/Sessions": {"Links", "Sessions", "@odata.id"},
			"/redfish/v1/Managers":                {"Managers", "@odata.id"},
			"/redfish/v1/Chassis":                 {"Chassis", "@odata.id"},
		}
		for want, keys := range links {
			if got := get(r.doc, keys...); got != want {
				t.Errorf("%s: %v = %v, want %s", path, keys, got, want)
			}
		}
		if uuid, _ := r.doc["UUID"].(string); len(uuid) != 36 {
			t.Errorf("UUID = %q, want a UUID", uuid)
		}
	}
}

func TestCollections(t *testing.T) {
	_, base := start(t, Options{Systems: 3})
	tests := []struct {
		coll, collType, memberType string
	}{
		{"Systems", "#ComputerSystemCollection.ComputerSystemCollection", "#ComputerSystem.v1_10_0.ComputerSystem"},
		{"Chassis", "#ChassisCollection.ChassisCollection", "#Chassis.v1_10_0.Chassis"},
		{"Managers", "#ManagerCollection.ManagerCollection", "#Manager.v1_5_0.Manager"},
	}
	for _, tt := range tests {
		t.Run(tt.coll, func(t *testing.T) {
			path := "/redfish/v1/" + tt.coll
			r := do(t, base, "GET", path, "", admin)
			if r.status != 200 {
				t.Fatalf("GET %s = %d", path, r.status)
			}
			if r.doc["@odata.type"] != tt.collType || r.doc["@odata.id"] != path {
				t.Errorf("@odata.type %v, @odata.id %v", r.doc["@odata.type"], r.doc["@odata.id"])
			}
			if n := get(r.doc, "Members@odata.count"); n != 3.0 {
				t.Errorf("Members@odata.count = %v, want 3", n)
			}
			members, _ := r.doc["Members"].([]any)
			if len(members) != 3 {
				t.Fatalf("%d members, want 3", len(members))
			}
			for i, m := range members {
				id := strconv.Itoa(i + 1)
				want := path + "/" + id
				if got := get(m.(map[string]any), "@odata.id"); got != want {
					t.Errorf("member %d = %v, want %s", i, got, want)
				}
				r := do(t, base, "GET", want, "", admin)
				if r.status != 200 || r.doc["Id"] != id || r.doc["@odata.type"] != tt.memberType {
					t.Errorf("GET %s = %d, Id %v, @odata.type %v", want, r.status, r.doc["Id"], r.doc["@odata.type"])
				}
			}
		})
	}
}

func TestSystemJSON(t *testing.T) {
	s, base := start(t, Options{Systems: 2})
	r := do(t, base, "GET", s.SystemPath("2"), "", admin)
	if r.status != 200 {
		t.Fatalf("GET system = %d", r.status)
	}
	checks := []struct {
		keys []string
		want any
	}{
		{[]string{"@odata.id"}, "/redfish/v1/Systems/2"},
		{[]string{"@odata.type"}, "#ComputerSystem.v1_10_0.ComputerSystem"},
		{[]string{"Id"}, "2"},
		{[]string{"PowerState"}, "On"},
		{[]string{"Status", "State"}, "Enabled"},
		{[]string{"Status", "Health"}, "OK"},
		{[]string{"Boot", "BootSourceOverrideEnabled"}, "Disabled"},
		{[]string{"Boot", "BootSourceOverrideTarget"}, "None"},
		{[]string{"Boot", "BootSourceOverrideMode"}, "UEFI"},
		{[]string{"ProcessorSummary", "Count"}, 2.0},
		{[]string{"MemorySummary", "TotalSystemMemoryGiB"}, 256.0},
		{[]string{"Actions", "#ComputerSystem.Reset", "target"}, "/redfish/v1/Systems/2/Actions/ComputerSystem.Reset"},
	}
	for _, c := range checks {
		if got := get(r.doc, c.keys...); got != c.want {
			t.Errorf("%v = %v, want %v", c.keys, got, c.want)
		}
	}
	for _, k := range []string{"Name", "UUID", "Manufacturer", "Model", "SerialNumber", "@odata.context"} {
		if v, _ := r.doc[k].(string); v == "" {
			t.Errorf("%s is missing", k)
		}
	}
	resets := stringList(get(r.doc, "Actions", "#ComputerSystem.Reset", "ResetType@Redfish.AllowableValues"))
	if !slices.Equal(resets, defaultResetTypes) {
		t.Errorf("reset AllowableValues = %v, want %v", resets, defaultResetTypes)
	}
	if targets := stringList(get(r.doc, "Boot", "BootSourceOverrideTarget@Redfish.AllowableValues")); !slices.Contains(targets, "Pxe") {
		t.Errorf("boot AllowableValues = %v, want Pxe among them", targets)
	}

	// The UUID is stable per ID and differs between systems.
	again := do(t, base, "GET", s.SystemPath("2"), "", admin)
	other := do(t, base, "GET", s.SystemPath("1"), "", admin)
	if again.doc["UUID"] != r.doc["UUID"] || other.doc["UUID"] == r.doc["UUID"] {
		t.Errorf("UUIDs: %v, again %v, system 1 %v", r.doc["UUID"], again.doc["UUID"], other.doc["UUID"])
	}

	s.SetAllowableResetTypes("2", []string{"On", "ForceOff"})
	r = do(t, base, "GET", s.SystemPath("2"), "", admin)
	resets = stringList(get(r.doc, "Actions", "#ComputerSystem.Reset", "ResetType@Redfish.AllowableValues"))
	if !slices.Equal(resets, []string{"On", "ForceOff"}) {
		t.Errorf("after SetAllowableResetTypes, AllowableValues = %v", resets)
	}
}

func TestPatchBoot(t *testing.T) {
	s, base := start(t, Options{})
	path := s.SystemPath("1")
	r := do(t, base, "PATCH", path, `{"Boot":{"BootSourceOverrideTarget":"Pxe","BootSourceOverrideEnabled":"Once"}}`, admin)
	if r.status != 204 {
		t.Fatalf("PATCH boot = %d %v", r.status, r.doc)
	}
	r = do(t, base, "GET", path, "", admin)
	if get(r.doc, "Boot", "BootSourceOverrideTarget") != "Pxe" || get(r.doc, "Boot", "BootSourceOverrideEnabled") != "Once" {
		t.Errorf("after PATCH, Boot = %v", r.doc["Boot"])
	}
	if r := do(t, base, "PATCH", path, `{"AssetTag":"rack-7"}`, admin); r.status != 204 {
		t.Errorf("PATCH of an unmodelled property = %d, want 204", r.status)
	}
	if r := do(t, base, "PATCH", path, `{"Boot":{"BootSourceOverrideTarget":"Floppy"}}`, admin); r.status != 400 {
		t.Errorf("PATCH with a bad target = %d, want 400", r.status)
	}
	if r := do(t, base, "PATCH", path, `{"Boot":`, admin); r.status != 400 {
		t.Errorf("PATCH with malformed JSON = %d, want 400", r.status)
	}
}

func TestAuth(t *testing.T) {
	_, base := start(t, Options{Username: "root", Password: "calvin"})
	tests := []struct {
		name string
		auth auth
		want int
	}{
		{"right basic credentials", basic("root", "calvin"), 200},
		{"wrong password", basic("root", "wrong"), 401},
		{"wrong user", basic("admin", "calvin"), 401},
		{"no credentials", noAuth, 401},
		{"unknown token", token("deadbeef"), 401},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := do(t, base, "GET", "/redfish/v1/Systems/1", "", tt.auth)
			if r.status != tt.want {
				t.Fatalf("status = %d, want %d", r.status, tt.want)
			}
			if tt.want == 401 {
				if h := r.header.Get("WWW-Authenticate"); h != `Basic realm="redfish"` {
					t.Errorf("WWW-Authenticate = %q", h)
				}
				if r.doc["error"] == nil {
					t.Errorf("401 without a Redfish error body: %v", r.doc)
				}
			}
		})
	}
}

func TestSessions(t *testing.T) {
	s, base := start(t, Options{})
	const sessions = "/redfish/v1/SessionService/Sessions"

	if r := do(t, base, "POST", sessions, `{"UserName":"admin","Password":"nope"}`, noAuth); r.status != 401 {
		t.Fatalf("login with a wrong password = %d, want 401", r.status)
	}
	if r := do(t, base, "POST", sessions, `{"UserName":`, noAuth); r.status != 400 {
		t.Fatalf("login with malformed JSON = %d, want 400", r.status)
	}
	r := do(t, base, "POST", sessions, `{"UserName":"admin","Password":"password"}`, noAuth)
	if r.status != 201 {
		t.Fatalf("login = %d %v", r.status, r.doc)
	}
	tok, loc := r.header.Get("X-Auth-Token"), r.header.Get("Location")
	if tok == "" || loc != sessions+"/"+r.doc["Id"].(string) || r.doc["@odata.id"] != loc {
		t.Fatalf("login: token %q, Location %q, body %v", tok, loc, r.doc)
	}
	if r.doc["UserName"] != "admin" || r.doc["Password"] != nil {
		t.Errorf("session body = %v", r.doc)
	}
	if n := s.ActiveSessions(); n != 1 {
		t.Fatalf("ActiveSessions = %d, want 1", n)
	}

	if r := do(t, base, "GET", "/redfish/v1/Systems/1", "", token(tok)); r.status != 200 {
		t.Fatalf("GET with the session token = %d", r.status)
	}
	if r := do(t, base, "GET", "/redfish/v1/SessionService", "", token(tok)); r.status != 200 || get(r.doc, "Sessions", "@odata.id") != sessions {
		t.Errorf("GET SessionService = %d %v", r.status, r.doc)
	}
	r = do(t, base, "GET", sessions, "", token(tok))
	if r.status != 200 || get(r.doc, "Members@odata.count") != 1.0 {
		t.Errorf("GET Sessions = %d %v", r.status, r.doc)
	}
	if r := do(t, base, "GET", loc, "", token(tok)); r.status != 200 || r.doc["UserName"] != "admin" {
		t.Errorf("GET session = %d %v", r.status, r.doc)
	}

	if r := do(t, base, "DELETE", loc, "", token(tok)); r.status != 204 {
		t.Fatalf("logout = %d, want 204", r.status)
	}
	if n := s.ActiveSessions(); n != 0 {
		t.Fatalf("ActiveSessions after logout = %d, want 0", n)
	}
	if r := do(t, base, "GET", "/redfish/v1/Systems/1", "", token(tok)); r.status != 401 {
		t.Errorf("GET with a logged-out token = %d, want 401", r.status)
	}
	if r := do(t, base, "DELETE", loc, "", admin); r.status != 404 {
		t.Errorf("second logout = %d, want 404", r.status)
	}
}

func TestNotFoundAndMethods(t *testing.T) {
	s, base := start(t, Options{Systems: 2})
	tests := []struct {
		method, path string
		want         int
	}{
		{"GET", "/redfish/v1/Nope", 404},
		{"GET", "/redfish/v2", 404},
		{"GET", "/", 404},
		{"GET", "/redfish/v1/Systems/3", 404},
		{"GET", "/redfish/v1/Systems/0", 404},
		{"GET", "/redfish/v1/Systems/01", 404},
		{"GET", "/redfish/v1/Systems/1/Bios", 404},
		{"GET", "/redfish/v1/Chassis/3", 404},
		{"POST", "/redfish/v1/Systems/3/Actions/ComputerSystem.Reset", 404},
		{"DELETE", "/redfish/v1/Systems/1", 405},
		{"POST", "/redfish/v1/Systems", 405},
		{"GET", "/redfish/v1/Systems/1/Actions/ComputerSystem.Reset", 405},
		{"PUT", "/redfish/v1/", 405},
		{"HEAD", "/redfish/v1/Systems/1", 200},
	}
	for _, tt := range tests {
		body := ""
		if tt.method == "POST" {
			body = `{"ResetType":"On"}`
		}
		r := do(t, base, tt.method, tt.path, body, admin)
		if r.status != tt.want {
			t.Errorf("%s %s = %d, want %d", tt.method, tt.path, r.status, tt.want)
			continue
		}
		if tt.want >= 400 && r.doc["error"] == nil {
			t.Errorf("%s %s: no Redfish error body: %v", tt.method, tt.path, r.doc)
		}
		if tt.want == 405 && r.header.Get("Allow") == "" {
			t.Errorf("%s %s: 405 without Allow", tt.method, tt.path)
		}
	}
	if got := s.PowerState("1"); got != "On" {
		t.Errorf("PowerState = %s after rejected requests", got)
	}
}

func TestStartTLSAndHandler(t *testing.T) {
	s := New(Options{})
	defer s.Close()
	base := s.StartTLS()
	if !strings.HasPrefix(base, "https://127.0.0.1:") {
		t.Fatalf("StartTLS = %q", base)
	}
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	r, err := send(c, base, "GET", "/redfish/v1/Systems/1", "", admin)
	if err != nil || r.status != 200 {
		t.Fatalf("GET over TLS: %v %d", err, r.status)
	}

	// Handler works under a server the caller owns.
	ts := httptest.NewServer(New(Options{}).Handler())
	defer ts.Close()
	if r := do(t, ts.URL, "GET", "/redfish/v1/Systems/1", "", admin); r.status != 200 {
		t.Fatalf("GET via Handler = %d", r.status)
	}
}

func TestListenAndServe(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()

	s := New(Options{})
	errc := make(chan error, 1)
	go func() { errc <- s.ListenAndServe(addr) }()
	deadline := time.Now().Add(5 * time.Second)
	for {
		r, err := send(http.DefaultClient, "http://"+addr, "GET", "/redfish/v1/Systems/1", "", admin)
		if err == nil && r.status == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("ListenAndServe(%s) never answered: %v", addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.Close()
	select {
	case err := <-errc:
		if err != http.ErrServerClosed {
			t.Errorf("ListenAndServe returned %v, want http.ErrServerClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("ListenAndServe did not return after Close")
	}
	if err := s.ListenAndServe(addr); err != http.ErrServerClosed {
		t.Errorf("ListenAndServe after Close = %v, want http.ErrServerClosed", err)
	}
}

func TestLatencyAndRequests(t *testing.T) {
	s, base := start(t, Options{Latency: 100 * time.Millisecond})
	before := s.Requests()
	t0 := time.Now()
	do(t, base, "GET", "/redfish/v1/", "", noAuth)
	do(t, base, "GET", "/redfish/v1/Systems/1", "", admin)
	if d := time.Since(t0); d < 200*time.Millisecond {
		t.Errorf("two requests took %v, want at least 2×Latency", d)
	}
	if n := s.Requests() - before; n != 2 {
		t.Errorf("Requests grew by %d, want 2", n)
	}
}

func TestTenThousandSystems(t *testing.T) {
	s, base := start(t, Options{Systems: 10000})
	if ids := s.SystemIDs(); len(ids) != 10000 || ids[0] != "1" || ids[9999] != "10000" {
		t.Fatalf("SystemIDs: %d ids, first %s", len(ids), ids[0])
	}
	r := do(t, base, "GET", "/redfish/v1/Systems", "", admin)
	members, _ := r.doc["Members"].([]any)
	if r.status != 200 || get(r.doc, "Members@odata.count") != 10000.0 || len(members) != 10000 {
		t.Fatalf("collection: %d, count %v, %d members", r.status, get(r.doc, "Members@odata.count"), len(members))
	}
	if last := get(members[9999].(map[string]any), "@odata.id"); last != "/redfish/v1/Systems/10000" {
		t.Errorf("last member = %v", last)
	}
	s.SetPowerState("10000", "Off")
	r = do(t, base, "GET", s.SystemPath("10000"), "", admin)
	if r.status != 200 || r.doc["Id"] != "10000" || r.doc["PowerState"] != "Off" {
		t.Errorf("system 10000: %d %v %v", r.status, r.doc["Id"], r.doc["PowerState"])
	}
	if r := do(t, base, "GET", s.SystemPath("10001"), "", admin); r.status != 404 {
		t.Errorf("system 10001 = %d, want 404", r.status)
	}
}

// TestConcurrentUse runs resets and reads on many systems at once; run
// with -race to check the locking.
func TestConcurrentUse(t *testing.T) {
	s, base := start(t, Options{Systems: 20})
	var wg sync.WaitGroup
	for _, id := range s.SystemIDs() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, rt := range []string{"ForceOff", "On", "PushPowerButton"} {
				resp, err := send(http.DefaultClient, base, "POST", s.SystemPath(id)+"/Actions/ComputerSystem.Reset", `{"ResetType":"`+rt+`"}`, admin)
				if err != nil || resp.status != 204 {
					t.Errorf("system %s %s: %v %d", id, rt, err, resp.status)
				}
				if _, err := send(http.DefaultClient, base, "GET", s.SystemPath(id), "", admin); err != nil {
					t.Error(err)
				}
				s.PowerState(id)
			}
		}()
	}
	wg.Wait()
	for _, id := range s.SystemIDs() {
		if got := s.PowerState(id); got != "Off" {
			t.Errorf("system %s = %s, want Off after ForceOff, On, PushPowerButton", id, got)
		}
	}
}

// isTimeout reports whether err is a client timeout.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
