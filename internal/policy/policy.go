// Package policy is Ironic's default access policy for the node API
// (secure RBAC: new defaults, scope enforced), as one table of rules.
// The API asks it, with the caller's Credentials and the node's owner and
// lessee, whether a request may go on; nothing else decides access.
package policy

import (
	"errors"
	"fmt"
)

// Config holds the options that change the rules: Ironic's
// [DEFAULT] rbac_service_role_elevated_access and rbac_service_project_name
// (here in [api]).
type Config struct {
	ServiceRoleElevatedAccess bool
	ServiceProjectName        string
}

// Target is what a rule is checked against: the node's owner and lessee
// (Keystone project IDs; empty when unset).
type Target struct{ Owner, Lessee string }

// ForbiddenError is a refusal by a rule: 403.
type ForbiddenError struct{ Rule string }

func (e *ForbiddenError) Error() string {
	return "Access was denied to the following resource: " + e.Rule
}

// ErrHidden is a node the caller may not even see: the API answers 404,
// as if it did not exist, so a project learns nothing of others' nodes.
var ErrHidden = errors.New("node not visible to the caller")

// InvalidError is a request the rules refuse as malformed: 400.
type InvalidError struct{ Msg string }

func (e *InvalidError) Error() string { return e.Msg }

// Allowed reports whether rule lets c act on a node with target t. An
// unknown rule allows nobody.
func (cfg Config) Allowed(rule string, c Credentials, t Target) bool {
	if c.Unrestricted {
		return true
	}
	r, ok := byName[rule]
	return ok && r.check(subject{c, t, cfg})
}

// Authorize is Allowed as an error: nil or a *ForbiddenError.
func (cfg Config) Authorize(rule string, c Credentials, t Target) error {
	if cfg.Allowed(rule, c, t) {
		return nil
	}
	return &ForbiddenError{Rule: rule}
}

// Node decides a request on one node as Ironic's
// check_node_policy_and_retrieve: a caller that may not get the node is
// told it does not exist (ErrHidden); one that may see it but not do
// rule is refused (*ForbiddenError). rule "" checks visibility only.
// Deletion falls back to baremetal:node:delete:self_owned_node, as
// Ironic's delete does for the owner's admin.
func (cfg Config) Node(rule string, c Credentials, t Target) error {
	if !cfg.Allowed(NodeGet, c, t) {
		return ErrHidden
	}
	if rule == "" || (rule == NodeDelete && cfg.Allowed(NodeDeleteSelfOwned, c, t)) {
		return nil
	}
	return cfg.Authorize(rule, c, t)
}

// ListScope decides a node list as Ironic's check_list_policy: it
// returns the project the list is confined to (nodes it owns or leases),
// or "" for all nodes. project is the ?project= the caller asked for.
func (cfg Config) ListScope(c Credentials, project string) (string, error) {
	if cfg.Allowed(NodeListAll, c, Target{}) {
		return project, nil
	}
	if c.ProjectID == "" || (project != "" && project != c.ProjectID) {
		return "", &ForbiddenError{Rule: NodeListAll}
	}
	if err := cfg.Authorize(NodeList, c, Target{}); err != nil {
		return "", err
	}
	return c.ProjectID, nil
}

// Redaction is a field of a node's view a caller may not read, and the
// value it reads instead (Ironic's wording).
type Redaction struct {
	Field string
	Rule  string
	Value any
}

var redactions = []Redaction{
	{"last_error", NodeGetLastError, "** Value Redacted - Requires baremetal:node:get:last_error permission. **"},
	{"driver_info", NodeGetDriverInfo, map[string]string{"content": "** Redacted - requires baremetal:node:get:driver_info permission. **"}},
}

// Filtered reports whether c's views of nodes are checked field by field
// (Ironic's baremetal:node:get:filter_threshold): false for system
// readers, whose views are the same whatever the node.
func (cfg Config) Filtered(c Credentials) bool {
	return !cfg.Allowed(NodeGetFilterThreshold, c, Target{})
}

// Redactions returns the fields of a node with target t that c may not
// read, as Ironic's node_sanitize: a lessee, say, sees neither the
// node's last error nor its BMC's address.
func (cfg Config) Redactions(c Credentials, t Target) []Redaction {
	if !cfg.Filtered(c) {
		return nil
	}
	var out []Redaction
	for _, r := range redactions {
		if !cfg.Allowed(r.Rule, c, t) {
			out = append(out, r)
		}
	}
	return out
}

// CreateOwner decides a node creation as Ironic's post with
// [api] project_admin_can_manage_own_nodes (on, its default): a system
// admin creates any node; a project admin (or service user) creates nodes
// its project owns, and may name no other owner. It returns the new
// node's owner.
func (cfg Config) CreateOwner(c Credentials, requested string) (string, error) {
	selfOwned := cfg.Allowed(NodeCreateSelfOwned, c, Target{})
	if !selfOwned {
		if err := cfg.Authorize(NodeCreate, c, Target{}); err != nil {
			return "", err
		}
	}
	if c.Unrestricted || c.System || !selfOwned {
		return requested, nil
	}
	if requested != "" && requested != c.ProjectID {
		return "", &InvalidError{"Cannot create a node as a project scoped admin with an owner other than your own project."}
	}
	return c.ProjectID, nil
}

// Rule is one of Ironic's policy rules: its name, its default check
// (the name of Ironic's check string), and the routes that enforce it.
type Rule struct {
	Name    string
	Default string
	Routes  []string
	check   check
}

// Rules is the policy: every rule the API enforces, in Ironic's order.
func Rules() []Rule { return rules }

func init() {
	for _, r := range rules {
		if _, dup := byName[r.Name]; dup {
			panic(fmt.Sprintf("policy: rule %s defined twice", r.Name))
		}
		byName[r.Name] = r
	}
}

var byName = map[string]Rule{}
