package redfishsim

import "net/http"

// injectFault applies the fault of the BMC owning system id, if any, and
// reports whether it answered the request. Faults that only alter power
// behaviour (stuck, flap, 409-after-off) are handled where power is read
// or changed, and pass through here.
func (s *Sim) injectFault(w http.ResponseWriter, r *http.Request, id string) bool {
	s.mu.Lock()
	var f Fault
	if sys := s.lookup(id); sys != nil {
		f = sys.fault
	}
	s.mu.Unlock()

	switch f {
	case FaultHang:
		// Hold the request until the client gives up or the Sim closes,
		// then drop the connection: a hung BMC never answers, so the
		// client must not see a status code.
		s.wait(r.Context(), 0)
		panic(http.ErrAbortHandler)
	case FaultServerError:
		writeError(w, http.StatusInternalServerError, "InternalError",
			"The request failed due to an internal service error.  The service is still operational.",
			"Resubmit the request.  If the problem persists, consider resetting the service.")
		return true
	case FaultUnauthorized:
		unauthorized(w, r)
		return true
	}
	return false
}
