// Package api serves the power-related subset of Ironic's REST API (v1),
// backed by the node store and starting workflows through Temporal, so
// Ironic's clients (the baremetal CLI, gophercloud, metal3) work against
// metalpower unchanged.
package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/rs/zerolog"
	"go.temporal.io/sdk/client"

	"github.com/metalpower/metalpower/internal/metrics"
	"github.com/metalpower/metalpower/internal/node"
	"github.com/metalpower/metalpower/internal/policy"
	"github.com/metalpower/metalpower/internal/store"
)

// Microversions served. Behaviour follows the version a request asks for,
// as in Ironic: names from 1.5, soft power states and timeouts from 1.27,
// fault from 1.42, disable_power_off from 1.95.
var (
	MinVersion = Version{1, 1}
	MaxVersion = Version{1, 95}
)

// MaxBodyBytes is oslo's default max_request_body_size, which Ironic uses.
const MaxBodyBytes = 114688

// Server is the API: its dependencies and options.
type Server struct {
	Store    store.Store
	Temporal client.Client
	// TaskQueue is the default conductor group's: the API never talks to
	// a BMC, it starts workflows on the workers of each node's group.
	TaskQueue string
	Log       zerolog.Logger
	// Auth authenticates requests; nil means noauth.
	Auth Authenticator
	// Policy is the access policy enforced on Keystone callers.
	Policy policy.Config
	// Pprof serves /debug/pprof/ behind the API's authentication
	// ([debug] pprof).
	Pprof bool
	// Metrics records request metrics and serves /metrics; nil gives the
	// handler metrics of its own.
	Metrics *metrics.Metrics

	views viewCache
	pages pageCache
}

// Handler returns the API's routes with request IDs, logging, body limit,
// authentication, version negotiation and request metrics, plus
// /metrics, /healthz and /readyz, which, like Ironic's healthcheck
// middleware, need no authentication and no microversion.
func (s *Server) Handler() http.Handler {
	m := s.Metrics
	if m == nil {
		m = metrics.MustNew()
	}
	top := http.NewServeMux()
	top.Handle("GET /metrics", m.Handler())
	top.Handle("GET /healthz", metrics.Healthz())
	top.Handle("GET /readyz", metrics.Readyz(s.readyChecks()...))
	routes := s.routes()
	if s.Pprof {
		pprof := metrics.Pprof()
		routes.HandleFunc("/debug/pprof/", func(w http.ResponseWriter, r *http.Request) {
			if err := s.Policy.Authorize(policy.DebugPprof, credentialsOf(r), policy.Target{}); err != nil {
				s.writePolicyError(w, r, err)
				return
			}
			pprof.ServeHTTP(w, r)
		})
	}
	top.Handle("/", s.middleware(routes, m))
	return top
}

// readyChecks: the API is ready when Temporal and the node store answer.
func (s *Server) readyChecks() []metrics.Check {
	var checks []metrics.Check
	if s.Temporal != nil {
		checks = append(checks, metrics.Check{Name: "temporal", Run: func(ctx context.Context) error {
			_, err := s.Temporal.CheckHealth(ctx, &client.CheckHealthRequest{})
			return err
		}})
	}
	if s.Store != nil {
		checks = append(checks, metrics.Check{Name: "store", Run: func(ctx context.Context) error {
			_, err := s.Store.List(ctx, store.Query{Limit: 1})
			return err
		}})
	}
	return checks
}

// routes is the Ironic API proper.
func (s *Server) routes() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", s.root)
	mux.HandleFunc("GET /v1", s.v1)
	mux.HandleFunc("GET /v1/{$}", s.v1)
	// Each route of one node names the rule lookup enforces; the others
	// decide in their handlers (list, create, patch per field).
	node := func(pattern, rule string, h http.HandlerFunc) {
		mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
			h(w, r.WithContext(context.WithValue(r.Context(), ruleKey, rule)))
		})
	}
	mux.HandleFunc("GET /v1/nodes", s.listNodes)
	mux.HandleFunc("GET /v1/nodes/{$}", s.listNodes) // the baremetal CLI adds the slash
	mux.HandleFunc("GET /v1/nodes/detail", s.listNodesDetail)
	mux.HandleFunc("POST /v1/nodes", s.createNode)
	mux.HandleFunc("POST /v1/nodes/{$}", s.createNode)
	node("GET /v1/nodes/{ident}", policy.NodeGet, s.showNode)
	node("PATCH /v1/nodes/{ident}", "", s.patchNode)
	node("DELETE /v1/nodes/{ident}", policy.NodeDelete, s.deleteNode)
	node("GET /v1/nodes/{ident}/states", policy.NodeGetStates, s.getStates)
	node("GET /v1/nodes/{ident}/history", policy.NodeHistoryGet, s.nodeHistory)
	node("PUT /v1/nodes/{ident}/states/power", policy.NodeSetPowerState, s.setPower)
	node("PUT /v1/nodes/{ident}/states/provision", policy.NodeSetProvisionState, s.setProvision)
	node("PUT /v1/nodes/{ident}/maintenance", policy.NodeSetMaintenance, s.setMaintenance)
	node("DELETE /v1/nodes/{ident}/maintenance", policy.NodeClearMaintenance, s.unsetMaintenance)
	node("GET /v1/nodes/{ident}/traits", policy.NodeTraitsList, s.listTraits)
	node("PUT /v1/nodes/{ident}/traits", policy.NodeTraitsSet, s.setTraits)
	node("DELETE /v1/nodes/{ident}/traits", policy.NodeTraitsDelete, s.clearTraits)
	node("PUT /v1/nodes/{ident}/traits/{trait}", policy.NodeTraitsSet, s.addTrait)
	node("DELETE /v1/nodes/{ident}/traits/{trait}", policy.NodeTraitsDelete, s.removeTrait)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "The resource could not be found: metalpower serves the power-related subset of Ironic's API.")
	})
	return mux
}

type ctxKey int

const (
	versionKey ctxKey = iota
	credentialsKey
	ruleKey
)

// middleware adds what every request gets, in Ironic's manner, and
// records it by route pattern (never the raw path: one series per node
// would be unbounded).
func (s *Server) middleware(mux *http.ServeMux, m *metrics.Metrics) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		reqID := "req-" + uuid.NewString()
		w.Header().Set("X-Openstack-Request-Id", reqID)
		w.Header().Set("X-OpenStack-Ironic-API-Minimum-Version", MinVersion.String())
		w.Header().Set("X-OpenStack-Ironic-API-Maximum-Version", MaxVersion.String())
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		var routed *http.Request // set once the routes serve it
		defer func() {
			d := time.Since(start)
			s.Log.Info().Str("request_id", reqID).Str("method", r.Method).Str("path", r.URL.Path).
				Int("status", rec.status).Dur("duration", d).Msg("api request")
			m.HTTPRequest(r.Method, routeOf(mux, r, routed), rec.status, d)
		}()
		r.Body = http.MaxBytesReader(rec, r.Body, MaxBodyBytes)

		ver, err := requestedVersion(r)
		if err != nil {
			writeError(rec, http.StatusNotAcceptable, err.Error())
			return
		}
		rec.Header().Set("X-OpenStack-Ironic-API-Version", ver.String())
		rec.Header().Set("OpenStack-API-Version", "baremetal "+ver.String())
		rec.Header().Add("Vary", "X-OpenStack-Ironic-API-Version")
		creds, ok := s.authenticate(rec, r, reqID)
		if !ok {
			return
		}
		ctx := context.WithValue(r.Context(), versionKey, ver)
		routed = r.WithContext(context.WithValue(ctx, credentialsKey, creds))
		mux.ServeHTTP(rec, routed)
	})
}

// routeOf is the path pattern that served routed ("/v1/nodes/{ident}"),
// or would have served r when the middleware answered first (401, 406).
func routeOf(mux *http.ServeMux, r, routed *http.Request) string {
	var pattern string
	if routed != nil {
		pattern = routed.Pattern
	} else {
		_, pattern = mux.Handler(r)
	}
	if _, path, ok := strings.Cut(pattern, " "); ok {
		pattern = path
	}
	if pattern == "" {
		return "unmatched"
	}
	return pattern
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	s.status = code
	s.ResponseWriter.WriteHeader(code)
}

// Version is an API microversion.
type Version struct{ Major, Minor int }

func (v Version) String() string { return fmt.Sprintf("%d.%d", v.Major, v.Minor) }

// AtLeast reports whether v is minor or later.
func (v Version) AtLeast(minor int) bool { return v.Minor >= minor }

func versionOf(r *http.Request) Version {
	if v, ok := r.Context().Value(versionKey).(Version); ok {
		return v
	}
	return MinVersion
}

// requestedVersion reads X-OpenStack-Ironic-API-Version (or the newer
// OpenStack-API-Version: baremetal X.Y); none means the minimum, "latest"
// the maximum, anything outside the range is refused (406).
func requestedVersion(r *http.Request) (Version, error) {
	raw := strings.TrimSpace(r.Header.Get("X-OpenStack-Ironic-API-Version"))
	if raw == "" {
		if h := r.Header.Get("OpenStack-API-Version"); h != "" {
			if svc, v, ok := strings.Cut(strings.TrimSpace(h), " "); ok && strings.EqualFold(svc, "baremetal") {
				raw = strings.TrimSpace(v)
			}
		}
	}
	switch {
	case raw == "":
		return MinVersion, nil
	case strings.EqualFold(raw, "latest"):
		return MaxVersion, nil
	}
	maj, minor, ok := strings.Cut(raw, ".")
	a, err1 := strconv.Atoi(maj)
	b, err2 := strconv.Atoi(minor)
	if !ok || err1 != nil || err2 != nil {
		return Version{}, fmt.Errorf("Invalid value for X-OpenStack-Ironic-API-Version header: %s", raw)
	}
	v := Version{a, b}
	if v.Major != 1 || v.Minor < MinVersion.Minor || v.Minor > MaxVersion.Minor {
		return Version{}, fmt.Errorf("Version %s was requested but the minor version is not supported by this service. The supported version range is: [%s, %s].", v, MinVersion, MaxVersion)
	}
	return v, nil
}

// writeError writes Ironic's error body: the fault as a JSON string inside
// error_message.
func writeError(w http.ResponseWriter, status int, msg string) {
	fault := "Client"
	if status >= 500 {
		fault = "Server"
	}
	inner, _ := json.Marshal(map[string]any{"faultcode": fault, "faultstring": msg, "debuginfo": nil})
	writeJSON(w, status, map[string]string{"error_message": string(inner)})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, _ := json.Marshal(v)
	writeEncoded(w, status, b)
}

// writeEncoded answers with a JSON document already encoded, ending it
// with a newline as json.Encoder does.
func writeEncoded(w http.ResponseWriter, status int, doc []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(doc)
	w.Write([]byte{'\n'})
}

// decodeBody reads a JSON object strictly: unknown fields, trailing data,
// wrong types and oversize bodies are errors (400, 413).
func decodeBody(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil && dec.More() {
		err = errors.New("unexpected data after the JSON document")
	}
	var tooBig *http.MaxBytesError
	switch {
	case err == nil:
		return true
	case errors.As(err, &tooBig):
		writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("Request is too large: the limit is %d bytes.", MaxBodyBytes))
	default:
		writeError(w, http.StatusBadRequest, "Invalid request body: "+err.Error())
	}
	return false
}

// baseURL is the API's own address as the client reached it, for links.
func baseURL(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

func link(href, rel string) map[string]string { return map[string]string{"href": href, "rel": rel} }

func (s *Server) root(w http.ResponseWriter, r *http.Request) {
	v1 := versionDoc(r)
	writeJSON(w, http.StatusOK, map[string]any{
		"name":            "OpenStack Ironic API",
		"description":     "Ironic is an OpenStack project which enables the provision and management of baremetal machines. This endpoint is served by metalpower, which implements its power-related subset.",
		"default_version": v1,
		"versions":        []any{v1},
	})
}

func versionDoc(r *http.Request) map[string]any {
	return map[string]any{
		"id": "v1", "status": "CURRENT", "min_version": MinVersion.String(), "version": MaxVersion.String(),
		"links": []any{link(baseURL(r)+"/v1/", "self")},
	}
}

func (s *Server) v1(w http.ResponseWriter, r *http.Request) {
	base := baseURL(r)
	writeJSON(w, http.StatusOK, map[string]any{
		"id":          "v1",
		"links":       []any{link(base+"/v1/", "self")},
		"media_types": []any{map[string]string{"base": "application/json", "type": "application/vnd.openstack.ironic.v1+json"}},
		"nodes":       []any{link(base+"/v1/nodes/", "self"), link(base+"/nodes/", "bookmark")},
		"version":     versionDoc(r),
	})
}

// Authenticator checks a request's credentials. Its errors wrap
// policy.ErrUnauthenticated (401) or say why it could not tell (503).
type Authenticator interface {
	Authenticate(r *http.Request) (policy.Credentials, error)
	// Challenge is the WWW-Authenticate header of a 401.
	Challenge() string
}

// authenticate answers 401 or 503 itself when the request may not go on.
// Version discovery is public, as in Ironic.
func (s *Server) authenticate(w http.ResponseWriter, r *http.Request, reqID string) (policy.Credentials, bool) {
	if s.Auth == nil {
		return policy.Unrestricted, true
	}
	if r.Method == http.MethodGet && (r.URL.Path == "/" || r.URL.Path == "/v1" || r.URL.Path == "/v1/") {
		return policy.Credentials{}, true
	}
	creds, err := s.Auth.Authenticate(r)
	switch {
	case err == nil:
		return creds, true
	case errors.Is(err, policy.ErrUnauthenticated):
		s.Log.Info().Str("request_id", reqID).Str("reason", err.Error()).Msg("api request not authenticated")
		w.Header().Set("WWW-Authenticate", s.Auth.Challenge())
		writeError(w, http.StatusUnauthorized, "The request you have made requires authentication.")
	default:
		s.Log.Warn().Str("request_id", reqID).Err(err).Msg("api request: authentication unavailable")
		writeError(w, http.StatusServiceUnavailable, err.Error())
	}
	return policy.Credentials{}, false
}

func credentialsOf(r *http.Request) policy.Credentials {
	c, _ := r.Context().Value(credentialsKey).(policy.Credentials)
	return c
}

func ruleOf(r *http.Request) string {
	rule, _ := r.Context().Value(ruleKey).(string)
	return rule
}

// writePolicyError answers a refusal of the access policy as Ironic: 404
// for a node the caller may not see, 403 for an action it may not take.
func (s *Server) writePolicyError(w http.ResponseWriter, r *http.Request, err error) {
	var forbidden *policy.ForbiddenError
	var invalid *policy.InvalidError
	switch {
	case errors.Is(err, policy.ErrHidden):
		writeError(w, http.StatusNotFound, fmt.Sprintf("Node %s could not be found.", r.PathValue("ident")))
	case errors.As(err, &forbidden):
		writeError(w, http.StatusForbidden, forbidden.Error())
	case errors.As(err, &invalid):
		writeError(w, http.StatusBadRequest, invalid.Error())
	default:
		s.internalError(w, r, err)
	}
}

// target is what the policy checks a request on n against.
func target(n *node.Node) policy.Target { return policy.Target{Owner: n.Owner, Lessee: n.Lessee} }
