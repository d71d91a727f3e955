package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/metalpower/metalpower/internal/dispatch"
	"github.com/metalpower/metalpower/internal/node"
	"github.com/metalpower/metalpower/internal/policy"
	"github.com/metalpower/metalpower/internal/store"
)

// nodeFields are the fields a node shows, with the version each appeared
// in. list fields are shown without detail, as Ironic does.
var nodeFields = []struct {
	name  string
	since int
	list  bool
}{
	{"uuid", 1, true}, {"name", 5, true}, {"instance_uuid", 1, true}, {"power_state", 1, true},
	{"provision_state", 1, true}, {"maintenance", 1, true}, {"driver", 1, false}, {"driver_info", 1, false},
	{"target_power_state", 1, false}, {"maintenance_reason", 1, false}, {"fault", 42, false},
	{"last_error", 1, false}, {"extra", 1, false}, {"disable_power_off", 95, false},
	{"created_at", 1, false}, {"updated_at", 1, false}, {"power_sync_failures", 1, false},
	// Stored for Nova's ironic driver, which reads them.
	{"properties", 1, false}, {"resource_class", 21, false}, {"traits", 37, false}, {"conductor_group", 46, false},
	// Keystone projects the access policy matches callers against.
	{"owner", 50, false}, {"lessee", 65, false},
	// Ironic fields metalpower does not manage, shown empty so clients
	// that ask for them get an answer.
	{"target_provision_state", 1, false}, {"console_enabled", 1, false},
}

// staticFields are the values of the fields metalpower does not manage.
var staticFields = map[string]any{
	"target_provision_state": nil, "console_enabled": false,
}

func fieldAvailable(name string, v Version) bool {
	for _, f := range nodeFields {
		if f.name == name {
			return v.AtLeast(f.since)
		}
	}
	return false
}

// view renders a node for API version v with the given fields (nil: all
// fields of the version), plus links.
func view(r *http.Request, n *node.Node, fields []string) map[string]any {
	v := versionOf(r)
	// Values stay encoded: decoding them (properties, driver_info) only to
	// encode them again was most of a listing's time.
	var all map[string]json.RawMessage
	b, _ := json.Marshal(n) // node.MarshalJSON masks secrets
	json.Unmarshal(b, &all)
	out := map[string]any{}
	for _, f := range nodeFields {
		if !v.AtLeast(f.since) || (fields != nil && !slices.Contains(fields, f.name)) {
			continue
		}
		if v, ok := staticFields[f.name]; ok {
			out[f.name] = v
			continue
		}
		out[f.name] = all[f.name]
	}
	base := baseURL(r)
	out["links"] = []any{link(base+"/v1/nodes/"+n.UUID, "self"), link(base+"/nodes/"+n.UUID, "bookmark")}
	return out
}

// lookup finds the node a path names: by UUID, or by name from 1.5,
// if the caller may see it and the route's rule lets it act.
func (s *Server) lookup(w http.ResponseWriter, r *http.Request) (*node.Node, bool) {
	ident := r.PathValue("ident")
	if !node.ValidUUID(ident) && !versionOf(r).AtLeast(5) {
		writeError(w, http.StatusNotFound, fmt.Sprintf("Node %s could not be found.", ident))
		return nil, false
	}
	n, err := s.Store.Get(r.Context(), ident)
	if errors.Is(err, store.ErrNotFound) {
		writeError(w, http.StatusNotFound, fmt.Sprintf("Node %s could not be found.", ident))
		return nil, false
	}
	if err != nil {
		s.internalError(w, r, err)
		return nil, false
	}
	if err := s.Policy.Node(ruleOf(r), credentialsOf(r), target(n)); err != nil {
		s.writePolicyError(w, r, err)
		return nil, false
	}
	return n, true
}

func (s *Server) internalError(w http.ResponseWriter, r *http.Request, err error) {
	s.Log.Error().Err(err).Str("path", r.URL.Path).Msg("api error")
	writeError(w, http.StatusInternalServerError, "An internal error occurred; the request ID in X-Openstack-Request-Id finds it in the logs.")
}

func (s *Server) showNode(w http.ResponseWriter, r *http.Request) {
	n, ok := s.lookup(w, r)
	if !ok {
		return
	}
	fields, ok := parseFields(w, r)
	if !ok {
		return
	}
	b, err := s.views.encodedView(r, n, fields)
	if err == nil {
		b, err = redact(b, s.Policy.Redactions(credentialsOf(r), target(n)))
	}
	if err != nil {
		s.internalError(w, r, err)
		return
	}
	writeEncoded(w, http.StatusOK, b)
}

func parseFields(w http.ResponseWriter, r *http.Request) ([]string, bool) {
	raw := r.URL.Query().Get("fields")
	if raw == "" {
		return nil, true
	}
	fields := strings.Split(raw, ",")
	var bad []string
	for i, f := range fields {
		fields[i] = strings.TrimSpace(f)
		if !fieldAvailable(fields[i], versionOf(r)) {
			bad = append(bad, fields[i])
		}
	}
	if len(bad) > 0 {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("Field(s) \"%s\" are not valid", strings.Join(bad, ", ")))
		return nil, false
	}
	return fields, true
}

func (s *Server) listNodesDetail(w http.ResponseWriter, r *http.Request) { s.list(w, r, true) }

func (s *Server) listNodes(w http.ResponseWriter, r *http.Request) {
	detail := false
	if d := r.URL.Query().Get("detail"); d != "" {
		b, err := strconv.ParseBool(d)
		if err != nil {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("Invalid value for detail: %q", d))
			return
		}
		detail = b
	}
	s.list(w, r, detail)
}

// sortKeys maps Ironic's sort keys to the store's.
var sortKeys = map[string]string{"id": "id", "uuid": "uuid", "created_at": "created_at", "updated_at": "updated_at",
	"provision_state": "provision_state", "driver": "driver"}

func (s *Server) list(w http.ResponseWriter, r *http.Request, detail bool) {
	q := r.URL.Query()
	fields, ok := parseFields(w, r)
	if !ok {
		return
	}
	if fields != nil && detail {
		writeError(w, http.StatusBadRequest, "Can not specify ?detail=True and fields in the same request.")
		return
	}
	if fields == nil && !detail {
		for _, f := range nodeFields {
			if f.list && fieldAvailable(f.name, versionOf(r)) {
				fields = append(fields, f.name)
			}
		}
	}
	query := store.Query{Marker: q.Get("marker"), SortDir: q.Get("sort_dir")}
	if k := q.Get("sort_key"); k != "" {
		if query.SortKey, ok = sortKeys[k]; !ok {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("The sort_key value \"%s\" is an invalid field for sorting", k))
			return
		}
	}
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 0 {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("Invalid limit %q: must be a non-negative integer.", l))
			return
		}
		query.Limit = min(n, 1000)
	}
	if query.Limit == 0 {
		query.Limit = 1000
	}
	if !s.filters(w, r, &query.Filter) {
		return
	}
	// A project's member sees the nodes the project owns or leases.
	project, err := s.Policy.ListScope(credentialsOf(r), q.Get("project"))
	if err != nil {
		s.writePolicyError(w, r, err)
		return
	}
	query.Project = project
	gen, err := s.Store.Generation(r.Context())
	if err != nil {
		s.internalError(w, r, err)
		return
	}
	// A filtered caller's page has its own key: a system reader asking
	// for ?project= of the same project must not read its redactions.
	// Within one project every caller who may list is redacted alike
	// (the node's owner decides), so the project names the rest.
	c := credentialsOf(r)
	filtered := s.Policy.Filtered(c)
	key := pageKey(r, fields) + " project=" + project + " filtered=" + strconv.FormatBool(filtered)
	if body, ok := s.pages.get(gen, key); ok {
		writeEncoded(w, http.StatusOK, body)
		return
	}
	refs, err := s.Store.ListVersions(r.Context(), query)
	if errors.Is(err, store.ErrInvalidQuery) {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if err != nil {
		s.internalError(w, r, err)
		return
	}
	views, err := s.views.encodedViews(r.Context(), s.Store, r, fields, refs)
	for i := 0; err == nil && filtered && i < len(views); i++ {
		views[i], err = redact(views[i], s.Policy.Redactions(c, policy.Target{Owner: refs[i].Owner, Lessee: refs[i].Lessee}))
	}
	if err != nil {
		s.internalError(w, r, err)
		return
	}
	views = compact(views)
	// The page is put together from encoded views, the way
	// json.Encoder would have written it.
	var b bytes.Buffer
	if len(views) > 0 {
		b.Grow(len(views) * (len(views[0]) + 1))
	}
	b.WriteString(`{"nodes":[`)
	for i, v := range views {
		if i > 0 {
			b.WriteByte(',')
		}
		b.Write(v)
	}
	b.WriteByte(']')
	if len(refs) == query.Limit {
		next := url.Values{}
		for k, vs := range q {
			next[k] = vs
		}
		next.Set("marker", refs[len(refs)-1].UUID)
		next.Set("limit", strconv.Itoa(query.Limit))
		path := "/v1/nodes"
		if strings.HasSuffix(r.URL.Path, "/detail") {
			path += "/detail"
		}
		// Ironic's "next"; gophercloud follows the nodes_links form.
		href := baseURL(r) + path + "?" + next.Encode()
		enc, _ := json.Marshal(map[string]any{"next": href, "nodes_links": []any{link(href, "next")}})
		b.WriteByte(',')
		b.Write(enc[1:])
	} else {
		b.WriteByte('}')
	}
	s.pages.keep(gen, key, b.Bytes())
	writeEncoded(w, http.StatusOK, b.Bytes())
}

func (s *Server) filters(w http.ResponseWriter, r *http.Request, f *store.Filter) bool {
	q := r.URL.Query()
	boolParam := func(name string) (*bool, bool) {
		raw := q.Get(name)
		if raw == "" {
			return nil, true
		}
		b, err := strconv.ParseBool(raw)
		if err != nil {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("Invalid value for %s: %q is not a boolean.", name, raw))
			return nil, false
		}
		return &b, true
	}
	var ok bool
	if f.Maintenance, ok = boolParam("maintenance"); !ok {
		return false
	}
	if f.Associated, ok = boolParam("associated"); !ok {
		return false
	}
	if p := q.Get("provision_state"); p != "" {
		if !slices.Contains(node.ProvisionStates, p) {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("Invalid provision state %q.", p))
			return false
		}
		f.ProvisionStates = []string{p}
	}
	if i := q.Get("instance_uuid"); i != "" {
		if !node.ValidUUID(strings.ToLower(i)) {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("Invalid instance_uuid %q.", i))
			return false
		}
		f.InstanceUUID = strings.ToLower(i)
	}
	f.Driver, f.Fault, f.ResourceClass = q.Get("driver"), q.Get("fault"), q.Get("resource_class")
	if q.Has("conductor_group") {
		g, err := node.ConductorGroup(q.Get("conductor_group"))
		if err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return false
		}
		f.ConductorGroup = &g
	}
	for _, p := range []struct {
		name  string
		since int
		dst   *string
	}{{"owner", 50, &f.Owner}, {"lessee", 65, &f.Lessee}} {
		if !q.Has(p.name) {
			continue
		}
		if !versionOf(r).AtLeast(p.since) {
			writeError(w, http.StatusNotAcceptable, fmt.Sprintf("Request not acceptable. The minimal required API version should be 1.%d", p.since))
			return false
		}
		*p.dst = q.Get(p.name)
	}
	return true
}

// createRequest is what POST /v1/nodes accepts.
type createRequest struct {
	UUID            string          `json:"uuid"`
	Name            *string         `json:"name"`
	Driver          string          `json:"driver"`
	DriverInfo      node.DriverInfo `json:"driver_info"`
	InstanceUUID    *string         `json:"instance_uuid"`
	Extra           map[string]any  `json:"extra"`
	DisablePowerOff bool            `json:"disable_power_off"`
	ResourceClass   *string         `json:"resource_class"`
	ConductorGroup  *string         `json:"conductor_group"`
	Properties      map[string]any  `json:"properties"`
	Traits          []string        `json:"traits"`
	Owner           *string         `json:"owner"`
	Lessee          *string         `json:"lessee"`
}

func (s *Server) createNode(w http.ResponseWriter, r *http.Request) {
	var req createRequest
	if !decodeBody(w, r, &req) {
		return
	}
	v := versionOf(r)
	if req.Name != nil && !v.AtLeast(5) {
		writeError(w, http.StatusNotAcceptable, "The name field needs API version 1.5 or later.")
		return
	}
	if req.Driver == "" {
		writeError(w, http.StatusBadRequest, "Mandatory field missing: driver")
		return
	}
	if req.ResourceClass != nil && !v.AtLeast(21) {
		writeError(w, http.StatusNotAcceptable, "The resource_class field needs API version 1.21 or later.")
		return
	}
	if req.ConductorGroup != nil && *req.ConductorGroup != "" && !v.AtLeast(46) {
		writeError(w, http.StatusNotAcceptable, "The conductor_group field needs API version 1.46 or later.")
		return
	}
	if req.Owner != nil && !v.AtLeast(50) {
		writeError(w, http.StatusNotAcceptable, "The owner field needs API version 1.50 or later.")
		return
	}
	if req.Lessee != nil && !v.AtLeast(65) {
		writeError(w, http.StatusNotAcceptable, "The lessee field needs API version 1.65 or later.")
		return
	}
	owner, err := s.Policy.CreateOwner(credentialsOf(r), deref(req.Owner))
	if err != nil {
		s.writePolicyError(w, r, err)
		return
	}
	if req.Traits != nil {
		writeError(w, http.StatusBadRequest, "Cannot specify node traits on node creation. Traits must be set via the node traits API.")
		return
	}
	n := node.New(strings.ToLower(req.UUID), deref(req.Name), req.Driver, req.DriverInfo)
	if req.UUID != "" && !node.ValidUUID(strings.ToLower(req.UUID)) {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("Expected a UUID but received %s.", req.UUID))
		return
	}
	n.InstanceUUID, n.Extra, n.DisablePowerOff = strings.ToLower(deref(req.InstanceUUID)), req.Extra, req.DisablePowerOff
	n.ResourceClass, n.Properties = deref(req.ResourceClass), req.Properties
	n.Owner, n.Lessee = owner, deref(req.Lessee)
	group, err := node.ConductorGroup(deref(req.ConductorGroup))
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	n.ConductorGroup = group
	if n.DriverInfo == nil {
		n.DriverInfo = node.DriverInfo{}
	}
	// Ironic: nodes created below 1.11 start available, from 1.11 enroll.
	if !v.AtLeast(11) {
		n.ProvisionState = node.Available
	}
	if err := s.Store.Create(r.Context(), n); err != nil {
		s.writeStoreError(w, r, err)
		return
	}
	w.Header().Set("Location", baseURL(r)+"/v1/nodes/"+n.UUID)
	writeJSON(w, http.StatusCreated, view(r, n, nil))
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// writeStoreError answers a failed write with Ironic's status for it.
func (s *Server) writeStoreError(w http.ResponseWriter, r *http.Request, err error) {
	var ve *node.ValidationError
	switch {
	case errors.As(err, &ve):
		writeError(w, http.StatusBadRequest, err.Error())
	case errors.Is(err, store.ErrNameInUse):
		writeError(w, http.StatusConflict, "A node with name already exists: "+err.Error())
	case errors.Is(err, store.ErrUUIDInUse):
		writeError(w, http.StatusConflict, "A node with this UUID already exists: "+err.Error())
	case errors.Is(err, store.ErrInstanceAssociated):
		writeError(w, http.StatusConflict, "Instance is already associated with another node: "+err.Error())
	case errors.Is(err, store.ErrConflict):
		writeError(w, http.StatusConflict, "Node was modified concurrently; retry the request.")
	case errors.Is(err, store.ErrNotFound):
		writeError(w, http.StatusNotFound, err.Error())
	default:
		s.internalError(w, r, err)
	}
}

func (s *Server) deleteNode(w http.ResponseWriter, r *http.Request) {
	n, ok := s.lookup(w, r)
	if !ok {
		return
	}
	if n.InstanceUUID != "" {
		writeError(w, http.StatusConflict, fmt.Sprintf("Can not delete node %s as it is associated with instance %s.", n.UUID, n.InstanceUUID))
		return
	}
	if held, _ := dispatch.Held(r.Context(), s.Temporal, n.UUID); held {
		writeDispatchError(w, dispatch.Locked(dispatch.LockID(n.UUID), ""))
		return
	}
	if n.ProvisionState == node.Active || n.ProvisionState == node.Cleaning || n.ProvisionState == node.Deploying {
		writeError(w, http.StatusConflict, fmt.Sprintf("Can not delete node %s while it is in state %q.", n.UUID, n.ProvisionState))
		return
	}
	if err := s.Store.Delete(r.Context(), n.UUID); err != nil {
		s.writeStoreError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
