package api

import (
	"errors"
	"fmt"
	"net/http"
	"slices"

	"github.com/metalpower/metalpower/internal/dispatch"
	"github.com/metalpower/metalpower/internal/node"
	"github.com/metalpower/metalpower/internal/operator"
)

// getStates is GET /v1/nodes/{ident}/states (NodeStatesController.get): read from the record,
// no BMC query.
func (s *Server) getStates(w http.ResponseWriter, r *http.Request) {
	n, ok := s.lookup(w, r)
	if !ok {
		return
	}
	nullable := func(v string) any {
		if v == "" {
			return nil
		}
		return v
	}
	out := map[string]any{
		"console_enabled": false, "last_error": nullable(n.LastError), "power_state": nullable(n.PowerState),
		"provision_state": n.ProvisionState, "target_power_state": nullable(n.TargetPowerState),
		"target_provision_state": nil, "provision_updated_at": n.UpdatedAt.UTC().Format(node.TimeFormat),
	}
	if v := versionOf(r); v.AtLeast(12) {
		out["raid_config"], out["target_raid_config"] = map[string]any{}, map[string]any{}
	}
	writeJSON(w, http.StatusOK, out)
}

// powerRequest is PUT .../states/power's body. Timeout is a pointer: 0 and
// absent mean different things to Ironic.
type powerRequest struct {
	Target  string `json:"target"`
	Timeout *int   `json:"timeout"`
}

// setPower is PUT /v1/nodes/{ident}/states/power, with Ironic's checks in
// Ironic's order (NodeStatesController.power).
func (s *Server) setPower(w http.ResponseWriter, r *http.Request) {
	var req powerRequest
	n, ok := s.lookupWithBody(w, r, &req)
	if !ok {
		return
	}
	soft := req.Target == node.SoftReboot || req.Target == node.SoftPowerOff
	if (soft || (req.Timeout != nil && *req.Timeout != 0)) && !versionOf(r).AtLeast(27) {
		writeError(w, http.StatusNotAcceptable, "Soft power states and the timeout parameter need API version 1.27 or later.")
		return
	}
	switch node.CheckPowerRequest(n, req.Target, req.Timeout) {
	case node.RefusedTimeout:
		writeError(w, http.StatusBadRequest, "Invalid timeout value, timeout has to be positive integer.")
		return
	case node.RefusedTarget:
		writeError(w, http.StatusBadRequest, fmt.Sprintf("The requested action \"%s\" is not a valid power state. Valid states are: %v.", req.Target, node.Targets))
		return
	case node.RefusedUnsupported:
		writeError(w, http.StatusBadRequest, node.UnsupportedMessage(n, req.Target)+".")
		return
	case node.RefusedCleaning:
		writeError(w, http.StatusBadRequest, fmt.Sprintf("The requested action \"%s\" can not be performed on node \"%s\" while it is in state \"%s\".", req.Target, n.UUID, n.ProvisionState))
		return
	case node.RefusedPowerOff:
		writeError(w, http.StatusConflict, fmt.Sprintf("Node %s does not allow power off: disable_power_off is set.", n.UUID))
		return
	}
	timeout := 0
	if req.Timeout != nil {
		timeout = *req.Timeout
	}
	_, err := operator.StartPowerChange(r.Context(), s.Temporal, s.Store, s.TaskQueue, n, operator.PowerRequest{Target: req.Target, Timeout: timeout, Via: "api"})
	switch {
	case writeRefusal(w, err, operator.ErrInvalidRequest):
		return
	case err != nil:
		s.Log.Error().Err(err).Msg("cannot start a power change")
		writeError(w, http.StatusServiceUnavailable, "No worker is available to change the power state: the workflow service cannot be reached. Please retry.")
		return
	}
	writeAcceptedStates(w, r)
}

func (s *Server) setProvision(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Target string `json:"target"`
	}
	n, ok := s.lookupWithBody(w, r, &req)
	if !ok {
		return
	}
	if !slices.Contains(node.ProvisionActions, req.Target) {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("The requested action \"%s\" is not supported by metalpower; supported: %v.", req.Target, node.ProvisionActions))
		return
	}
	_, err := operator.Provision(r.Context(), operator.Workers{Client: s.Temporal, TaskQueue: s.TaskQueue}, s.Store, n.UUID, req.Target)
	switch {
	case writeRefusal(w, err, node.ErrInvalidState):
		return
	case err != nil && !errors.Is(err, operator.ErrBMCRead):
		s.writeStoreError(w, r, err)
		return
	}
	// As Ironic's asynchronous transitions: accepted; a failed BMC check
	// shows in last_error and the state the node stays in.
	writeAcceptedStates(w, r)
}

func (s *Server) setMaintenance(w http.ResponseWriter, r *http.Request) {
	n, ok := s.lookup(w, r)
	if !ok {
		return
	}
	var req struct {
		Reason *string `json:"reason"`
	}
	// An empty body is allowed: maintenance without a reason.
	if r.ContentLength != 0 && !decodeBody(w, r, &req) {
		return
	}
	_, err := operator.SetMaintenance(r.Context(), s.Store, n.UUID, deref(req.Reason))
	s.writeStoreResult(w, r, err, http.StatusAccepted)
}

func (s *Server) unsetMaintenance(w http.ResponseWriter, r *http.Request) {
	n, ok := s.lookup(w, r)
	if !ok {
		return
	}
	_, err := operator.UnsetMaintenance(r.Context(), s.Store, n.UUID)
	s.writeStoreResult(w, r, err, http.StatusAccepted)
}

// nodeHistory is GET /v1/nodes/{ident}/history (Ironic 1.78): newest
// first, power changes and conflicts with other parties.
func (s *Server) nodeHistory(w http.ResponseWriter, r *http.Request) {
	n, ok := s.lookupSince(w, r, 78, "node history needs")
	if !ok {
		return
	}
	events, err := s.Store.History(r.Context(), n.UUID, "", 0)
	if err != nil {
		s.internalError(w, r, err)
		return
	}
	base := baseURL(r)
	out := make([]any, len(events))
	for i, e := range events {
		out[i] = map[string]any{
			"uuid": e.UUID, "created_at": e.CreatedAt.UTC().Format(node.TimeFormat), "severity": e.Severity,
			"event_type": e.Type, "event": e.Event, "user": e.Via,
			"links": []any{link(base+"/v1/nodes/"+n.UUID+"/history/"+e.UUID, "self")},
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"history": out})
}

// writeDispatchError answers dispatch's refusals, the one place they
// become HTTP statuses: a held lock is Ironic's NodeLocked (409), a group
// no live worker serves its NoValidHost, which Ironic's API answers 400.
func writeDispatchError(w http.ResponseWriter, err error) bool {
	if locked, ok := dispatch.AsLocked(err); ok {
		writeError(w, http.StatusConflict, locked.Error())
		return true
	}
	if _, ok := dispatch.AsNoWorker(err); ok {
		writeError(w, http.StatusBadRequest, err.Error())
		return true
	}
	return false
}

// writeRefusal answers a refused workflow start: dispatch's refusals, and a
// request the node cannot take (err is invalid) as Ironic's 400 with the
// reason. It reports whether it wrote an answer.
func writeRefusal(w http.ResponseWriter, err, invalid error) bool {
	if writeDispatchError(w, err) {
		return true
	}
	if errors.Is(err, invalid) {
		writeError(w, http.StatusBadRequest, err.Error())
		return true
	}
	return false
}

// writeAcceptedStates answers a started transition as Ironic does: 202,
// pointing at the node's states to follow it.
func writeAcceptedStates(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Location", baseURL(r)+"/v1/nodes/"+r.PathValue("ident")+"/states")
	w.WriteHeader(http.StatusAccepted)
}

// writeStoreResult answers a change to the node store: the store's refusal
// when err says there is one, else status.
func (s *Server) writeStoreResult(w http.ResponseWriter, r *http.Request, err error, status int) {
	if err != nil {
		s.writeStoreError(w, r, err)
		return
	}
	w.WriteHeader(status)
}

// lookupWithBody finds the node of a request, then decodes the request's
// body into v. It reports false when it has answered the request: the node
// is unknown or the body malformed.
func (s *Server) lookupWithBody(w http.ResponseWriter, r *http.Request, v any) (*node.Node, bool) {
	n, ok := s.lookup(w, r)
	return n, ok && decodeBody(w, r, v)
}

// lookupSince finds the node of a request for a resource Ironic added in API
// version 1.minor. Before that version the resource does not exist, so the
// answer is 404 saying which version it needs ("node traits need").
func (s *Server) lookupSince(w http.ResponseWriter, r *http.Request, minor int, needs string) (*node.Node, bool) {
	if !versionOf(r).AtLeast(minor) {
		writeError(w, http.StatusNotFound, fmt.Sprintf("The resource could not be found: %s API version 1.%d or later.", needs, minor))
		return nil, false
	}
	return s.lookup(w, r)
}
