package redfishsim

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"net/http"
	"strconv"
)

// session is a SessionService login. Sessions do not time out: a test
// that forgets to log out should see the leak in ActiveSessions.
type session struct {
	id, token, user string
}

func (s *Sim) validCredentials(user, pass string) bool {
	u := subtle.ConstantTimeCompare([]byte(user), []byte(s.opts.Username))
	p := subtle.ConstantTimeCompare([]byte(pass), []byte(s.opts.Password))
	return u&p == 1
}

// authorized accepts a live session's X-Auth-Token or HTTP Basic
// credentials, as BMCs do.
func (s *Sim) authorized(r *http.Request) bool {
	if token := r.Header.Get("X-Auth-Token"); token != "" {
		s.mu.Lock()
		_, ok := s.sessions[token]
		s.mu.Unlock()
		if ok {
			return true
		}
	}
	user, pass, ok := r.BasicAuth()
	return ok && s.validCredentials(user, pass)
}

func sessionPath(id string) string { return sessionsPath + "/" + id }

func sessionJSON(sess *session) object {
	o := resource(sessionPath(sess.id), "Session", "v1_1_0", sess.id, "User Session")
	o["UserName"] = sess.user
	return o
}

func serveSessionService(w http.ResponseWriter) {
	svc := resource(sessSvcPath, "SessionService", "v1_1_3", "SessionService", "Session Service")
	svc["ServiceEnabled"] = true
	svc["SessionTimeout"] = 1800
	svc["Status"] = statusOK()
	svc["Sessions"] = link(sessionsPath)
	writeJSON(w, http.StatusOK, svc)
}

func (s *Sim) serveSessions(w http.ResponseWriter) {
	s.mu.Lock()
	members := make([]object, 0, len(s.sessions))
	for _, sess := range s.sessions {
		members = append(members, link(sessionPath(sess.id)))
	}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, object{
		"@odata.context":      "/redfish/v1/$metadata#SessionCollection.SessionCollection",
		"@odata.id":           sessionsPath,
		"@odata.type":         "#SessionCollection.SessionCollection",
		"Name":                "Session Collection",
		"Members":             members,
		"Members@odata.count": len(members),
	})
}

// createSession logs in. The token goes in X-Auth-Token and the session's
// URI in Location; clients need both (the second to log out).
func (s *Sim) createSession(w http.ResponseWriter, r *http.Request) {
	var req struct{ UserName, Password string }
	if !readJSON(w, r, &req) {
		return
	}
	if !s.validCredentials(req.UserName, req.Password) {
		unauthorized(w, r)
		return
	}
	raw := make([]byte, 16)
	rand.Read(raw)
	token := hex.EncodeToString(raw)

	s.mu.Lock()
	s.nextSess++
	sess := &session{id: strconv.Itoa(s.nextSess), token: token, user: req.UserName}
	s.sessions[token] = sess
	s.mu.Unlock()

	w.Header().Set("X-Auth-Token", token)
	w.Header().Set("Location", sessionPath(sess.id))
	writeJSON(w, http.StatusCreated, sessionJSON(sess))
}

// findSession returns the session with the given ID. Callers hold s.mu.
// A linear scan is fine: a test opens a handful of sessions.
func (s *Sim) findSession(id string) *session {
	for _, sess := range s.sessions {
		if sess.id == id {
			return sess
		}
	}
	return nil
}

func (s *Sim) serveSession(w http.ResponseWriter, r *http.Request, id string) {
	s.mu.Lock()
	sess := s.findSession(id)
	var body object
	if sess != nil {
		body = sessionJSON(sess)
	}
	s.mu.Unlock()
	if sess == nil {
		notFound(w, r)
		return
	}
	writeJSON(w, http.StatusOK, body)
}

// ExpireSessions ends every session, as the service's SessionTimeout does:
// their tokens get 401 from now on.
func (s *Sim) ExpireSessions() {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.sessions)
}

func (s *Sim) deleteSession(w http.ResponseWriter, r *http.Request, id string) {
	s.mu.Lock()
	sess := s.findSession(id)
	if sess != nil {
		delete(s.sessions, sess.token)
	}
	s.mu.Unlock()
	if sess == nil {
		notFound(w, r)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
