package novasim

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// microversion is a compute API microversion, "2.76" as {2, 76}.
type microversion struct{ major, minor int }

func (v microversion) String() string { return fmt.Sprintf("%d.%d", v.major, v.minor) }

func (v microversion) atLeast(o microversion) bool {
	return v.major > o.major || (v.major == o.major && v.minor >= o.minor)
}

// The range of microversions the Sim accepts; the maximum is Nova 2024.1's.
var (
	minVersion = microversion{2, 1}
	maxVersion = microversion{2, 96}
)

func parseMicroversion(s string) (microversion, bool) {
	major, minor, ok := strings.Cut(s, ".")
	if !ok {
		return microversion{}, false
	}
	ma, err1 := strconv.Atoi(major)
	mi, err2 := strconv.Atoi(minor)
	if err1 != nil || err2 != nil || ma < 0 || mi < 0 {
		return microversion{}, false
	}
	return microversion{ma, mi}, true
}

// declaredMicroversion returns the compute microversion a request asks for,
// "" if none. As in Nova, OpenStack-API-Version wins over the legacy
// X-OpenStack-Nova-API-Version.
func declaredMicroversion(h http.Header) string {
	for _, v := range h.Values("OpenStack-API-Version") {
		for part := range strings.SplitSeq(v, ",") {
			f := strings.Fields(part)
			if len(f) == 2 && strings.EqualFold(f[0], "compute") {
				return f[1]
			}
		}
	}
	return strings.TrimSpace(h.Get("X-OpenStack-Nova-API-Version"))
}

// requestedMicroversion resolves the declared microversion: none means
// 2.1 and "latest" the maximum. It answers 400 or 406 itself when the
// version is malformed or out of range.
func requestedMicroversion(w http.ResponseWriter, h http.Header) (microversion, bool) {
	declared := declaredMicroversion(h)
	switch declared {
	case "":
		return minVersion, true
	case "latest":
		return maxVersion, true
	}
	v, ok := parseMicroversion(declared)
	if !ok {
		novaError(w, http.StatusBadRequest, "badRequest", "API Version String "+declared+" is of invalid format. Must be of format MajorNum.MinorNum.")
		return microversion{}, false
	}
	if !v.atLeast(minVersion) || !maxVersion.atLeast(v) {
		novaError(w, http.StatusNotAcceptable, "computeFault", "Version "+declared+" is not supported by the API. Minimum is "+minVersion.String()+" and maximum is "+maxVersion.String()+".")
		return microversion{}, false
	}
	return v, true
}

// novaError writes Nova's fault body, {"<kind>": {"code", "message"}}.
func novaError(w http.ResponseWriter, status int, kind, msg string) {
	writeJSON(w, status, object{kind: object{"code": status, "message": msg}})
}

func (s *Sim) novaVersion(prefix string) object {
	return object{
		"id":          "v2.1",
		"status":      "CURRENT",
		"version":     maxVersion.String(),
		"min_version": minVersion.String(),
		"updated":     "2013-07-23T11:33:21Z",
		"links":       []any{object{"rel": "self", "href": s.URL() + prefix + "/"}},
		"media-types": []any{object{
			"base": "application/json",
			"type": "application/vnd.openstack.compute+json;version=2.1",
		}},
	}
}

// serveNova serves the compute API under prefix; rest is the path after it.
func (s *Sim) serveNova(w http.ResponseWriter, r *http.Request, prefix, rest string) {
	if rest == "" || rest == "/" {
		// Nova serves its version document without authentication.
		if allow(w, r, http.MethodGet, http.MethodHead) {
			writeJSON(w, http.StatusOK, object{"version": s.novaVersion(prefix)})
		}
		return
	}
	// keystonemiddleware runs before Nova, so a bad token is a 401 whatever
	// else is wrong with the request.
	if !s.validToken(r) {
		s.unauthorized(w, authFailed)
		return
	}
	v, ok := requestedMicroversion(w, r.Header)
	if !ok {
		return
	}
	w.Header().Set("OpenStack-API-Version", "compute "+v.String())
	w.Header().Set("X-OpenStack-Nova-API-Version", v.String())
	w.Header().Add("Vary", "OpenStack-API-Version, X-OpenStack-Nova-API-Version")

	if rest != "/os-server-external-events" {
		novaError(w, http.StatusNotFound, "itemNotFound", "The resource could not be found.")
		return
	}
	if !allow(w, r, http.MethodPost) {
		return
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	events, err := validateEvents(body, v)
	if err != nil {
		novaError(w, http.StatusBadRequest, "badRequest", err.Error())
		return
	}
	status, results := s.processEvents(events)
	writeJSON(w, status, object{"events": results})
}

// eventName is an event name Nova accepts from microversion since on.
type eventName struct {
	name  string
	since microversion
}

var eventNames = []eventName{
	{"network-changed", microversion{2, 1}},
	{"network-vif-plugged", microversion{2, 1}},
	{"network-vif-unplugged", microversion{2, 1}},
	{"network-vif-deleted", microversion{2, 1}},
	{"volume-extended", microversion{2, 51}},
	{"power-update", microversion{2, 76}},
	{"accelerator-request-bound", microversion{2, 82}},
	{"volume-reimaged", microversion{2, 93}},
}

// tagRequired are the events Nova fails with 400 when they lack a tag.
var tagRequired = []string{"volume-extended", "power-update", "accelerator-request-bound"}

var eventStatuses = []string{"failed", "completed", "in-progress"}

// uuidPattern is what oslo's is_uuid_like accepts in practice: 32 hex
// digits, with or without the usual hyphens.
var uuidPattern = regexp.MustCompile(`^(?i:[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12})$`)

// validateEvents applies Nova's JSON schema for the request body at
// microversion v. Any violation rejects the whole request.
func validateEvents(body []byte, v microversion) ([]object, error) {
	var doc any
	if err := json.Unmarshal(body, &doc); err != nil {
		return nil, fmt.Errorf("Malformed request body")
	}
	top, ok := doc.(map[string]any)
	if !ok {
		return nil, invalid("body", doc, "is not of type 'object'")
	}
	for _, k := range sortedKeys(top) {
		if k != "events" {
			return nil, invalid("body", doc, fmt.Sprintf("Additional properties are not allowed (%q was unexpected)", k))
		}
	}
	raw, present := top["events"]
	list, ok := raw.([]any)
	switch {
	case !present:
		return nil, invalid("body", doc, "'events' is a required property")
	case !ok:
		return nil, invalid("events", raw, "is not of type 'array'")
	case len(list) == 0:
		return nil, invalid("events", list, "is too short")
	}
	events := make([]object, len(list))
	for i, item := range list {
		ev, ok := item.(map[string]any)
		if !ok {
			return nil, invalid(fmt.Sprintf("events/%d", i), item, "is not of type 'object'")
		}
		for _, k := range sortedKeys(ev) {
			if msg := checkField(k, ev[k], v); msg != "" {
				return nil, invalid(fmt.Sprintf("events/%d/%s", i, k), ev[k], msg)
			}
		}
		for _, k := range []string{"name", "server_uuid"} {
			if _, ok := ev[k]; !ok {
				return nil, invalid(fmt.Sprintf("events/%d", i), ev, fmt.Sprintf("'%s' is a required property", k))
			}
		}
		events[i] = ev
	}
	return events, nil
}

// checkField returns why the value of event field k is invalid, or "".
func checkField(k string, val any, v microversion) string {
	str, isString := val.(string)
	if !isString {
		if k == "name" || k == "server_uuid" || k == "status" || k == "tag" {
			return "is not of type 'string'"
		}
		return fmt.Sprintf("Additional properties are not allowed (%q was unexpected)", k)
	}
	switch k {
	case "name":
		i := slices.IndexFunc(eventNames, func(e eventName) bool { return e.name == str })
		if i < 0 || !v.atLeast(eventNames[i].since) {
			return "is not one of the allowed event names at microversion " + v.String()
		}
	case "server_uuid":
		if !uuidPattern.MatchString(str) {
			return "is not a 'uuid'"
		}
	case "status":
		if !slices.Contains(eventStatuses, str) {
			return fmt.Sprintf("is not one of %q", eventStatuses)
		}
	case "tag":
		if utf8.RuneCountInString(str) > 255 {
			return "is too long"
		}
	default:
		return fmt.Sprintf("Additional properties are not allowed (%q was unexpected)", k)
	}
	return ""
}

func invalid(field string, value any, msg string) error {
	b, _ := json.Marshal(value)
	return fmt.Errorf("Invalid input for field/attribute %s. Value: %s. %s", field, b, msg)
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// processEvents gives each event its result, in order, and applies the
// accepted ones. It returns the overall status: 200 if every event was
// accepted, else 207 (even when all failed, since Nova's bug 1855752 fix).
func (s *Sim) processEvents(events []object) (int, []object) {
	s.mu.Lock()
	defer s.mu.Unlock()
	status := http.StatusOK
	results := make([]object, len(events))
	now := time.Now()
	for i, ev := range events {
		name, _ := ev["name"].(string)
		uuid, _ := ev["server_uuid"].(string)
		tag, hasTag := ev["tag"].(string)
		evStatus, _ := ev["status"].(string)
		if evStatus == "" {
			evStatus = "completed"
		}

		inst := s.instances[uuid]
		code := http.StatusOK
		switch {
		case inst == nil:
			code = http.StatusNotFound
		case slices.Contains(tagRequired, name) && !hasTag:
			code = http.StatusBadRequest
		case inst.Host == "":
			code = http.StatusUnprocessableEntity
		}
		if code == http.StatusOK {
			if name == "power-update" {
				powerUpdate(inst, tag)
			}
		} else {
			evStatus = "failed"
			status = http.StatusMultiStatus
		}

		res := maps.Clone(ev) // Nova echoes the fields sent
		res["status"] = evStatus
		res["code"] = code
		results[i] = res
		s.events = append(s.events, Event{
			Name: name, ServerUUID: uuid, Tag: tag,
			Code: code, Status: evStatus, At: now,
		})
	}
	return status, results
}

// powerUpdate applies an accepted power-update event the way nova-api,
// the compute manager and the Ironic virt driver do between them.
func powerUpdate(inst *Instance, tag string) {
	switch tag {
	case "POWER_ON":
		inst.Actions = append(inst.Actions, "start")
		// A running task or any other state makes the event a no-op.
		if inst.TaskState == "" && inst.VMState == "stopped" && inst.PowerState == "shutdown" {
			inst.VMState, inst.PowerState = "active", "running"
		}
	case "POWER_OFF":
		inst.Actions = append(inst.Actions, "stop")
		if inst.TaskState == "" && inst.VMState == "active" && inst.PowerState == "running" {
			inst.VMState, inst.PowerState = "stopped", "shutdown"
		}
	default:
		// nova-api logs "Invalid power state" and does not dispatch the
		// event, although its answer already said 200.
	}
}
