package redfishsim

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
)

// object is a JSON object. Resources are built as maps on every request
// rather than kept in memory, so 10,000 idle systems cost a few bytes each.
type object = map[string]any

func link(path string) object { return object{"@odata.id": path} }

const (
	rootPath     = "/redfish/v1/"
	systemsPath  = "/redfish/v1/Systems"
	chassisPath  = "/redfish/v1/Chassis"
	managersPath = "/redfish/v1/Managers"
	sessSvcPath  = "/redfish/v1/SessionService"
	sessionsPath = "/redfish/v1/SessionService/Sessions"
)

// serveHTTP routes a request. Per-BMC faults are applied before
// authentication, because a hung or broken BMC fails whatever is asked.
func (s *Sim) serveHTTP(w http.ResponseWriter, r *http.Request) {
	s.requests.Add(1)
	if s.dropIfReused(w, r) {
		return
	}
	if s.opts.Latency > 0 {
		if err := s.wait(r.Context(), s.opts.Latency); err != nil {
			panic(http.ErrAbortHandler)
		}
	}
	w.Header().Set("OData-Version", "4.0")

	path := strings.TrimSuffix(r.URL.Path, "/")
	switch path {
	case "/redfish":
		if allow(w, r, http.MethodGet) {
			writeJSON(w, http.StatusOK, object{"v1": rootPath})
		}
		return
	case "/redfish/v1":
		// Real BMCs serve the service root without credentials; clients
		// read it to discover where to log in.
		if allow(w, r, http.MethodGet) {
			s.serveRoot(w)
		}
		return
	}
	rest, ok := strings.CutPrefix(path, "/redfish/v1/")
	if !ok {
		notFound(w, r)
		return
	}
	seg := strings.Split(rest, "/")

	if len(seg) >= 2 && seg[0] == "Systems" {
		s.called(seg[1], r.UserAgent())
	}
	if len(seg) >= 2 && (seg[0] == "Systems" || seg[0] == "Chassis" || seg[0] == "Managers") {
		if s.injectFault(w, r, seg[1]) {
			return
		}
	}
	if path == sessionsPath && r.Method == http.MethodPost {
		s.createSession(w, r) // login needs no prior authentication
		return
	}
	if !s.authorized(r) {
		unauthorized(w, r)
		return
	}

	switch {
	case path == systemsPath:
		if allow(w, r, http.MethodGet) {
			s.serveCollection(w, systemsPath, "ComputerSystemCollection", "Computer System Collection")
		}
	case len(seg) == 2 && seg[0] == "Systems":
		switch r.Method {
		case http.MethodGet, http.MethodHead:
			s.serveSystem(w, r, seg[1])
		case http.MethodPatch:
			s.patchSystem(w, r, seg[1])
		default:
			allow(w, r, http.MethodGet, http.MethodPatch)
		}
	case len(seg) == 4 && seg[0] == "Systems" && seg[2] == "Actions" && seg[3] == "ComputerSystem.Reset":
		if allow(w, r, http.MethodPost) {
			s.resetSystem(w, r, seg[1])
		}
	case path == chassisPath:
		if allow(w, r, http.MethodGet) {
			s.serveCollection(w, chassisPath, "ChassisCollection", "Chassis Collection")
		}
	case len(seg) == 2 && seg[0] == "Chassis":
		if allow(w, r, http.MethodGet) {
			s.serveChassis(w, r, seg[1])
		}
	case path == managersPath:
		if allow(w, r, http.MethodGet) {
			s.serveCollection(w, managersPath, "ManagerCollection", "Manager Collection")
		}
	case len(seg) == 2 && seg[0] == "Managers":
		if allow(w, r, http.MethodGet) {
			s.serveManager(w, r, seg[1])
		}
	case path == sessSvcPath:
		if allow(w, r, http.MethodGet) {
			serveSessionService(w)
		}
	case path == sessionsPath:
		if allow(w, r, http.MethodGet, http.MethodPost) { // POST was handled above
			s.serveSessions(w)
		}
	case len(seg) == 3 && seg[0] == "SessionService" && seg[1] == "Sessions":
		switch r.Method {
		case http.MethodGet, http.MethodHead:
			s.serveSession(w, r, seg[2])
		case http.MethodDelete:
			s.deleteSession(w, r, seg[2])
		default:
			allow(w, r, http.MethodGet, http.MethodDelete)
		}
	default:
		notFound(w, r)
	}
}

// allow reports whether r uses one of methods, answering 405 if not. GET
// implies HEAD, as net/http strips the body of HEAD responses.
func allow(w http.ResponseWriter, r *http.Request, methods ...string) bool {
	for _, m := range methods {
		if r.Method == m || (m == http.MethodGet && r.Method == http.MethodHead) {
			return true
		}
	}
	w.Header().Set("Allow", strings.Join(methods, ", "))
	writeError(w, http.StatusMethodNotAllowed, "GeneralError",
		"The HTTP method "+r.Method+" is not allowed on "+r.URL.Path+".",
		"Use one of: "+strings.Join(methods, ", ")+".")
	return false
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		panic("redfishsim: cannot encode response: " + err.Error())
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(body)
}

// messagePrefix is the Base message registry the simulator quotes, as
// BMCs of the Redfish 1.6 era do.
const messagePrefix = "Base.1.8."

// writeError answers with a Redfish error body. Clients show the most
// severe ExtendedInfo message (sushy) or match on its MessageId (drivers),
// so msgID names the specific problem while "code" stays generic, as on
// most BMCs.
func writeError(w http.ResponseWriter, status int, msgID, message, resolution string, args ...string) {
	if args == nil {
		args = []string{}
	}
	if !strings.HasPrefix(msgID, "Base.") {
		msgID = messagePrefix + msgID
	}
	writeJSON(w, status, object{"error": object{
		"code":    messagePrefix + "GeneralError",
		"message": "A general error has occurred. See ExtendedInfo for more information.",
		"@Message.ExtendedInfo": []object{{
			"@odata.type":     "#Message.v1_0_0.Message",
			"MessageId":       msgID,
			"Message":         message,
			"MessageArgs":     args,
			"Severity":        "Warning",
			"MessageSeverity": "Warning",
			"Resolution":      resolution,
		}},
	}})
}

func notFound(w http.ResponseWriter, r *http.Request) {
	writeError(w, http.StatusNotFound, "ResourceMissingAtURI",
		"The resource at the URI "+r.URL.Path+" was not found.",
		"Place a valid resource at the URI or correct the URI and resubmit the request.",
		r.URL.Path)
}

func unauthorized(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("WWW-Authenticate", `Basic realm="redfish"`)
	writeError(w, http.StatusUnauthorized, "ResourceAtUriUnauthorized",
		"While accessing the resource at "+r.URL.Path+", the service received an authorization error: invalid or missing credentials.",
		"Ensure that the appropriate access is provided for the service in order for it to access the URI.",
		r.URL.Path, "Unauthorized")
}

func malformedJSON(w http.ResponseWriter) {
	writeError(w, http.StatusBadRequest, "MalformedJSON",
		"The request body submitted was malformed JSON and could not be parsed by the receiving service.",
		"Ensure that the request body is valid JSON and resubmit the request.")
}

// readJSON decodes the request body into v, answering 400 if it is not
// JSON of v's shape.
func readJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err == nil {
		err = json.Unmarshal(body, v)
	}
	if err != nil {
		malformedJSON(w)
		return false
	}
	return true
}
