package novasim

import (
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
)

const (
	uuid1 = "1f0e2d3c-4b5a-4978-8695-a4b3c2d1e0f1"
	uuid2 = "2f0e2d3c-4b5a-4978-8695-a4b3c2d1e0f2"
	uuid3 = "3f0e2d3c-4b5a-4978-8695-a4b3c2d1e0f3" // never added
)

func powerEvent(uuid, tag string) string {
	return `{"name":"power-update","server_uuid":"` + uuid + `","tag":"` + tag + `"}`
}

func powerOff(uuid string) string { return `{"events":[` + powerEvent(uuid, "POWER_OFF") + `]}` }

// state is the part of an Instance a test checks.
type state struct {
	vm, power string
	actions   []string
}

func TestExternalEvents(t *testing.T) {
	v276 := map[string]string{"OpenStack-API-Version": "compute 2.76"}
	tests := []struct {
		name       string
		header     map[string]string // added to a valid X-Auth-Token
		body       string
		wantStatus int
		wantCodes  []int    // per-event codes, nil when the request fails whole
		wantStates []string // per-event statuses
		want       map[string]state
	}{
		{
			name: "power off", header: v276, body: powerOff(uuid1),
			wantStatus: 200, wantCodes: []int{200}, wantStates: []string{"completed"},
			want: map[string]state{uuid1: {"stopped", "shutdown", []string{"stop"}}},
		},
		{
			name: "power on", header: v276, body: `{"events":[` + powerEvent(uuid2, "POWER_ON") + `]}`,
			wantStatus: 200, wantCodes: []int{200}, wantStates: []string{"completed"},
			want: map[string]state{uuid2: {"active", "running", []string{"start"}}},
		},
		{
			name: "power on when already on is a no-op", header: v276, body: `{"events":[` + powerEvent(uuid1, "POWER_ON") + `]}`,
			wantStatus: 200, wantCodes: []int{200}, wantStates: []string{"completed"},
			want: map[string]state{uuid1: {"active", "running", []string{"start"}}},
		},
		{
			name: "power off when already off is a no-op", header: v276, body: powerOff(uuid2),
			wantStatus: 200, wantCodes: []int{200}, wantStates: []string{"completed"},
			want: map[string]state{uuid2: {"stopped", "shutdown", []string{"stop"}}},
		},
		{
			name: "unknown tag is accepted and skipped", header: v276, body: `{"events":[` + powerEvent(uuid1, "VACATION") + `]}`,
			wantStatus: 200, wantCodes: []int{200}, wantStates: []string{"completed"},
			want: map[string]state{uuid1: {"active", "running", nil}},
		},
		{
			name: "unknown instance", header: v276, body: powerOff(uuid3),
			wantStatus: 207, wantCodes: []int{404}, wantStates: []string{"failed"},
		},
		{
			name: "one good one unknown", header: v276,
			body:       `{"events":[` + powerEvent(uuid1, "POWER_OFF") + `,` + powerEvent(uuid3, "POWER_OFF") + `]}`,
			wantStatus: 207, wantCodes: []int{200, 404}, wantStates: []string{"completed", "failed"},
			want: map[string]state{uuid1: {"stopped", "shutdown", []string{"stop"}}},
		},
		{
			name: "instance without host", header: v276, body: powerOff("4f0e2d3c-4b5a-4978-8695-a4b3c2d1e0f4"),
			wantStatus: 207, wantCodes: []int{422}, wantStates: []string{"failed"},
			want: map[string]state{"4f0e2d3c-4b5a-4978-8695-a4b3c2d1e0f4": {"active", "running", nil}},
		},
		{
			name: "power-update without tag", header: v276,
			body:       `{"events":[{"name":"power-update","server_uuid":"` + uuid1 + `"}]}`,
			wantStatus: 207, wantCodes: []int{400}, wantStates: []string{"failed"},
			want: map[string]state{uuid1: {"active", "running", nil}},
		},
		{
			name: "status sent is echoed", header: v276,
			body:       `{"events":[{"name":"power-update","server_uuid":"` + uuid1 + `","tag":"POWER_OFF","status":"in-progress"}]}`,
			wantStatus: 200, wantCodes: []int{200}, wantStates: []string{"in-progress"},
		},
		{
			name: "other event needs no tag", header: nil,
			body:       `{"events":[{"name":"network-changed","server_uuid":"` + uuid1 + `"}]}`,
			wantStatus: 200, wantCodes: []int{200}, wantStates: []string{"completed"},
			want: map[string]state{uuid1: {"active", "running", nil}},
		},
		{
			name: "uuid without hyphens", header: v276, body: powerOff(strings.ReplaceAll(uuid3, "-", "")),
			wantStatus: 207, wantCodes: []int{404}, wantStates: []string{"failed"},
		},
		{name: "legacy header", header: map[string]string{"X-OpenStack-Nova-API-Version": "2.76"}, body: powerOff(uuid1),
			wantStatus: 200, wantCodes: []int{200}, wantStates: []string{"completed"}},
		{name: "latest", header: map[string]string{"OpenStack-API-Version": "compute latest"}, body: powerOff(uuid1),
			wantStatus: 200, wantCodes: []int{200}, wantStates: []string{"completed"}},
		{name: "new header wins", header: map[string]string{"OpenStack-API-Version": "compute 2.75", "X-OpenStack-Nova-API-Version": "2.76"},
			body: powerOff(uuid1), wantStatus: 400},
		{name: "power-update at 2.75", header: map[string]string{"OpenStack-API-Version": "compute 2.75"}, body: powerOff(uuid1), wantStatus: 400},
		{name: "power-update without microversion", body: powerOff(uuid1), wantStatus: 400},
		{name: "microversion too high", header: map[string]string{"OpenStack-API-Version": "compute 2.999"}, body: powerOff(uuid1), wantStatus: 406},
		{name: "microversion malformed", header: map[string]string{"OpenStack-API-Version": "compute two"}, body: powerOff(uuid1), wantStatus: 400},
		{name: "malformed JSON", header: v276, body: `{"events":[`, wantStatus: 400},
		{name: "not an object", header: v276, body: `[]`, wantStatus: 400},
		{name: "no events key", header: v276, body: `{}`, wantStatus: 400},
		{name: "events null", header: v276, body: `{"events":null}`, wantStatus: 400},
		{name: "empty events", header: v276, body: `{"events":[]}`, wantStatus: 400},
		{name: "extra top-level field", header: v276, body: `{"events":[` + powerEvent(uuid1, "POWER_OFF") + `],"x":1}`, wantStatus: 400},
		{name: "extra event field", header: v276,
			body: `{"events":[{"name":"power-update","server_uuid":"` + uuid1 + `","tag":"POWER_OFF","code":200}]}`, wantStatus: 400},
		{name: "missing name", header: v276, body: `{"events":[{"server_uuid":"` + uuid1 + `","tag":"POWER_OFF"}]}`, wantStatus: 400},
		{name: "missing server_uuid", header: v276, body: `{"events":[{"name":"power-update","tag":"POWER_OFF"}]}`, wantStatus: 400},
		{name: "unknown name", header: v276, body: `{"events":[{"name":"reboot","server_uuid":"` + uuid1 + `"}]}`, wantStatus: 400},
		{name: "server_uuid not a uuid", header: v276, body: powerOff("node-1"), wantStatus: 400},
		{name: "bad status", header: v276,
			body: `{"events":[{"name":"power-update","server_uuid":"` + uuid1 + `","tag":"POWER_OFF","status":"done"}]}`, wantStatus: 400},
		{name: "tag not a string", header: v276,
			body: `{"events":[{"name":"power-update","server_uuid":"` + uuid1 + `","tag":1}]}`, wantStatus: 400},
		{name: "tag too long", header: v276, body: `{"events":[` + powerEvent(uuid1, strings.Repeat("x", 256)) + `]}`, wantStatus: 400},
		{name: "one bad event fails all", header: v276,
			body: `{"events":[` + powerEvent(uuid1, "POWER_OFF") + `,{"name":"power-update","server_uuid":"bad","tag":"POWER_OFF"}]}`, wantStatus: 400,
			want: map[string]state{uuid1: {"active", "running", nil}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := start(t, Options{})
			s.AddInstance(uuid1, "host1", "active", "running")
			s.AddInstance(uuid2, "host1", "stopped", "shutdown")
			s.AddInstance("4f0e2d3c-4b5a-4978-8695-a4b3c2d1e0f4", "", "active", "running")
			header := map[string]string{"X-Auth-Token": login(t, s)}
			for k, v := range tt.header {
				header[k] = v
			}
			r := do(t, "POST", s.URL()+"/v2.1/os-server-external-events", tt.body, header)
			if r.status != tt.wantStatus {
				t.Fatalf("status %d, want %d: %s", r.status, tt.wantStatus, r.raw)
			}
			if tt.wantCodes == nil {
				if _, ok := r.doc["events"]; ok {
					t.Errorf("failed request answered with events: %s", r.raw)
				}
				if len(s.Events()) != 0 {
					t.Errorf("Events() = %v, want none for a rejected request", s.Events())
				}
			} else {
				events, _ := r.doc["events"].([]any)
				var codes []int
				var states []string
				for _, e := range events {
					e := e.(map[string]any)
					codes = append(codes, int(e["code"].(float64)))
					states = append(states, e["status"].(string))
					if e["name"] == nil || e["server_uuid"] == nil {
						t.Errorf("event %v does not echo the request", e)
					}
				}
				if !slices.Equal(codes, tt.wantCodes) || !slices.Equal(states, tt.wantStates) {
					t.Errorf("codes %v statuses %v, want %v %v", codes, states, tt.wantCodes, tt.wantStates)
				}
				recorded := s.Events()
				if len(recorded) != len(tt.wantCodes) {
					t.Fatalf("Events() has %d events, want %d", len(recorded), len(tt.wantCodes))
				}
				for i, e := range recorded {
					if e.Code != tt.wantCodes[i] || e.Status != tt.wantStates[i] || e.At.IsZero() {
						t.Errorf("Events()[%d] = %+v, want code %d status %s", i, e, tt.wantCodes[i], tt.wantStates[i])
					}
				}
			}
			for uuid, want := range tt.want {
				inst, _ := s.Instance(uuid)
				got := state{inst.VMState, inst.PowerState, inst.Actions}
				if got.vm != want.vm || got.power != want.power || !slices.Equal(got.actions, want.actions) {
					t.Errorf("instance %s is %+v, want %+v", uuid, got, want)
				}
			}
		})
	}
}

func TestTaskStateMakesNoOp(t *testing.T) {
	s := start(t, Options{})
	s.AddInstance(uuid1, "host1", "active", "running")
	s.SetTaskState(uuid1, "rebooting")
	r := do(t, "POST", s.URL()+"/v2.1/os-server-external-events", powerOff(uuid1),
		map[string]string{"X-Auth-Token": login(t, s), "OpenStack-API-Version": "compute 2.76"})
	if r.status != http.StatusOK {
		t.Fatalf("status %d, want 200", r.status)
	}
	inst, _ := s.Instance(uuid1)
	if inst.VMState != "active" || inst.PowerState != "running" {
		t.Errorf("instance changed to %s/%s during a task", inst.VMState, inst.PowerState)
	}
}

func TestNovaAuthAndRouting(t *testing.T) {
	s := start(t, Options{})
	s.AddInstance(uuid1, "host1", "active", "running")
	tok := login(t, s)
	tests := []struct {
		name, method, path string
		header             map[string]string
		wantStatus         int
	}{
		{"no token", "POST", "/v2.1/os-server-external-events", nil, 401},
		{"bad token", "POST", "/v2.1/os-server-external-events", map[string]string{"X-Auth-Token": "nope"}, 401},
		{"public endpoint", "POST", "/public/v2.1/os-server-external-events", map[string]string{"X-Auth-Token": tok}, 200},
		{"admin endpoint", "POST", "/admin/v2.1/os-server-external-events", map[string]string{"X-Auth-Token": tok}, 200},
		{"wrong method", "GET", "/v2.1/os-server-external-events", map[string]string{"X-Auth-Token": tok}, 405},
		{"unknown resource", "GET", "/v2.1/servers", map[string]string{"X-Auth-Token": tok}, 404},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			header := map[string]string{"OpenStack-API-Version": "compute 2.76"}
			for k, v := range tt.header {
				header[k] = v
			}
			body := ""
			if tt.method == "POST" {
				body = `{"events":[` + powerEvent(uuid1, "POWER_ON") + `]}`
			}
			r := do(t, tt.method, s.URL()+tt.path, body, header)
			if r.status != tt.wantStatus {
				t.Fatalf("status %d, want %d: %s", r.status, tt.wantStatus, r.raw)
			}
			if r.status == http.StatusUnauthorized && !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Keystone uri=") {
				t.Errorf("401 without WWW-Authenticate: Keystone")
			}
		})
	}
}

func TestRequestsRecorded(t *testing.T) {
	s := start(t, Options{})
	s.AddInstance(uuid1, "host1", "active", "running")
	tok := login(t, s)
	body := powerOff(uuid1)
	do(t, "POST", s.URL()+"/v2.1/os-server-external-events", body,
		map[string]string{"X-Auth-Token": tok, "X-OpenStack-Nova-API-Version": "2.76"})

	reqs := s.Requests()
	if len(reqs) != 2 {
		t.Fatalf("%d requests recorded, want 2", len(reqs))
	}
	if r := reqs[0]; r.Method != "POST" || r.Path != "/v3/auth/tokens" || r.Status != 201 || r.Microversion != "" {
		t.Errorf("login recorded as %+v", r)
	}
	r := reqs[1]
	if r.Method != "POST" || r.Path != "/v2.1/os-server-external-events" || r.Status != 200 ||
		r.Microversion != "2.76" || r.Body != body || r.Header.Get("X-Auth-Token") != tok {
		t.Errorf("event request recorded as %+v", r)
	}
}

func TestOutages(t *testing.T) {
	s := start(t, Options{})
	s.AddInstance(uuid1, "host1", "active", "running")
	tok := login(t, s) // leaves a kept-alive connection in the default client
	events := s.URL() + "/v2.1/os-server-external-events"
	header := map[string]string{"X-Auth-Token": tok, "OpenStack-API-Version": "compute 2.76"}

	s.SetOutage(Outage503)
	if r := do(t, "POST", s.URL()+"/v3/auth/tokens", passwordAuth("ironic", "secret", "Default", "service", "Default"), nil); r.status != 503 {
		t.Errorf("Keystone during 503 outage: status %d", r.status)
	}
	if r := do(t, "POST", events, powerOff(uuid1), header); r.status != 503 {
		t.Errorf("Nova during 503 outage: status %d", r.status)
	}

	s.SetOutage(OutageRefuse)
	before := len(s.Requests())
	for _, client := range []*http.Client{http.DefaultClient, {Transport: &http.Transport{}}} {
		req, _ := http.NewRequest("POST", events, strings.NewReader(powerOff(uuid1)))
		for k, v := range header {
			req.Header.Set(k, v)
		}
		if resp, err := client.Do(req); err == nil {
			resp.Body.Close()
			t.Errorf("request during refuse outage answered %d", resp.StatusCode)
		}
	}
	if got := len(s.Requests()); got != before {
		t.Errorf("refused requests were recorded: %d new", got-before)
	}

	s.SetOutage(OutageNone)
	if r := do(t, "POST", events, powerOff(uuid1), header); r.status != 200 {
		t.Errorf("after the outage: status %d", r.status)
	}
	if inst, _ := s.Instance(uuid1); inst.VMState != "stopped" || len(s.Events()) != 1 {
		t.Errorf("after the outage: instance %+v, events %v; want one event applied", inst, s.Events())
	}
}

func TestConcurrentEvents(t *testing.T) {
	s := start(t, Options{})
	s.AddInstance(uuid1, "host1", "active", "running")
	tok := login(t, s)
	header := map[string]string{"X-Auth-Token": tok, "OpenStack-API-Version": "compute 2.76"}
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			do(t, "POST", s.URL()+"/v2.1/os-server-external-events", powerOff(uuid1), header)
		})
	}
	wg.Wait()
	inst, _ := s.Instance(uuid1)
	if len(inst.Actions) != 20 || len(s.Events()) != 20 || inst.VMState != "stopped" {
		t.Errorf("after 20 concurrent POWER_OFF: %d actions, %d events, vm_state %s", len(inst.Actions), len(s.Events()), inst.VMState)
	}
}
