package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/metalpower/metalpower/internal/node"
	"github.com/metalpower/metalpower/internal/policy"
	"github.com/metalpower/metalpower/internal/store"
)

// patchOp is one RFC 6902 operation, as Ironic's PATCH takes them.
type patchOp struct {
	Op    string          `json:"op"`
	Path  string          `json:"path"`
	Value json.RawMessage `json:"value"`
}

// patchError is a patch that cannot apply: 400.
type patchError struct{ msg string }

func (e *patchError) Error() string { return e.msg }

func badPatch(format string, args ...any) error { return &patchError{fmt.Sprintf(format, args...)} }

// readOnly are fields only metalpower itself writes.
var readOnly = []string{"uuid", "power_state", "target_power_state", "provision_state", "last_error",
	"fault", "created_at", "updated_at", "links", "power_sync_failures"}

func (s *Server) patchNode(w http.ResponseWriter, r *http.Request) {
	n, ok := s.lookup(w, r)
	if !ok {
		return
	}
	var ops []patchOp
	if !decodeBody(w, r, &ops) {
		return
	}
	if len(ops) == 0 {
		writeError(w, http.StatusBadRequest, "Patch must contain at least one operation.")
		return
	}
	// Every field's rule must allow the change, as Ironic's
	// _authorize_patch_and_get_node.
	creds := credentialsOf(r)
	for _, op := range ops {
		if err := s.Policy.Authorize(patchRule(op.Path), creds, target(n)); err != nil {
			s.writePolicyError(w, r, err)
			return
		}
		if patchField(op.Path) == "owner" && n.ProvisionState == node.Active &&
			!s.Policy.Allowed(policy.NodeUpdateOwnerProvisioned, creds, target(n)) {
			writeError(w, http.StatusConflict, fmt.Sprintf("Cannot update owner of node %q while it is in state %q.", n.UUID, n.ProvisionState))
			return
		}
	}
	v := versionOf(r)
	updated, err := store.Modify(r.Context(), s.Store, n.UUID, func(n *node.Node) error {
		was := n.Maintenance
		for _, op := range ops {
			if err := applyOp(n, op, v); err != nil {
				return err
			}
		}
		n.LeftMaintenance(was)
		return nil
	})
	var pe *patchError
	if errors.As(err, &pe) {
		writeError(w, http.StatusBadRequest, pe.msg)
		return
	}
	if err != nil {
		s.writeStoreError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, view(r, updated, nil))
}

// patchField is the node field a patch path changes.
func patchField(path string) string {
	field, _, _ := strings.Cut(strings.TrimPrefix(path, "/"), "/")
	return field
}

// patchRule is the policy rule a change of path needs.
func patchRule(path string) string {
	switch patchField(path) {
	case "extra":
		return policy.NodeUpdateExtra
	case "driver_info":
		return policy.NodeUpdateDriverInfo
	case "properties":
		return policy.NodeUpdateProperties
	case "instance_uuid":
		return policy.NodeUpdateInstanceUUID
	case "lessee":
		return policy.NodeUpdateLessee
	case "owner":
		return policy.NodeUpdateOwner
	case "driver":
		return policy.NodeUpdateDriver
	case "conductor_group":
		return policy.NodeUpdateConductorGroup
	case "name":
		return policy.NodeUpdateName
	}
	return policy.NodeUpdate
}

func applyOp(n *node.Node, op patchOp, v Version) error {
	switch op.Op {
	case "add", "replace", "remove":
	default:
		return badPatch("Invalid patch operation %q: use add, replace or remove.", op.Op)
	}
	parts := strings.Split(strings.TrimPrefix(op.Path, "/"), "/")
	if !strings.HasPrefix(op.Path, "/") || parts[0] == "" {
		return badPatch("Invalid patch path %q.", op.Path)
	}
	field := parts[0]
	for _, ro := range readOnly {
		if field == ro {
			return badPatch("'/%s' is an internal attribute and can not be updated", field)
		}
	}
	if (op.Op == "add" || op.Op == "replace") && op.Value == nil {
		return badPatch("'add' and 'replace' operations need a value for %s.", op.Path)
	}
	remove := op.Op == "remove"
	switch {
	case mapField(n, field) != nil && len(parts) > 1:
		return patchMapPath(n, field, parts[1:], op, remove)
	case len(parts) > 1:
		return badPatch("Invalid patch path %q.", op.Path)
	}
	switch field {
	case "name":
		if !v.AtLeast(5) {
			return badPatch("The name field needs API version 1.5 or later.")
		}
		return setString(&n.Name, op, remove)
	case "driver":
		if remove {
			return badPatch("'/driver' is a mandatory attribute and can not be removed")
		}
		return setString(&n.Driver, op, false)
	case "instance_uuid":
		err := setString(&n.InstanceUUID, op, remove)
		n.InstanceUUID = strings.ToLower(n.InstanceUUID)
		return err
	case "maintenance_reason":
		return setString(&n.MaintenanceReason, op, remove)
	case "maintenance":
		return setBool(&n.Maintenance, op, remove)
	case "disable_power_off":
		if !v.AtLeast(95) {
			return badPatch("The disable_power_off field needs API version 1.95 or later.")
		}
		return setBool(&n.DisablePowerOff, op, remove)
	case "resource_class":
		if !v.AtLeast(21) {
			return badPatch("The resource_class field needs API version 1.21 or later.")
		}
		if err := setString(&n.ResourceClass, op, remove); err != nil {
			return err
		}
		if err := node.ValidResourceClass(n.ResourceClass); err != nil {
			return badPatch("Invalid value for resource_class: %s.", err)
		}
		return nil
	case "conductor_group":
		if !v.AtLeast(46) {
			return badPatch("The conductor_group field needs API version 1.46 or later.")
		}
		var g string
		if err := setString(&g, op, remove); err != nil {
			return err
		}
		group, err := node.ConductorGroup(g)
		if err != nil {
			return badPatch("Invalid value for conductor_group: %s.", err)
		}
		n.ConductorGroup = group
		return nil
	case "owner":
		if !v.AtLeast(50) {
			return badPatch("The owner field needs API version 1.50 or later.")
		}
		return setString(&n.Owner, op, remove)
	case "lessee":
		if !v.AtLeast(65) {
			return badPatch("The lessee field needs API version 1.65 or later.")
		}
		return setString(&n.Lessee, op, remove)
	case "traits":
		return badPatch("Cannot update node traits via node patch. Node traits should be updated via the node traits API.")
	case "driver_info", "extra", "properties":
		return setMap(mapField(n, field), op, remove)
	}
	return badPatch("Couldn't apply patch '%s': the field '%s' does not exist or can not be updated.", op.Path, field)
}

func setString(dst *string, op patchOp, remove bool) error {
	if remove {
		*dst = ""
		return nil
	}
	var s *string
	if err := json.Unmarshal(op.Value, &s); err != nil {
		return badPatch("Invalid value for %s: a string (or null) is expected.", op.Path)
	}
	*dst = deref(s)
	return nil
}

func setBool(dst *bool, op patchOp, remove bool) error {
	if remove {
		*dst = false
		return nil
	}
	if err := json.Unmarshal(op.Value, dst); err != nil {
		return badPatch("Invalid value for %s: a boolean is expected.", op.Path)
	}
	return nil
}

func setMap(dst *map[string]any, op patchOp, remove bool) error {
	if remove {
		*dst = map[string]any{}
		return nil
	}
	var m map[string]any
	if err := json.Unmarshal(op.Value, &m); err != nil || m == nil {
		return badPatch("Invalid value for %s: an object is expected.", op.Path)
	}
	*dst = m
	return nil
}

// mapField is the object field a patch path starts with, or nil.
func mapField(n *node.Node, field string) *map[string]any {
	switch field {
	case "driver_info":
		return (*map[string]any)(&n.DriverInfo)
	case "extra":
		return &n.Extra
	case "properties":
		return &n.Properties
	}
	return nil
}

// patchMapPath changes one key of driver_info, extra or properties, at
// any depth (/properties/capabilities/boot_mode), as Ironic's JSON patch.
// A masked password sent back as "******" (a client echoing what it read)
// is ignored, so the real one is never overwritten by the mask.
func patchMapPath(n *node.Node, field string, path []string, op patchOp, remove bool) error {
	dst := mapField(n, field)
	root, err := deepCopy(*dst)
	if err != nil {
		return err
	}
	parent := root
	for _, k := range path[:len(path)-1] {
		child, ok := parent[unescapePointer(k)].(map[string]any)
		if !ok {
			return badPatch("Couldn't apply patch '%s': the path does not exist.", op.Path)
		}
		parent = child
	}
	key := unescapePointer(path[len(path)-1])
	if remove {
		if _, ok := parent[key]; !ok {
			return badPatch("Couldn't apply patch '%s': the key does not exist.", op.Path)
		}
		delete(parent, key)
	} else {
		var val any
		if err := json.Unmarshal(op.Value, &val); err != nil {
			return badPatch("Invalid value for %s.", op.Path)
		}
		if field == "driver_info" && len(path) == 1 && node.IsSecretKey(key) && val == node.Masked {
			return nil
		}
		parent[key] = val
	}
	*dst = root
	return nil
}

// deepCopy copies a JSON object, nested objects included.
func deepCopy(m map[string]any) (map[string]any, error) {
	out := map[string]any{}
	if m == nil {
		return out, nil
	}
	b, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	return out, json.Unmarshal(b, &out)
}

// unescapePointer decodes a JSON pointer segment (RFC 6901).
func unescapePointer(s string) string {
	return strings.NewReplacer("~1", "/", "~0", "~").Replace(s)
}
