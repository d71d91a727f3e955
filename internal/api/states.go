package api

import (
	"errors"
	"fmt"
	"net/http"
	"slices"

	"github.com/metalpower/metalpower/internal/control"
	"github.com/metalpower/metalpower/internal/dispatch"
	"github.com/metalpower/metalpower/internal/node"
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
	n, ok := s.lookup(w, r)
	if !ok {
		return
	}
	var req powerRequest
	if !decodeBody(w, r, &req) {
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
	_, err := control.StartPowerChange(r.Context(), s.Temporal, s.Store, s.TaskQueue, n, control.PowerRequest{Target: req.Target, Timeout: timeout, Via: "api"})
	switch {
	case writeDispatchError(w, err):
		return
	case errors.Is(err, control.ErrInvalidRequest):
		writeError(w, http.StatusBadRequest, err.Error())
		return
	case err != nil:
		s.Log.Error().Err(err).Msg("cannot start a power change")
		writeError(w, http.StatusServiceUnavailable, "No worker is available to change the power state: the workflow service cannot be reached. Please retry.")
		return
	}
	w.Header().Set("Location", baseURL(r)+"/v1/nodes/"+r.PathValue("ident")+"/states")
	w.WriteHeader(http.StatusAccepted)
}

func (s *Server) setProvision(w http.ResponseWriter, r *http.Request) {
	n, ok := s.lookup(w, r)
	if !ok {
		return
	}
	var req struct {
		Target string `json:"target"`
	}
	if !decodeBody(w, r, &req) {
		return
	}
	if !slices.Contains(node.ProvisionActions, req.Target) {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("The requested action \"%s\" is not supported by metalpower; supported: %v.", req.Target, node.ProvisionActions))
		return
	}
	_, err := control.Provision(r.Context(), control.Workers{Client: s.Temporal, TaskQueue: s.TaskQueue}, s.Store, n.UUID, req.Target)
	switch {
	case writeDispatchError(w, err):
		return
	case errors.Is(err, node.ErrInvalidState):
		writeError(w, http.StatusBadRequest, err.Error())
		return
	case err != nil && !errors.Is(err, control.ErrBMCRead):
		s.writeStoreError(w, r, err)
		return
	}
	// As Ironic's asynchronous transitions: accepted; a failed BMC check
	// shows in last_error and the state the node stays in.
	w.Header().Set("Location", baseURL(r)+"/v1/nodes/"+r.PathValue("ident")+"/states")
	w.WriteHeader(http.StatusAccepted)
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
	if _, err := control.SetMaintenance(r.Context(), s.Store, n.UUID, deref(req.Reason)); err != nil {
		s.writeStoreError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusAccepted)
}

func (s *Server) unsetMaintenance(w http.ResponseWriter, r *http.Request) {
	n, ok := s.lookup(w, r)
	if !ok {
		return
	}
	if _, err := control.UnsetMaintenance(r.Context(), s.Store, n.UUID); err != nil {
		s.writeStoreError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusAccepted)
}

// nodeHistory is GET /v1/nodes/{ident}/history (Ironic 1.78): newest
// first, power changes and conflicts with other parties.
func (s *Server) nodeHistory(w http.ResponseWriter, r *http.Request) {
	if !versionOf(r).AtLeast(78) {
		writeError(w, http.StatusNotFound, "The resource could not be found: node history needs API version 1.78 or later.")
		return
	}
	n, ok := s.lookup(w, r)
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
			"event_type": e.Type, "event": e.Event, "user": e.Source,
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
