package redfishsim

import (
	"net/http"
	"slices"
	"time"
)

func opposite(state string) string {
	if state == powerOn {
		return powerOff
	}
	return powerOn
}

// resetSystem implements ComputerSystem.Reset. The request is checked and
// accepted at once; the power state it leads to takes effect
// TransitionDelay later, which readers observe lazily (system.resolve).
func (s *Sim) resetSystem(w http.ResponseWriter, r *http.Request, id string) {
	var req struct {
		ResetType string
	}
	if !readJSON(w, r, &req) {
		return
	}
	if req.ResetType == "" {
		writeError(w, http.StatusBadRequest, "ActionParameterMissing",
			"The action ComputerSystem.Reset requires the parameter ResetType to be present in the request body.",
			"Supply the action with the required parameter in the request body when the request is resubmitted.",
			"ComputerSystem.Reset", "ResetType")
		return
	}

	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	sys := s.lookup(id)
	if sys == nil {
		notFound(w, r)
		return
	}
	sys.resolve(now)
	if !slices.Contains(sys.allowedResetTypes(), req.ResetType) {
		writeError(w, http.StatusBadRequest, "ActionParameterNotSupported",
			"The parameter "+req.ResetType+" for the action ComputerSystem.Reset is not supported on the target resource.",
			"Remove the parameter supplied and resubmit the request if the operation failed.",
			req.ResetType, "ComputerSystem.Reset")
		return
	}

	// Toggles and restarts start from where the system is heading, so a
	// second action during a transition sees the first one's outcome.
	from := sys.intended()
	var to string // "" leaves the power state alone
	switch req.ResetType {
	case "On", "ForceOn", "ForceRestart", "PowerCycle":
		// A restart of a running system ends On; we do not show the brief
		// Off in between. Restarting a system that is off powers it on,
		// as most BMCs do for these two types.
		to = powerOn
	case "ForceOff", "GracefulShutdown":
		to = powerOff
	case "PushPowerButton":
		to = opposite(from)
	case "GracefulRestart":
		// A graceful restart needs a running OS to ask.
		if from == powerOff {
			conflict(w, req.ResetType, "the system is powered off")
			return
		}
		to = powerOn
	case "Nmi":
		// A diagnostic interrupt does not change power.
	default:
		// A type allowed through SetAllowableResetTypes that we do not
		// model: accept it and do nothing, as for Nmi.
	}

	if sys.fault == FaultConflictAfterOff && from == powerOff && to == powerOn &&
		!sys.offAt.IsZero() && now.Sub(sys.offAt) < s.opts.ConflictWindow {
		conflict(w, req.ResetType, "the system is still powering off")
		return
	}

	sys.resets = append(sys.resets, req.ResetType)
	if to == powerOff {
		sys.offAt = now
	}
	if to != "" && sys.fault != FaultStuck {
		if s.opts.TransitionDelay > 0 {
			sys.pending = to
			sys.pendingAt = now.Add(s.opts.TransitionDelay)
		} else {
			sys.power = to
			sys.pending = ""
		}
	}
	w.WriteHeader(http.StatusNoContent)
}

// conflict answers 409 the way Dell iDRAC does when a reset contradicts
// the current power state.
func conflict(w http.ResponseWriter, resetType, why string) {
	writeError(w, http.StatusConflict, "Base.1.12.ActionParameterValueConflict",
		"The parameter ResetType with value "+resetType+" conflicts with the current state: "+why+".",
		"Wait for the current operation to complete or change the parameter value and resubmit the request.",
		"ResetType", resetType)
}

// patchSystem accepts boot override changes, the only writable part of a
// simulated system. Other properties are ignored, so clients that PATCH
// more (asset tag, LED) do not fail.
func (s *Sim) patchSystem(w http.ResponseWriter, r *http.Request, id string) {
	var req struct {
		Boot struct {
			BootSourceOverrideEnabled *string
			BootSourceOverrideTarget  *string
			BootSourceOverrideMode    *string
		}
	}
	if !readJSON(w, r, &req) {
		return
	}
	b := req.Boot
	checks := []struct {
		name    string
		value   *string
		allowed []string
	}{
		{"BootSourceOverrideEnabled", b.BootSourceOverrideEnabled, []string{"Disabled", "Once", "Continuous"}},
		{"BootSourceOverrideTarget", b.BootSourceOverrideTarget, bootTargets},
		{"BootSourceOverrideMode", b.BootSourceOverrideMode, []string{"UEFI", "Legacy"}},
	}
	for _, c := range checks {
		if c.value != nil && !slices.Contains(c.allowed, *c.value) {
			writeError(w, http.StatusBadRequest, "PropertyValueNotInList",
				"The value "+*c.value+" for the property "+c.name+" is not in the list of acceptable values.",
				"Choose a value from the enumeration list that the implementation can support and resubmit the request if the operation failed.",
				*c.value, c.name)
			return
		}
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	sys := s.lookup(id)
	if sys == nil {
		notFound(w, r)
		return
	}
	if b.BootSourceOverrideEnabled != nil {
		sys.bootEnabled = *b.BootSourceOverrideEnabled
	}
	if b.BootSourceOverrideTarget != nil {
		sys.bootTarget = *b.BootSourceOverrideTarget
	}
	if b.BootSourceOverrideMode != nil {
		sys.bootMode = *b.BootSourceOverrideMode
	}
	w.WriteHeader(http.StatusNoContent)
}
