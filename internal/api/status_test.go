package api_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"go.temporal.io/sdk/client"
	"golang.org/x/crypto/bcrypt"

	"github.com/metalpower/metalpower/internal/api"
	"github.com/metalpower/metalpower/internal/dispatch"
	"github.com/metalpower/metalpower/internal/node"
	"github.com/metalpower/metalpower/internal/testbed"
	"github.com/metalpower/metalpower/internal/testbed/itest"
	"github.com/metalpower/metalpower/workflows"
)

// do sends one request with a microversion ("" for none) and returns the
// status, headers and body.
func do(t *testing.T, method, url, version, body string) (int, http.Header, string) {
	t.Helper()
	return send(t, method, url, version, "", body)
}

// send is do with a Keystone token (none when "").
func send(t *testing.T, method, url, version, token, body string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if version != "" {
		req.Header.Set("X-OpenStack-Ironic-API-Version", version)
	}
	if token != "" {
		req.Header.Set("X-Auth-Token", token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

// ironicFault decodes Ironic's error body.
func ironicFault(t *testing.T, body string) string {
	t.Helper()
	var outer struct {
		ErrorMessage string `json:"error_message"`
	}
	if err := json.Unmarshal([]byte(body), &outer); err != nil || outer.ErrorMessage == "" {
		t.Fatalf("not Ironic's error body: %s", body)
	}
	var inner struct {
		Faultcode   string `json:"faultcode"`
		Faultstring string `json:"faultstring"`
	}
	if err := json.Unmarshal([]byte(outer.ErrorMessage), &inner); err != nil || inner.Faultstring == "" || inner.Faultcode == "" {
		t.Fatalf("error_message is not a JSON fault: %s", outer.ErrorMessage)
	}
	return inner.Faultstring
}

// TestPowerStatusCodes is the table of NodeStatesController.power and its tests in
// ironic/tests/unit/api/controllers/v1/test_node.py: each case on a
// node of its own, and every refused request changes nothing.
func TestPowerStatusCodes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		version string
		body    string
		setup   func(n *node.Node)
		byName  bool
		status  int
	}{
		{"power on, no version", "", `{"target":"power on"}`, nil, false, 202},
		{"power on, timeout at 1.27", "1.27", `{"target":"power on","timeout":2}`, nil, false, 202},
		{"power on, timeout below 1.27", "1.26", `{"target":"power on","timeout":2}`, nil, false, 406},
		{"power on, timeout 0", "1.1", `{"target":"power on","timeout":0}`, nil, false, 400},
		{"power on, timeout 0 at 1.27", "1.27", `{"target":"power on","timeout":0}`, nil, false, 400},
		{"soft power off below 1.27", "1.26", `{"target":"soft power off"}`, nil, false, 406},
		{"soft rebooting below 1.27", "1.26", `{"target":"soft rebooting"}`, nil, false, 406},
		{"soft power off below 1.27, timeout 0", "1.26", `{"target":"soft power off","timeout":0}`, nil, false, 406},
		{"soft power off at 1.27", "1.27", `{"target":"soft power off"}`, nil, false, 202},
		{"soft power off at 1.27, timeout 2", "1.27", `{"target":"soft power off","timeout":2}`, nil, false, 202},
		{"soft power off at 1.27, timeout 0", "1.27", `{"target":"soft power off","timeout":0}`, nil, false, 400},
		{"power off with disable_power_off", "1.95", `{"target":"power off"}`, func(n *node.Node) { n.DisablePowerOff = true }, false, 409},
		{"soft power off with disable_power_off", "1.95", `{"target":"soft power off"}`, func(n *node.Node) { n.DisablePowerOff = true }, false, 409},
		{"reboot with disable_power_off", "1.95", `{"target":"rebooting"}`, func(n *node.Node) { n.DisablePowerOff = true }, false, 202},
		{"by name below 1.5", "1.4", `{"target":"power on"}`, nil, true, 404},
		{"by name at 1.5", "1.5", `{"target":"power on"}`, nil, true, 202},
		{"invalid target", "1.95", `{"target":"explode"}`, nil, false, 400},
		{"cleaning", "1.95", `{"target":"power on"}`, func(n *node.Node) { n.ProvisionState = node.Cleaning }, false, 400},
		{"clean wait", "1.95", `{"target":"power on"}`, func(n *node.Node) { n.ProvisionState = node.CleanWait }, false, 400},
		{"malformed JSON", "1.95", `{"target":`, nil, false, 400},
		{"unknown field", "1.95", `{"target":"power on","force":true}`, nil, false, 400},
		{"wrong type", "1.95", `{"target":"power on","timeout":"soon"}`, nil, false, 400},
		{"target not a string", "1.95", `{"target":1}`, nil, false, 400},
		{"oversize body", "1.95", `{"target":"power on","pad":"` + strings.Repeat("x", api.MaxBodyBytes) + `"}`, nil, false, 413},
		{"unsupported version", "1.200", `{"target":"power on"}`, nil, false, 406},
		{"malformed version", "one", `{"target":"power on"}`, nil, false, 406},
	}
	s := itest.NewStack(t, srv, itest.StackOptions{RedfishSystems: len(tests)})
	url := s.StartAPI(t, nil)
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id := s.Redfish.SystemIDs()[i]
			n := s.AddRedfishNode(t, fmt.Sprintf("node-%02d", i), id, "")
			if tt.setup != nil {
				tt.setup(n)
				if err := s.Store.Update(t.Context(), n); err != nil {
					t.Fatal(err)
				}
			}
			s.Redfish.SetPowerState(id, "Off")
			ident := n.UUID
			if tt.byName {
				ident = n.Name
			}
			status, hdr, body := do(t, http.MethodPut, url+"/v1/nodes/"+ident+"/states/power", tt.version, tt.body)
			if status != tt.status {
				t.Fatalf("status %d, want %d: %s", status, tt.status, body)
			}
			if status == 202 {
				if body != "" || !strings.HasSuffix(hdr.Get("Location"), "/v1/nodes/"+ident+"/states") {
					t.Fatalf("202 with body %q, Location %q", body, hdr.Get("Location"))
				}
				itest.WaitFor(t, 30*time.Second, "the change", func() bool { return s.Node(t, n.UUID).TargetPowerState == "" })
				return
			}
			ironicFault(t, body)
			got := s.Node(t, n.UUID)
			if got.TargetPowerState != "" || got.PowerState != node.PowerOn || got.LastError != "" || len(s.Redfish.Resets(id)) != 0 {
				t.Fatalf("a refused request changed the node: target %q power %q last_error %q resets %v",
					got.TargetPowerState, got.PowerState, got.LastError, s.Redfish.Resets(id))
			}
		})
	}
}

func TestNodeLockedAndServiceUnavailable(t *testing.T) {
	t.Parallel()
	s := itest.NewStack(t, srv, itest.StackOptions{})
	url := s.StartAPI(t, nil)
	n := s.AddRedfishNode(t, "held", "1", "")
	// A workflow no worker runs holds the node's lock.
	holder, err := s.Client.ExecuteWorkflow(t.Context(), client.StartWorkflowOptions{ID: dispatch.LockID(n.UUID), TaskQueue: "nobody-polls"},
		workflows.PowerChangeWorkflow, workflows.PowerChangeInput{Node: n.UUID, Target: node.PowerOn})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Client.TerminateWorkflow(t.Context(), holder.GetID(), "", "test done")
	status, _, body := do(t, http.MethodPut, url+"/v1/nodes/"+n.UUID+"/states/power", "1.95", `{"target":"power off"}`)
	if status != http.StatusConflict || !strings.Contains(ironicFault(t, body), "locked") {
		t.Fatalf("locked node: %d %s", status, body)
	}
	if got := s.Node(t, n.UUID); got.TargetPowerState != "" {
		t.Fatalf("a refused change left target_power_state %q", got.TargetPowerState)
	}
	status, _, body = do(t, http.MethodDelete, url+"/v1/nodes/"+n.UUID, "1.95", "")
	if status != http.StatusConflict {
		t.Fatalf("delete of a locked node: %d %s", status, body)
	}

	// The workflow service down: 503, nothing changed.
	dead, err := client.NewLazyClient(client.Options{HostPort: "127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	down := httptest.NewServer((&api.Server{Store: s.Store, Temporal: dead, TaskQueue: "q", Log: zerolog.Nop()}).Handler())
	defer down.Close()
	m := s.AddRedfishNode(t, "orphan", "2", "")
	s.Modify(t, m.UUID, func(n *node.Node) { n.LastError = "an older failure" })
	status, _, body = do(t, http.MethodPut, down.URL+"/v1/nodes/"+m.UUID+"/states/power", "1.95", `{"target":"power off"}`)
	if status != http.StatusServiceUnavailable {
		t.Fatalf("workflow service down: %d %s", status, body)
	}
	ironicFault(t, body)
	// Ironic's power_state_error_handler: no target, the power state as
	// it was, and its trace in last_error.
	if got := s.Node(t, m.UUID); got.TargetPowerState != "" || got.PowerState != node.PowerOn || got.LastError != "No free conductor workers available" {
		t.Fatalf("after a 503: target %q, power %q, last_error %q", got.TargetPowerState, got.PowerState, got.LastError)
	}
	// A lock held elsewhere leaves last_error as it was (Ironic refuses
	// before it marks anything).
	s.Modify(t, n.UUID, func(n *node.Node) { n.LastError = "kept" })
	if status, _, body := do(t, http.MethodPut, url+"/v1/nodes/"+n.UUID+"/states/power", "1.95", `{"target":"power off"}`); status != http.StatusConflict {
		t.Fatalf("locked node: %d %s", status, body)
	}
	if got := s.Node(t, n.UUID); got.LastError != "kept" {
		t.Fatalf("a refused change changed last_error to %q", got.LastError)
	}
}

func TestVersionsAndStates(t *testing.T) {
	t.Parallel()
	s := itest.NewStack(t, srv, itest.StackOptions{})
	url := s.StartAPI(t, nil)
	status, hdr, body := do(t, http.MethodGet, url+"/", "", "")
	if status != 200 || hdr.Get("X-OpenStack-Ironic-API-Minimum-Version") != "1.1" || hdr.Get("X-OpenStack-Ironic-API-Maximum-Version") != api.MaxVersion.String() ||
		!strings.Contains(body, `"default_version"`) || hdr.Get("X-Openstack-Request-Id") == "" {
		t.Fatalf("root: %d %v %s", status, hdr, body)
	}
	if _, hdr, _ := do(t, http.MethodGet, url+"/v1", "latest", ""); hdr.Get("X-OpenStack-Ironic-API-Version") != api.MaxVersion.String() {
		t.Fatalf("latest negotiated %q", hdr.Get("X-OpenStack-Ironic-API-Version"))
	}
	n := s.AddRedfishNode(t, "st", "1", "")
	status, _, body = do(t, http.MethodGet, url+"/v1/nodes/"+n.UUID+"/states", "1.11", "")
	var st map[string]any
	json.Unmarshal([]byte(body), &st)
	if status != 200 || st["power_state"] != node.PowerOn || st["target_power_state"] != nil || st["provision_state"] != node.Manageable {
		t.Fatalf("states: %d %s", status, body)
	}
	if _, ok := st["raid_config"]; ok {
		t.Fatal("raid_config shown below 1.12")
	}
	_, _, body = do(t, http.MethodGet, url+"/v1/nodes/"+n.UUID+"/states", "1.12", "")
	if !strings.Contains(body, "raid_config") {
		t.Fatal("raid_config missing at 1.12")
	}
	// Fields appear with their version: fault from 1.42, disable_power_off from 1.95.
	_, _, body = do(t, http.MethodGet, url+"/v1/nodes/"+n.UUID, "1.41", "")
	if strings.Contains(body, `"fault"`) || strings.Contains(body, "disable_power_off") {
		t.Fatalf("1.41 shows later fields: %s", body)
	}
	_, _, body = do(t, http.MethodGet, url+"/v1/nodes/"+n.UUID, "1.95", "")
	if !strings.Contains(body, `"fault"`) || !strings.Contains(body, "disable_power_off") || strings.Contains(body, testbed.RedfishPassword) {
		t.Fatalf("1.95 node: %s", body)
	}
}

func TestBadNodeRequestsChangeNothing(t *testing.T) {
	t.Parallel()
	s := itest.NewStack(t, srv, itest.StackOptions{})
	url := s.StartAPI(t, nil)
	n := s.AddRedfishNode(t, "keep", "1", "")
	tests := []struct {
		name, method, path, body string
		status                   int
	}{
		{"unknown node", "GET", "/v1/nodes/nope", "", 404},
		{"unknown node patch", "PATCH", "/v1/nodes/nope", `[]`, 404},
		{"create, malformed", "POST", "/v1/nodes", `{"driver":`, 400},
		{"create, unknown field", "POST", "/v1/nodes", `{"driver":"ipmi","colour":"red"}`, 400},
		{"create, wrong type", "POST", "/v1/nodes", `{"driver":"ipmi","driver_info":"x"}`, 400},
		{"create, no driver", "POST", "/v1/nodes", `{"name":"x"}`, 400},
		{"create, bad uuid", "POST", "/v1/nodes", `{"driver":"ipmi","uuid":"zz","driver_info":{"ipmi_address":"h"}}`, 400},
		{"create, duplicate name", "POST", "/v1/nodes", `{"driver":"ipmi","name":"keep","driver_info":{"ipmi_address":"h"}}`, 409},
		{"patch read-only", "PATCH", "/v1/nodes/keep", `[{"op":"replace","path":"/power_state","value":"power off"}]`, 400},
		{"patch unknown op", "PATCH", "/v1/nodes/keep", `[{"op":"move","path":"/name","value":"x"}]`, 400},
		{"patch bad driver_info", "PATCH", "/v1/nodes/keep", `[{"op":"replace","path":"/driver_info","value":{"redfish_address":"ftp://x"}}]`, 400},
		{"patch not a list", "PATCH", "/v1/nodes/keep", `{"op":"replace"}`, 400},
		{"list, bad limit", "GET", "/v1/nodes?limit=-1", "", 400},
		{"list, bad sort key", "GET", "/v1/nodes?sort_key=driver_info", "", 400},
		{"list, bad field", "GET", "/v1/nodes?fields=uuid,password", "", 400},
		{"list, bad marker", "GET", "/v1/nodes?marker=not-a-uuid", "", 400},
		{"provision, unknown action", "PUT", "/v1/nodes/keep/states/provision", `{"target":"deploy"}`, 400},
		{"provision, wrong state", "PUT", "/v1/nodes/keep/states/provision", `{"target":"manage"}`, 400},
	}
	for _, tt := range tests {
		status, _, body := do(t, tt.method, url+tt.path, "1.95", tt.body)
		if status != tt.status {
			t.Errorf("%s: status %d, want %d: %s", tt.name, status, tt.status, body)
			continue
		}
		ironicFault(t, body)
	}
	got := s.Node(t, n.UUID)
	if got.Version != n.Version || got.PowerState != node.PowerOn {
		t.Fatalf("bad requests changed the node: %+v", got)
	}
}

func TestHTTPBasicAuth(t *testing.T) {
	t.Parallel()
	s := itest.NewStack(t, srv, itest.StackOptions{})
	// An htpasswd file with a bcrypt entry, as htpasswd -B writes it.
	hash, err := bcrypt.GenerateFromPassword([]byte("secret"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "htpasswd")
	os.WriteFile(file, []byte("# users\nadmin:"+string(hash)+"\n"), 0o600)
	users, err := api.LoadHtpasswd(file)
	if err != nil {
		t.Fatal(err)
	}
	url := s.StartAPI(t, users)
	if status, hdr, _ := do(t, http.MethodGet, url+"/v1/nodes", "", ""); status != 401 || !strings.HasPrefix(hdr.Get("WWW-Authenticate"), "Basic") {
		t.Fatalf("no credentials: %d", status)
	}
	if status, _, _ := do(t, http.MethodGet, url+"/", "", ""); status != 200 {
		t.Fatalf("version discovery needs no credentials, got %d", status)
	}
	for _, tc := range []struct {
		user, pass string
		want       int
	}{{"admin", "secret", 200}, {"admin", "wrong", 401}, {"nobody", "secret", 401}} {
		req, _ := http.NewRequest(http.MethodGet, url+"/v1/nodes", nil)
		req.SetBasicAuth(tc.user, tc.pass)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("%s/%s: %d, want %d", tc.user, tc.pass, resp.StatusCode, tc.want)
		}
	}
}
