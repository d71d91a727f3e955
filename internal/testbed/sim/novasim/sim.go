// Package novasim simulates the two OpenStack services metalpower talks to
// when it reports power changes: Keystone v3 (token issue and the service
// catalog) and the Nova external-events API that receives Ironic's
// "power-update" events. Both are served by one HTTP server on loopback.
//
// The Nova side follows nova/api/openstack/compute/server_external_events.py
// and the compute manager's power_update: the request schema (including the
// microversion 2.76 gate on "power-update"), the per-event 404/400/422
// results, the 200/207 overall status, and the instance state transitions
// that only happen when the instance is in the expected state.
//
// The compute endpoint is published under three URLs, one per catalog
// interface (internal = <base>/v2.1, public = <base>/public/v2.1, admin =
// <base>/admin/v2.1), so a test can tell which one a client picked from
// Requests. All three reach the same instances.
package novasim

import (
	"bytes"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Options configures a Sim. The zero value is usable.
type Options struct {
	// Password credentials Keystone accepts (defaults "ironic", "secret",
	// "service"). The user and the project are both in domain "Default".
	Username, Password, ProjectName string
	// Application credential Keystone accepts; none when AppCredID is "".
	AppCredID, AppCredSecret string
	// Region of every catalog endpoint (default "RegionOne").
	Region string
	// TokenTTL is how long an issued token is valid (default 1h). Nova
	// answers 401 to an expired token, as keystonemiddleware does.
	TokenTTL time.Duration
}

// Outage is a failure of the whole simulated cloud, Keystone included.
type Outage int

const (
	// OutageNone: serve normally.
	OutageNone Outage = iota
	// OutageRefuse: accept each TCP connection and close it without an
	// HTTP answer, like a crashed process behind a load balancer. Requests
	// on connections already open are read and then dropped the same way.
	// Such requests are not recorded in Requests.
	OutageRefuse
	// Outage503: answer 503 Service Unavailable to every request.
	Outage503
)

// Instance is a Nova server as the Ironic virt driver sees it.
type Instance struct {
	UUID string
	// Host is the compute host; "" means the instance has not been
	// scheduled yet, so Nova rejects its events with 422.
	Host string
	// VMState is "active" or "stopped"; PowerState is "running" or
	// "shutdown"; TaskState is "" (None) unless a task is in progress.
	// Other values are kept as given and never match a transition.
	VMState, PowerState, TaskState string
	// Actions are the instance actions nova-api recorded: "start" for each
	// accepted POWER_ON event and "stop" for each POWER_OFF, whether or not
	// the state changed (nova-api records the action before the compute
	// manager decides the event is a no-op).
	Actions []string
}

// Event is one event of an external-events request that passed schema
// validation, with the result Nova gave it.
type Event struct {
	Name, ServerUUID, Tag string
	Code                  int    // per-event code: 200, 400, 404 or 422
	Status                string // "completed" (or the status sent) or "failed"
	At                    time.Time
}

// Request is one HTTP request the Sim answered.
type Request struct {
	Method, Path string
	// Microversion is the compute microversion the request declared in
	// OpenStack-API-Version or X-OpenStack-Nova-API-Version; "" if none.
	Microversion string
	Status       int
	Body         string
	Header       http.Header
}

// Sim is a simulated Keystone and Nova. It is safe for concurrent use.
type Sim struct {
	opts   Options
	outage atomic.Int32

	mu        sync.Mutex
	base      string // "http://127.0.0.1:PORT" once started
	srv       *http.Server
	closed    bool
	tokens    map[string]time.Time // token ID → expiry
	instances map[string]*Instance
	events    []Event
	requests  []Request
}

// New returns a Sim with no instances. Call Start to serve it.
func New(opts Options) *Sim {
	if opts.Username == "" {
		opts.Username = "ironic"
	}
	if opts.Password == "" {
		opts.Password = "secret"
	}
	if opts.ProjectName == "" {
		opts.ProjectName = "service"
	}
	if opts.Region == "" {
		opts.Region = "RegionOne"
	}
	if opts.TokenTTL <= 0 {
		opts.TokenTTL = time.Hour
	}
	return &Sim{
		opts:      opts,
		tokens:    make(map[string]time.Time),
		instances: make(map[string]*Instance),
	}
}

// Start serves HTTP on a random loopback port and returns the Keystone
// auth URL, "http://127.0.0.1:PORT/v3". It panics if it cannot listen or
// was already started, as both are bugs in the calling test.
func (s *Sim) Start() string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic("novasim: failed to listen on a port: " + err.Error())
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.srv != nil {
		ln.Close()
		panic("novasim: Start called twice or after Close")
	}
	s.base = "http://" + ln.Addr().String()
	s.srv = &http.Server{Handler: http.HandlerFunc(s.serveHTTP)}
	go s.srv.Serve(refusingListener{Listener: ln, refuse: s.refusing})
	return s.base + "/v3"
}

// Close stops the server at once, dropping every open connection.
func (s *Sim) Close() {
	s.mu.Lock()
	s.closed = true
	srv := s.srv
	s.mu.Unlock()
	if srv == nil {
		return
	}
	// Not Shutdown: it waits up to 5s for connections that a client dialled
	// but never used, which concurrent tests leave behind.
	srv.Close()
}

// URL returns the base URL, "http://127.0.0.1:PORT", or "" before Start.
func (s *Sim) URL() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.base
}

// AddInstance adds or replaces an instance with no task in progress and no
// recorded actions.
func (s *Sim) AddInstance(uuid, host, vmState, powerState string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.instances[uuid] = &Instance{UUID: uuid, Host: host, VMState: vmState, PowerState: powerState}
}

// SetTaskState sets the task state of an instance ("" for None), to model
// an operation in progress that makes power-update events no-ops. It
// panics on an unknown instance.
func (s *Sim) SetTaskState(uuid, taskState string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	inst, ok := s.instances[uuid]
	if !ok {
		panic("novasim: no instance " + uuid)
	}
	inst.TaskState = taskState
}

// Instance returns a copy of an instance.
func (s *Sim) Instance(uuid string) (Instance, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	inst, ok := s.instances[uuid]
	if !ok {
		return Instance{}, false
	}
	c := *inst
	c.Actions = slices.Clone(inst.Actions)
	return c, true
}

// Events returns every schema-valid event received, in arrival order.
func (s *Sim) Events() []Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.events)
}

// Requests returns every HTTP request answered, in the order the answers
// started.
func (s *Sim) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Request, len(s.requests))
	for i, r := range s.requests {
		r.Header = r.Header.Clone()
		out[i] = r
	}
	return out
}

// SetOutage starts or ends an outage.
func (s *Sim) SetOutage(o Outage) {
	s.outage.Store(int32(o))
}

// ExpireTokens invalidates every token issued so far, so the next Nova call
// with one gets 401 and the client must authenticate again.
func (s *Sim) ExpireTokens() {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.tokens)
}

func (s *Sim) refusing() bool {
	return Outage(s.outage.Load()) == OutageRefuse
}

// refusingListener closes connections as soon as they are accepted while
// refuse reports true. The client sees its connection closed before any
// answer, which is how a dead backend behind a proxy usually looks.
type refusingListener struct {
	net.Listener
	refuse func() bool
}

func (l refusingListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil || !l.refuse() {
			return c, err
		}
		c.Close()
	}
}

// maxBody bounds what a request body may hold; real events requests are
// a few hundred bytes.
const maxBody = 1 << 20

// serveHTTP applies outages, records the request and routes it.
func (s *Sim) serveHTTP(w http.ResponseWriter, r *http.Request) {
	if s.refusing() {
		// A kept-alive connection outlives the listener check; drop it
		// here so the client gets no answer either way.
		if hj, ok := w.(http.Hijacker); ok {
			if c, _, err := hj.Hijack(); err == nil {
				c.Close()
				return
			}
		}
		panic(http.ErrAbortHandler)
	}

	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody))
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	rec := &recorder{ResponseWriter: w, record: func(status int) {
		s.mu.Lock()
		s.requests = append(s.requests, Request{
			Method:       r.Method,
			Path:         r.URL.Path,
			Microversion: declaredMicroversion(r.Header),
			Status:       status,
			Body:         string(body),
			Header:       r.Header.Clone(),
		})
		s.mu.Unlock()
	}}

	if Outage(s.outage.Load()) == Outage503 {
		writeJSON(rec, http.StatusServiceUnavailable, object{"error": object{
			"code": 503, "title": "Service Unavailable",
			"message": "The server is currently unavailable. Please try again at a later time.",
		}})
		return
	}
	s.route(rec, r)
	rec.WriteHeader(http.StatusOK) // records the request if route wrote nothing
}

// route dispatches on the path: Keystone at / and /v3, Nova at /v2.1 and
// its /public and /admin aliases.
func (s *Sim) route(w http.ResponseWriter, r *http.Request) {
	path := r.URL.Path
	switch {
	case path == "/" || path == "":
		// Keystone answers its root with a version list; gophercloud reads
		// it when the auth URL has no version in it.
		if allow(w, r, http.MethodGet, http.MethodHead) {
			writeJSON(w, http.StatusMultipleChoices, object{"versions": object{"values": []any{s.keystoneVersion()}}})
		}
		return
	case path == "/v3" || strings.HasPrefix(path, "/v3/"):
		s.serveKeystone(w, r, strings.TrimPrefix(path, "/v3"))
		return
	}
	for _, prefix := range []string{"/v2.1", "/public/v2.1", "/admin/v2.1"} {
		if path == prefix || strings.HasPrefix(path, prefix+"/") {
			s.serveNova(w, r, prefix, strings.TrimPrefix(path, prefix))
			return
		}
	}
	writeJSON(w, http.StatusNotFound, object{"error": object{
		"code": 404, "title": "Not Found", "message": "The resource could not be found.",
	}})
}

// recorder records a request when its status is written, before any of
// the answer can reach the client, so that a client that has its answer
// always finds the request in Requests.
type recorder struct {
	http.ResponseWriter
	record  func(status int)
	written bool
}

func (r *recorder) WriteHeader(code int) {
	if r.written {
		return
	}
	r.written = true
	r.record(code)
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	r.WriteHeader(http.StatusOK)
	return r.ResponseWriter.Write(b)
}

// object is a JSON object.
type object = map[string]any

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// allow reports whether r uses one of methods, answering 405 if not.
func allow(w http.ResponseWriter, r *http.Request, methods ...string) bool {
	if slices.Contains(methods, r.Method) {
		return true
	}
	w.Header().Set("Allow", strings.Join(methods, ", "))
	writeJSON(w, http.StatusMethodNotAllowed, object{"error": object{
		"code": 405, "title": "Method Not Allowed",
		"message": "The method " + r.Method + " is not allowed for this resource.",
	}})
	return false
}
