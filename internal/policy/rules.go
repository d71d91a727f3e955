package policy

// The rule names the API enforces (Ironic's, plus one for metalpower's
// profiling endpoint).
const (
	NodeCreate             = "baremetal:node:create"
	NodeCreateSelfOwned    = "baremetal:node:create:self_owned_node"
	NodeList               = "baremetal:node:list"
	NodeListAll            = "baremetal:node:list_all"
	NodeGet                = "baremetal:node:get"
	NodeGetFilterThreshold = "baremetal:node:get:filter_threshold"
	NodeGetLastError       = "baremetal:node:get:last_error"
	NodeGetDriverInfo      = "baremetal:node:get:driver_info"
	NodeUpdate             = "baremetal:node:update"
	NodeUpdateExtra        = "baremetal:node:update_extra"
	NodeUpdateDriverInfo   = "baremetal:node:update:driver_info"
	NodeUpdateProperties   = "baremetal:node:update:properties"
	NodeUpdateInstanceUUID = "baremetal:node:update:instance_uuid"
	NodeUpdateLessee       = "baremetal:node:update:lessee"
	NodeUpdateOwner        = "baremetal:node:update:owner"
	// NodeUpdateOwnerProvisioned changes the owner of an active node.
	NodeUpdateOwnerProvisioned = "baremetal:node:update_owner_provisioned"
	NodeUpdateDriver           = "baremetal:node:update:driver_interfaces"
	NodeUpdateConductorGroup   = "baremetal:node:update:conductor_group"
	NodeUpdateName             = "baremetal:node:update:name"
	NodeDelete                 = "baremetal:node:delete"
	NodeDeleteSelfOwned        = "baremetal:node:delete:self_owned_node"
	NodeSetMaintenance         = "baremetal:node:set_maintenance"
	NodeClearMaintenance       = "baremetal:node:clear_maintenance"
	NodeGetStates              = "baremetal:node:get_states"
	NodeSetPowerState          = "baremetal:node:set_power_state"
	NodeSetProvisionState      = "baremetal:node:set_provision_state"
	NodeTraitsList             = "baremetal:node:traits:list"
	NodeTraitsSet              = "baremetal:node:traits:set"
	NodeTraitsDelete           = "baremetal:node:traits:delete"
	NodeHistoryGet             = "baremetal:node:history:get"
	DebugPprof                 = "metalpower:debug:pprof"
)

var rules = []Rule{
	{NodeCreate, "SYSTEM_ADMIN or SYSTEM_SERVICE", []string{"POST /v1/nodes"}, anyOf(systemAdmin, systemService)},
	{NodeCreateSelfOwned, "role:admin or role:service", []string{"POST /v1/nodes"}, anyOf(role("admin"), role("service"))},
	{NodeList, "API_READER", []string{"GET /v1/nodes", "GET /v1/nodes/detail"}, apiReader},
	{NodeListAll, "SYSTEM_READER", []string{"GET /v1/nodes", "GET /v1/nodes/detail"}, systemReader},
	{NodeGet, "SYSTEM_OR_PROJECT_READER", []string{"GET /v1/nodes/{ident}", "every route of one node (else 404)"}, systemOrProjectReader},
	{NodeGetFilterThreshold, "SYSTEM_READER", []string{"GET /v1/nodes/{ident}", "GET /v1/nodes", "GET /v1/nodes/detail (callers it refuses have the next two checked)"}, systemReader},
	{NodeGetLastError, "SYSTEM_OR_OWNER_READER", []string{"the same (else last_error is redacted)"}, systemOrOwnerReader},
	{NodeGetDriverInfo, "SYSTEM_OR_OWNER_READER", []string{"the same (else driver_info is redacted)"}, systemOrOwnerReader},
	{NodeUpdate, "SYSTEM_OR_PROJECT_MEMBER", []string{"PATCH /v1/nodes/{ident} (/maintenance, /maintenance_reason, /resource_class, /disable_power_off)"}, systemOrProjectMember},
	{NodeUpdateExtra, "SYSTEM_OR_PROJECT_MEMBER", []string{"PATCH /v1/nodes/{ident} (/extra)"}, systemOrProjectMember},
	{NodeUpdateDriverInfo, "SYSTEM_MEMBER_OR_OWNER_MEMBER", []string{"PATCH /v1/nodes/{ident} (/driver_info)"}, systemMemberOrOwnerMember},
	{NodeUpdateProperties, "SYSTEM_MEMBER_OR_OWNER_MEMBER", []string{"PATCH /v1/nodes/{ident} (/properties)"}, systemMemberOrOwnerMember},
	{NodeUpdateInstanceUUID, "SYSTEM_MEMBER_OR_OWNER_MEMBER", []string{"PATCH /v1/nodes/{ident} (/instance_uuid)"}, systemMemberOrOwnerMember},
	{NodeUpdateLessee, "SYSTEM_MEMBER_OR_OWNER_MEMBER", []string{"PATCH /v1/nodes/{ident} (/lessee)"}, systemMemberOrOwnerMember},
	{NodeUpdateOwner, "SYSTEM_MEMBER", []string{"PATCH /v1/nodes/{ident} (/owner)"}, systemMember},
	{NodeUpdateOwnerProvisioned, "SYSTEM_ADMIN", []string{"PATCH /v1/nodes/{ident} (/owner of an active node, else 409)"}, systemAdmin},
	{NodeUpdateDriver, "SYSTEM_MEMBER_OR_OWNER_ADMIN", []string{"PATCH /v1/nodes/{ident} (/driver)"}, systemMemberOrOwnerAdmin},
	{NodeUpdateConductorGroup, "SYSTEM_MEMBER", []string{"PATCH /v1/nodes/{ident} (/conductor_group)"}, systemMember},
	{NodeUpdateName, "SYSTEM_MEMBER_OR_OWNER_MEMBER", []string{"PATCH /v1/nodes/{ident} (/name)"}, systemMemberOrOwnerMember},
	{NodeDelete, "SYSTEM_ADMIN", []string{"DELETE /v1/nodes/{ident}"}, systemAdmin},
	{NodeDeleteSelfOwned, "PROJECT_ADMIN", []string{"DELETE /v1/nodes/{ident}"}, ownerAdmin},
	{NodeSetMaintenance, "SYSTEM_OR_OWNER_MEMBER_AND_LESSEE_ADMIN", []string{"PUT /v1/nodes/{ident}/maintenance"}, systemOrOwnerMemberAndLesseeAdmin},
	{NodeClearMaintenance, "SYSTEM_OR_OWNER_MEMBER_AND_LESSEE_ADMIN", []string{"DELETE /v1/nodes/{ident}/maintenance"}, systemOrOwnerMemberAndLesseeAdmin},
	{NodeGetStates, "SYSTEM_OR_PROJECT_READER", []string{"GET /v1/nodes/{ident}/states"}, systemOrProjectReader},
	{NodeSetPowerState, "SYSTEM_OR_PROJECT_MEMBER", []string{"PUT /v1/nodes/{ident}/states/power"}, systemOrProjectMember},
	{NodeSetProvisionState, "SYSTEM_OR_OWNER_MEMBER_AND_LESSEE_ADMIN", []string{"PUT /v1/nodes/{ident}/states/provision"}, systemOrOwnerMemberAndLesseeAdmin},
	{NodeTraitsList, "SYSTEM_OR_PROJECT_READER", []string{"GET /v1/nodes/{ident}/traits"}, systemOrProjectReader},
	{NodeTraitsSet, "SYSTEM_MEMBER_OR_OWNER_ADMIN", []string{"PUT /v1/nodes/{ident}/traits", "PUT /v1/nodes/{ident}/traits/{trait}"}, systemMemberOrOwnerAdmin},
	{NodeTraitsDelete, "SYSTEM_MEMBER_OR_OWNER_ADMIN", []string{"DELETE /v1/nodes/{ident}/traits", "DELETE /v1/nodes/{ident}/traits/{trait}"}, systemMemberOrOwnerAdmin},
	{NodeHistoryGet, "SYSTEM_OR_OWNER_READER", []string{"GET /v1/nodes/{ident}/history"}, systemOrOwnerReader},
	{DebugPprof, "SYSTEM_ADMIN", []string{"GET /debug/pprof/"}, systemAdmin},
}

// subject is what a check looks at.
type subject struct {
	c   Credentials
	t   Target
	cfg Config
}

// check is one of Ironic's check strings.
type check func(subject) bool

func anyOf(checks ...check) check {
	return func(s subject) bool {
		for _, c := range checks {
			if c(s) {
				return true
			}
		}
		return false
	}
}

func allOf(checks ...check) check {
	return func(s subject) bool {
		for _, c := range checks {
			if !c(s) {
				return false
			}
		}
		return true
	}
}

func role(name string) check { return func(s subject) bool { return s.c.HasRole(name) } }

// systemScope is system_scope:all.
func systemScope(s subject) bool { return s.c.System }

// owner and lessee are project_id:%(node.owner)s and
// project_id:%(node.lessee)s: never true for a node without one.
func owner(s subject) bool  { return s.c.ProjectID != "" && s.c.ProjectID == s.t.Owner }
func lessee(s subject) bool { return s.c.ProjectID != "" && s.c.ProjectID == s.t.Lessee }

// serviceRole is Ironic's rule:service_role: the service role in the
// service project, which only counts with elevated access on.
func serviceRole(s subject) bool {
	return s.cfg.ServiceRoleElevatedAccess && s.cfg.ServiceProjectName != "" &&
		s.c.HasRole("service") && s.c.ProjectName == s.cfg.ServiceProjectName
}

// Ironic's check strings (ironic/common/policy.py).
var (
	systemAdmin   = allOf(role("admin"), systemScope)
	systemMember  = anyOf(allOf(role("member"), systemScope), serviceRole)
	systemReader  = anyOf(allOf(role("reader"), systemScope), allOf(role("service"), systemScope), serviceRole)
	systemService = allOf(role("service"), systemScope)

	ownerOrLessee  = anyOf(owner, lessee)
	projectMember  = allOf(role("member"), ownerOrLessee)
	projectReader  = allOf(role("reader"), ownerOrLessee)
	projectService = allOf(role("service"), owner)

	ownerAdmin    = allOf(role("admin"), owner)
	ownerManager  = allOf(role("manager"), owner)
	ownerMember   = allOf(role("member"), owner)
	ownerReader   = allOf(role("reader"), owner)
	lesseeAdmin   = allOf(role("admin"), lessee)
	lesseeManager = allOf(role("manager"), lessee)

	apiReader = anyOf(role("reader"), role("service"))

	systemOrProjectMember             = anyOf(systemMember, projectMember, systemService)
	systemOrProjectReader             = anyOf(systemReader, projectReader, projectService)
	systemOrOwnerMemberAndLesseeAdmin = anyOf(systemMember, systemService, ownerMember, lesseeAdmin, lesseeManager, projectService)
	systemMemberOrOwnerAdmin          = anyOf(systemMember, systemService, ownerAdmin, ownerManager, projectService)
	systemMemberOrOwnerMember         = anyOf(systemMember, systemService, ownerMember, projectService)
	systemOrOwnerReader               = anyOf(systemReader, systemService, ownerReader, projectService)
)
