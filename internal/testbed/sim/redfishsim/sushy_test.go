package redfishsim

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
)

// Debian's python3-sushy is importable only by the system interpreter,
// not by another python3 that may come first on PATH.
const systemPython = "/usr/bin/python3"

// sushyPrelude starts every script: base is the sim's URL, and show
// prints the results the Go side asserts on, as one JSON line.
const sushyPrelude = `
import json, sys, warnings
import sushy
from sushy import auth, exceptions
warnings.simplefilter("ignore")  # InsecureRequestWarning for the self-signed cert
base = sys.argv[1]
def show(**kw):
    print(json.dumps(kw))
`

func requireSushy(t *testing.T) {
	t.Helper()
	requireFile(t, systemPython, "python3")
	if _, errOut, code := run(t, systemPython, "-c", "import sushy"); code != 0 {
		t.Fatalf("%s cannot import sushy: install Debian package python3-sushy; `make deps` installs it (or apt-get install -y python3-sushy)\n%s",
			systemPython, errOut)
	}
}

// sushy runs script against base and decodes the JSON line it shows.
func sushy(t *testing.T, base, script string) map[string]any {
	t.Helper()
	out, errOut, code := run(t, systemPython, "-c", sushyPrelude+script, base)
	if code != 0 {
		t.Fatalf("sushy script failed: exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	var doc map[string]any
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &doc); err != nil {
		t.Fatalf("sushy script output is not JSON: %v\nstdout: %s\nstderr: %s", err, out, errOut)
	}
	return doc
}

func TestSushyBasicAuth(t *testing.T) {
	t.Parallel()
	requireSushy(t)
	s, base := start(t, Options{Systems: 2})
	doc := sushy(t, base, `
root = sushy.Sushy(base, auth=auth.BasicAuth(username="admin", password="password"))
system = root.get_system("/redfish/v1/Systems/1")
before = system.power_state.value
allowed = sorted(v.value for v in system.get_allowed_reset_system_values())
system.reset_system(sushy.RESET_FORCE_OFF)
system.refresh()
after_off = system.power_state.value
system.set_system_boot_options(sushy.BOOT_SOURCE_TARGET_PXE, enabled=sushy.BOOT_SOURCE_ENABLED_ONCE)
try:
    system.reset_system(sushy.RESET_FORCE_ON)  # not advertised: refused before any request
    refused = False
except exceptions.InvalidParameterValueError:
    refused = True
show(before=before, after_off=after_off, allowed=allowed, refused_force_on=refused,
     systems=sorted(root.get_system_collection().members_identities),
     uuid=system.uuid, manager=root.get_manager("/redfish/v1/Managers/1").manager_type.value)
`)
	if doc["before"] != "On" || doc["after_off"] != "Off" {
		t.Errorf("sushy saw power_state %v then %v, want On then Off", doc["before"], doc["after_off"])
	}
	if got := s.PowerState("1"); got != "Off" {
		t.Errorf("sim PowerState = %s, want Off", got)
	}
	if got := s.Resets("1"); !slices.Equal(got, []string{"ForceOff"}) {
		t.Errorf("Resets = %v, want [ForceOff]", got)
	}
	want := slices.Sorted(slices.Values(defaultResetTypes))
	if got := stringList(doc["allowed"]); !slices.Equal(got, want) {
		t.Errorf("allowed reset values = %v, want %v", got, want)
	}
	if doc["refused_force_on"] != true {
		t.Errorf("sushy did not refuse a reset type the system does not advertise")
	}
	if got := stringList(doc["systems"]); !slices.Equal(got, []string{"/redfish/v1/Systems/1", "/redfish/v1/Systems/2"}) {
		t.Errorf("systems = %v", got)
	}
	if doc["manager"] != "BMC" || doc["uuid"] == "" {
		t.Errorf("manager type %v, uuid %v", doc["manager"], doc["uuid"])
	}
	r := do(t, base, "GET", s.SystemPath("1"), "", admin)
	if get(r.doc, "Boot", "BootSourceOverrideTarget") != "Pxe" || get(r.doc, "Boot", "BootSourceOverrideEnabled") != "Once" {
		t.Errorf("boot after sushy's PATCH = %v", r.doc["Boot"])
	}
}

func TestSushySessionAuth(t *testing.T) {
	t.Parallel()
	requireSushy(t)
	s, base := start(t, Options{})
	// The auth object is a context manager; leaving it logs out.
	doc := sushy(t, base, `
with auth.SessionAuth(username="admin", password="password") as a:
    root = sushy.Sushy(base, auth=a)
    during = len(root.get_session_service().sessions.members_identities)
    system = root.get_system("/redfish/v1/Systems/1")
    system.reset_system(sushy.RESET_FORCE_OFF)
    system.refresh()
    state = system.power_state.value
    session_uri = a.get_session_resource_id()
check = sushy.Sushy(base, auth=auth.BasicAuth(username="admin", password="password"))
after = len(check.get_session_service().sessions.members_identities)
show(during=during, after=after, state=state, session_uri=session_uri)
`)
	if doc["during"] != 1.0 || doc["after"] != 0.0 {
		t.Errorf("sessions seen by sushy: %v while logged in, %v after; want 1 and 0", doc["during"], doc["after"])
	}
	if doc["state"] != "Off" || s.PowerState("1") != "Off" {
		t.Errorf("power state: sushy %v, sim %s; want Off", doc["state"], s.PowerState("1"))
	}
	if uri, _ := doc["session_uri"].(string); !strings.HasPrefix(uri, "/redfish/v1/SessionService/Sessions/") {
		t.Errorf("session URI = %q", uri)
	}
	if n := s.ActiveSessions(); n != 0 {
		t.Errorf("ActiveSessions = %d, want 0", n)
	}
}

// TestSushyDefaultAuth covers what Ironic does: Sushy(base, username,
// password) picks SessionOrBasicAuth and never logs out explicitly. The
// session is still deleted, by Sushy.__del__ when the script ends.
func TestSushyDefaultAuth(t *testing.T) {
	t.Parallel()
	requireSushy(t)
	s, base := start(t, Options{})
	doc := sushy(t, base, `
root = sushy.Sushy(base, username="admin", password="password")
sessions = len(root.get_session_service().sessions.members_identities)
system = root.get_system("/redfish/v1/Systems/1")
system.reset_system(sushy.RESET_FORCE_OFF)
system.reset_system(sushy.RESET_ON)
system.refresh()
show(sessions=sessions, state=system.power_state.value)
`)
	if doc["sessions"] != 1.0 {
		t.Errorf("sushy saw %v sessions; want 1 (it should log in, not fall back to Basic)", doc["sessions"])
	}
	if doc["state"] != "On" || s.PowerState("1") != "On" {
		t.Errorf("power state: sushy %v, sim %s; want On", doc["state"], s.PowerState("1"))
	}
	if got := s.Resets("1"); !slices.Equal(got, []string{"ForceOff", "On"}) {
		t.Errorf("Resets = %v", got)
	}
	if n := s.ActiveSessions(); n != 0 {
		t.Errorf("ActiveSessions = %d after the script ended, want 0", n)
	}
}

func TestSushyErrors(t *testing.T) {
	t.Parallel()
	requireSushy(t)
	s, base := start(t, Options{Systems: 2})
	s.SetFault("1", FaultConflictAfterOff)
	doc := sushy(t, base, `
root = sushy.Sushy(base, auth=auth.BasicAuth(username="admin", password="password"))
system = root.get_system("/redfish/v1/Systems/1")
system.reset_system(sushy.RESET_FORCE_OFF)
try:
    system.reset_system(sushy.RESET_ON)
    conflict = None
except exceptions.HTTPError as e:
    conflict = dict(status=e.status_code, code=e.code, detail=e.detail)
bad = sushy.Sushy(base, auth=auth.BasicAuth(username="admin", password="wrong"))
try:
    bad.get_system("/redfish/v1/Systems/2")
    denied = None
except exceptions.AccessError as e:
    denied = e.status_code
show(conflict=conflict, denied=denied)
`)
	conflict, _ := doc["conflict"].(map[string]any)
	if conflict == nil || conflict["status"] != 409.0 || !strings.Contains(conflict["detail"].(string), "powering off") {
		t.Errorf("On right after ForceOff: sushy got %v, want HTTP 409 with the message", doc["conflict"])
	}
	if doc["denied"] != 401.0 {
		t.Errorf("wrong password: sushy got %v, want AccessError 401", doc["denied"])
	}
	if s.PowerState("1") != "Off" {
		t.Errorf("PowerState = %s, want Off", s.PowerState("1"))
	}
}

func TestSushyTLS(t *testing.T) {
	t.Parallel()
	requireSushy(t)
	s := New(Options{})
	base := s.StartTLS()
	defer s.Close()
	doc := sushy(t, base, `
root = sushy.Sushy(base, auth=auth.BasicAuth(username="admin", password="password"), verify=False)
system = root.get_system("/redfish/v1/Systems/1")
system.reset_system(sushy.RESET_GRACEFUL_SHUTDOWN)
system.refresh()
show(state=system.power_state.value)
`)
	if doc["state"] != "Off" || s.PowerState("1") != "Off" {
		t.Errorf("power state over HTTPS: sushy %v, sim %s; want Off", doc["state"], s.PowerState("1"))
	}
}
