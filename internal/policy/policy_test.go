package policy

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"sort"
	"strings"
	"testing"
)

const ownerProject, lesseeProject, otherProject, serviceProject = "p-owner", "p-lessee", "p-other", "p-service"

// personas are the callers of Ironic's own RBAC tests
// (test_rbac_system_scoped.yaml, test_rbac_project_scoped.yaml), with
// Keystone's implied roles expanded as in a real token.
var personas = map[string]Credentials{
	"system-admin":   {System: true, Roles: []string{"admin", "member", "reader"}},
	"system-member":  {System: true, Roles: []string{"member", "reader"}},
	"system-reader":  {System: true, Roles: []string{"reader"}},
	"system-service": {System: true, Roles: []string{"service"}},
	"owner-admin":    {ProjectID: ownerProject, ProjectName: "owner", Roles: []string{"admin", "member", "reader"}},
	"owner-member":   {ProjectID: ownerProject, ProjectName: "owner", Roles: []string{"member", "reader"}},
	"owner-reader":   {ProjectID: ownerProject, ProjectName: "owner", Roles: []string{"reader"}},
	"owner-service":  {ProjectID: ownerProject, ProjectName: "owner", Roles: []string{"service"}},
	"lessee-admin":   {ProjectID: lesseeProject, ProjectName: "lessee", Roles: []string{"admin", "member", "reader"}},
	"lessee-member":  {ProjectID: lesseeProject, ProjectName: "lessee", Roles: []string{"member", "reader"}},
	"lessee-reader":  {ProjectID: lesseeProject, ProjectName: "lessee", Roles: []string{"reader"}},
	"other-admin":    {ProjectID: otherProject, ProjectName: "other", Roles: []string{"admin", "member", "reader"}},
	// The cloud's service users: role service in project "service".
	"service": {ProjectID: serviceProject, ProjectName: "service", Roles: []string{"service"}},
	// A domain-scoped token: no rule grants it anything but listing.
	"domain-admin": {Roles: []string{"admin", "member", "reader"}},
}

var node = Target{Owner: ownerProject, Lessee: lesseeProject}

const (
	systemMembers  = "system-admin system-member"
	systemReaders  = "system-admin system-member system-reader system-service"
	projectReaders = "owner-admin owner-member owner-reader lessee-admin lessee-member lessee-reader"
)

// TestRules checks every rule of the table against every persona, with
// rbac_service_role_elevated_access off and on: the callers each rule
// lets act on a node that owner-* own and lessee-* lease.
func TestRules(t *testing.T) {
	tests := []struct {
		rule string
		// allowed without elevated access; elevated adds "service" to
		// every rule built on SYSTEM_MEMBER or SYSTEM_READER.
		allowed  string
		elevated bool
	}{
		{NodeCreate, "system-admin system-service", false},
		{NodeCreateSelfOwned, "system-admin system-service owner-admin owner-service lessee-admin other-admin service domain-admin", false},
		{NodeList, "all", false},
		{NodeListAll, systemReaders, true},
		{NodeGet, systemReaders + " " + projectReaders + " owner-service", true},
		{NodeGetFilterThreshold, systemReaders, true},
		{NodeGetLastError, systemReaders + " owner-admin owner-member owner-reader owner-service", true},
		{NodeGetDriverInfo, systemReaders + " owner-admin owner-member owner-reader owner-service", true},
		{NodeUpdate, systemMembers + " system-service owner-admin owner-member lessee-admin lessee-member", true},
		{NodeUpdateExtra, systemMembers + " system-service owner-admin owner-member lessee-admin lessee-member", true},
		{NodeUpdateDriverInfo, systemMembers + " system-service owner-admin owner-member owner-service", true},
		{NodeUpdateProperties, systemMembers + " system-service owner-admin owner-member owner-service", true},
		{NodeUpdateInstanceUUID, systemMembers + " system-service owner-admin owner-member owner-service", true},
		{NodeUpdateLessee, systemMembers + " system-service owner-admin owner-member owner-service", true},
		{NodeUpdateOwner, systemMembers, true},
		{NodeUpdateOwnerProvisioned, "system-admin", false},
		{NodeUpdateDriver, systemMembers + " system-service owner-admin owner-service", true},
		{NodeUpdateConductorGroup, systemMembers, true},
		{NodeUpdateName, systemMembers + " system-service owner-admin owner-member owner-service", true},
		{NodeDelete, "system-admin", false},
		{NodeDeleteSelfOwned, "owner-admin", false},
		{NodeSetMaintenance, systemMembers + " system-service owner-admin owner-member lessee-admin owner-service", true},
		{NodeClearMaintenance, systemMembers + " system-service owner-admin owner-member lessee-admin owner-service", true},
		{NodeGetStates, systemReaders + " " + projectReaders + " owner-service", true},
		{NodeSetPowerState, systemMembers + " system-service owner-admin owner-member lessee-admin lessee-member", true},
		{NodeSetProvisionState, systemMembers + " system-service owner-admin owner-member lessee-admin owner-service", true},
		{NodeTraitsList, systemReaders + " " + projectReaders + " owner-service", true},
		{NodeTraitsSet, systemMembers + " system-service owner-admin owner-service", true},
		{NodeTraitsDelete, systemMembers + " system-service owner-admin owner-service", true},
		{NodeHistoryGet, systemReaders + " owner-admin owner-member owner-reader owner-service", true},
		{DebugPprof, "system-admin", false},
	}
	var names []string
	for name := range personas {
		names = append(names, name)
	}
	sort.Strings(names)
	tested := map[string]bool{}
	for _, tt := range tests {
		tested[tt.rule] = true
		for _, elevated := range []bool{false, true} {
			cfg := Config{ServiceRoleElevatedAccess: elevated, ServiceProjectName: "service"}
			want := strings.Fields(tt.allowed)
			if tt.allowed == "all" {
				want = slices.Clone(names)
			}
			if elevated && tt.elevated {
				want = append(want, "service")
			}
			var got []string
			for _, name := range names {
				if cfg.Allowed(tt.rule, personas[name], node) {
					got = append(got, name)
				}
			}
			slices.Sort(want)
			want = slices.Compact(want)
			if !slices.Equal(got, want) {
				t.Errorf("%s (elevated %v):\n got %v\nwant %v", tt.rule, elevated, got, want)
			}
		}
	}
	for _, r := range Rules() {
		if !tested[r.Name] {
			t.Errorf("rule %s has no row in this test", r.Name)
		}
		if r.Default == "" || len(r.Routes) == 0 {
			t.Errorf("rule %s lacks its default or its routes", r.Name)
		}
	}
}

func TestServiceProjectIsMatchedByName(t *testing.T) {
	svc := personas["service"]
	for _, cfg := range []Config{
		{ServiceRoleElevatedAccess: true, ServiceProjectName: "admin"},
		{ServiceRoleElevatedAccess: true, ServiceProjectName: ""},
		{ServiceRoleElevatedAccess: false, ServiceProjectName: "service"},
	} {
		if cfg.Allowed(NodeSetPowerState, svc, node) {
			t.Errorf("%+v: a service user of project %q may change any node's power", cfg, svc.ProjectName)
		}
	}
}

func TestUnrestrictedAndUnknownRules(t *testing.T) {
	var cfg Config
	if !cfg.Allowed(NodeDelete, Unrestricted, Target{}) {
		t.Error("noauth caller refused")
	}
	if cfg.Allowed("baremetal:node:no_such_rule", personas["system-admin"], node) {
		t.Error("an unknown rule allowed a caller")
	}
	if err := cfg.Authorize(NodeDelete, personas["system-reader"], node); err == nil ||
		err.Error() != "Access was denied to the following resource: baremetal:node:delete" {
		t.Errorf("Authorize = %v", err)
	}
}

func TestNodeHidesWhatTheCallerMayNotSee(t *testing.T) {
	cfg := Config{ServiceProjectName: "service"}
	var forbidden *ForbiddenError
	tests := []struct {
		persona, rule string
		want          func(error) bool
	}{
		{"system-reader", NodeSetPowerState, func(err error) bool { return errors.As(err, &forbidden) && forbidden.Rule == NodeSetPowerState }},
		{"system-member", NodeSetPowerState, func(err error) bool { return err == nil }},
		{"other-admin", NodeSetPowerState, func(err error) bool { return errors.Is(err, ErrHidden) }},
		{"other-admin", "", func(err error) bool { return errors.Is(err, ErrHidden) }},
		{"lessee-reader", NodeUpdateExtra, func(err error) bool { return errors.As(err, &forbidden) }},
		{"lessee-reader", "", func(err error) bool { return err == nil }},
		{"service", NodeSetPowerState, func(err error) bool { return errors.Is(err, ErrHidden) }},
	}
	for _, tt := range tests {
		if err := cfg.Node(tt.rule, personas[tt.persona], node); !tt.want(err) {
			t.Errorf("%s %q: Node = %v", tt.persona, tt.rule, err)
		}
	}
}

func TestListScope(t *testing.T) {
	cfg := Config{ServiceProjectName: "service"}
	tests := []struct {
		persona, project, want string
		forbidden              bool
	}{
		{"system-reader", "", "", false},
		{"system-reader", ownerProject, ownerProject, false},
		{"owner-reader", "", ownerProject, false},
		{"owner-reader", ownerProject, ownerProject, false},
		{"owner-reader", lesseeProject, "", true},
		{"service", "", serviceProject, false},
		{"domain-admin", "", "", true},
	}
	for _, tt := range tests {
		got, err := cfg.ListScope(personas[tt.persona], tt.project)
		var forbidden *ForbiddenError
		if tt.forbidden != errors.As(err, &forbidden) || got != tt.want {
			t.Errorf("%s ?project=%q: ListScope = %q, %v", tt.persona, tt.project, got, err)
		}
		if tt.forbidden && forbidden.Rule != NodeListAll {
			t.Errorf("%s: refused by %s, want %s", tt.persona, forbidden.Rule, NodeListAll)
		}
	}
	elevated := Config{ServiceRoleElevatedAccess: true, ServiceProjectName: "service"}
	if got, err := elevated.ListScope(personas["service"], ""); got != "" || err != nil {
		t.Errorf("elevated service user: ListScope = %q, %v; want every node", got, err)
	}
}

func TestCreateOwner(t *testing.T) {
	cfg := Config{ServiceProjectName: "service"}
	var invalid *InvalidError
	var forbidden *ForbiddenError
	tests := []struct {
		persona, requested, want string
		err                      any
	}{
		{"system-admin", "", "", nil},
		{"system-admin", lesseeProject, lesseeProject, nil},
		{"owner-admin", "", ownerProject, nil},
		{"owner-admin", ownerProject, ownerProject, nil},
		{"owner-admin", otherProject, "", &invalid},
		{"owner-member", "", "", &forbidden},
		{"system-member", "", "", &forbidden},
		{"service", "", serviceProject, nil},
	}
	for _, tt := range tests {
		got, err := cfg.CreateOwner(personas[tt.persona], tt.requested)
		ok := err == nil
		if tt.err != nil {
			ok = errors.As(err, tt.err)
		}
		if !ok || got != tt.want {
			t.Errorf("%s owner %q: CreateOwner = %q, %v", tt.persona, tt.requested, got, err)
		}
	}
}

func TestDelete(t *testing.T) {
	cfg := Config{ServiceProjectName: "service"}
	tests := []struct {
		persona string
		want    string // "", "hidden" or "forbidden"
	}{
		{"system-admin", ""}, {"owner-admin", ""}, {"system-member", "forbidden"},
		{"owner-member", "forbidden"}, {"lessee-admin", "forbidden"}, {"other-admin", "hidden"},
	}
	for _, tt := range tests {
		err := cfg.Node(NodeDelete, personas[tt.persona], node)
		var forbidden *ForbiddenError
		got := ""
		switch {
		case errors.Is(err, ErrHidden):
			got = "hidden"
		case errors.As(err, &forbidden):
			got = "forbidden"
		case err != nil:
			got = err.Error()
		}
		if got != tt.want {
			t.Errorf("%s: Delete = %v, want %q", tt.persona, err, tt.want)
		}
	}
}

// TestRedactions checks which fields of the node each persona that may
// see it reads redacted, as Ironic's node_sanitize does.
func TestRedactions(t *testing.T) {
	tests := []struct {
		persona  string
		elevated bool
		want     []string
	}{
		{"system-admin", false, nil},
		{"system-reader", false, nil},
		{"system-service", false, nil},
		{"owner-admin", false, nil},
		{"owner-reader", false, nil},
		{"owner-service", false, nil},
		{"lessee-admin", false, []string{"last_error", "driver_info"}},
		{"lessee-reader", false, []string{"last_error", "driver_info"}},
		// The service project's service user reads all once elevated.
		{"service", true, nil},
	}
	for _, tt := range tests {
		cfg := Config{ServiceRoleElevatedAccess: tt.elevated, ServiceProjectName: "service"}
		var got []string
		for _, r := range cfg.Redactions(personas[tt.persona], node) {
			got = append(got, r.Field)
			if r.Value == nil || !strings.Contains(fmt.Sprint(r.Value), r.Rule) {
				t.Errorf("%s: %s redacted as %v, which does not name %s", tt.persona, r.Field, r.Value, r.Rule)
			}
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("%s: redacted %v, want %v", tt.persona, got, tt.want)
		}
	}
	if r := (Config{}).Redactions(Unrestricted, node); r != nil {
		t.Errorf("without Keystone: redacted %v, want nothing", r)
	}
}

// TestDocsTable: docs/api.md's policy table has every rule with its
// default, so the docs cannot drift from the table the API enforces.
func TestDocsTable(t *testing.T) {
	doc, err := os.ReadFile("../../docs/api.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range Rules() {
		if row := fmt.Sprintf("| `%s` | `%s` |", r.Name, r.Default); !strings.Contains(string(doc), row) {
			t.Errorf("docs/api.md has no row %q", row)
		}
	}
}
