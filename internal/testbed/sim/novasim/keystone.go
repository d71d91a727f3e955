package novasim

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"slices"
	"time"
)

// Keystone's domain "Default" has ID "default"; users may name it either way.
const (
	defaultDomainID   = "default"
	defaultDomainName = "Default"
)

// keystoneVersion is the v3 entry of Keystone's version document.
func (s *Sim) keystoneVersion() object {
	return object{
		"id":      "v3.14",
		"status":  "stable",
		"updated": "2020-04-07T00:00:00Z",
		"links":   []any{object{"rel": "self", "href": s.URL() + "/v3/"}},
		"media-types": []any{object{
			"base": "application/json",
			"type": "application/vnd.openstack.identity-v3+json",
		}},
	}
}

// serveKeystone serves the part of Keystone v3 a service client needs:
// the version document and password or application credential login.
func (s *Sim) serveKeystone(w http.ResponseWriter, r *http.Request, rest string) {
	switch rest {
	case "", "/":
		if allow(w, r, http.MethodGet, http.MethodHead) {
			writeJSON(w, http.StatusOK, object{"version": s.keystoneVersion()})
		}
	case "/auth/tokens":
		if allow(w, r, http.MethodPost) {
			s.issueToken(w, r)
		}
	default:
		keystoneError(w, http.StatusNotFound, "Not Found", "The resource could not be found.")
	}
}

func keystoneError(w http.ResponseWriter, status int, title, msg string) {
	writeJSON(w, status, object{"error": object{"code": status, "title": title, "message": msg}})
}

// unauthorized answers 401 the way Keystone and keystonemiddleware do,
// pointing the client at Keystone.
func (s *Sim) unauthorized(w http.ResponseWriter, msg string) {
	w.Header().Set("WWW-Authenticate", `Keystone uri="`+s.URL()+`/v3"`)
	keystoneError(w, http.StatusUnauthorized, "Unauthorized", msg)
}

// domainRef names a domain by ID or name, as in Keystone requests.
type domainRef struct {
	ID   string `json:"id"`
	Name string `json:"name"`
}

// isDefault reports whether d names the only domain the Sim has.
func (d *domainRef) isDefault() bool {
	return d != nil && (d.ID == defaultDomainID || d.Name == defaultDomainName)
}

type authRequest struct {
	Auth struct {
		Identity struct {
			Methods  []string `json:"methods"`
			Password *struct {
				User struct {
					Name     string     `json:"name"`
					Password string     `json:"password"`
					Domain   *domainRef `json:"domain"`
				} `json:"user"`
			} `json:"password"`
			AppCred *struct {
				ID     string `json:"id"`
				Secret string `json:"secret"`
			} `json:"application_credential"`
		} `json:"identity"`
		Scope *struct {
			Project *struct {
				ID     string     `json:"id"`
				Name   string     `json:"name"`
				Domain *domainRef `json:"domain"`
			} `json:"project"`
		} `json:"scope"`
	} `json:"auth"`
}

const authFailed = "The request you have made requires authentication."

// issueToken implements POST /v3/auth/tokens. As in Keystone, every
// credential problem is the same uninformative 401.
func (s *Sim) issueToken(w http.ResponseWriter, r *http.Request) {
	var req authRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		keystoneError(w, http.StatusBadRequest, "Bad Request", "Malformed request body: "+err.Error())
		return
	}
	id := req.Auth.Identity
	scope := req.Auth.Scope
	var method string
	switch {
	case slices.Equal(id.Methods, []string{"password"}) && id.Password != nil:
		method = "password"
		u := id.Password.User
		if !u.Domain.isDefault() || !equal(u.Name, s.opts.Username) || !equal(u.Password, s.opts.Password) {
			s.unauthorized(w, authFailed)
			return
		}
	case slices.Equal(id.Methods, []string{"application_credential"}) && id.AppCred != nil:
		method = "application_credential"
		ac := id.AppCred
		if s.opts.AppCredID == "" || !equal(ac.ID, s.opts.AppCredID) || !equal(ac.Secret, s.opts.AppCredSecret) {
			s.unauthorized(w, authFailed)
			return
		}
		if scope != nil {
			s.unauthorized(w, "Application credentials cannot request a scope.")
			return
		}
	default:
		s.unauthorized(w, authFailed)
		return
	}

	// A password login without a scope gets an unscoped token, which has
	// no catalog; an application credential is always project-scoped.
	scoped := method == "application_credential"
	if scope != nil {
		p := scope.Project
		if p == nil || !(p.ID == s.projectID() || (p.Name == s.opts.ProjectName && p.Domain.isDefault())) {
			s.unauthorized(w, authFailed)
			return
		}
		scoped = true
	}

	tokenID, expires := s.newToken()
	domain := object{"id": defaultDomainID, "name": defaultDomainName}
	now := time.Now().UTC()
	token := object{
		"methods":    []string{method},
		"issued_at":  now.Format(keystoneTime),
		"expires_at": expires.UTC().Format(keystoneTime),
		"user": object{
			"id": idFor("user", s.opts.Username), "name": s.opts.Username,
			"domain": domain, "password_expires_at": nil,
		},
		"audit_ids": []string{tokenID[:22]},
	}
	if scoped {
		token["project"] = object{"id": s.projectID(), "name": s.opts.ProjectName, "domain": domain}
		token["roles"] = []any{
			object{"id": idFor("role", "service"), "name": "service"},
			object{"id": idFor("role", "admin"), "name": "admin"},
		}
		token["catalog"] = s.catalog()
		token["is_domain"] = false
	}
	if method == "application_credential" {
		token["application_credential"] = object{"id": s.opts.AppCredID, "name": "metalpower", "restricted": true}
	}
	w.Header().Set("X-Subject-Token", tokenID)
	writeJSON(w, http.StatusCreated, object{"token": token})
}

// keystoneTime is the timestamp format of Keystone token bodies.
const keystoneTime = "2006-01-02T15:04:05.000000Z"

// equal compares secrets in constant time.
func equal(a, b string) bool {
	return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}

// idFor derives a stable Keystone-style ID (32 hex digits) for an object,
// so tokens issued by different Sims name the same user alike.
func idFor(kind, name string) string {
	sum := sha256.Sum256([]byte(kind + "/" + name))
	return hex.EncodeToString(sum[:16])
}

func (s *Sim) projectID() string { return idFor("project", s.opts.ProjectName) }

func (s *Sim) newToken() (string, time.Time) {
	b := make([]byte, 32)
	rand.Read(b)
	id := "gAAAAA" + hex.EncodeToString(b) // Fernet tokens start like this
	expires := time.Now().Add(s.opts.TokenTTL)
	s.mu.Lock()
	s.tokens[id] = expires
	s.mu.Unlock()
	return id, expires
}

// validToken reports whether r carries a token that is issued, not
// invalidated by ExpireTokens, and not past its expiry.
func (s *Sim) validToken(r *http.Request) bool {
	id := r.Header.Get("X-Auth-Token")
	if id == "" {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	expires, ok := s.tokens[id]
	if ok && !time.Now().Before(expires) {
		delete(s.tokens, id)
		return false
	}
	return ok
}

// catalog lists Nova under three distinguishable URLs, one per interface,
// and Keystone itself.
func (s *Sim) catalog() []any {
	base := s.URL()
	region := s.opts.Region
	endpoint := func(service, iface, url string) object {
		return object{
			"id":        idFor("endpoint", service+"/"+iface),
			"interface": iface,
			"region":    region,
			"region_id": region,
			"url":       url,
		}
	}
	return []any{
		object{
			"type": "compute",
			"name": "nova",
			"id":   idFor("service", "nova"),
			"endpoints": []any{
				endpoint("nova", "public", base+"/public/v2.1"),
				endpoint("nova", "internal", base+"/v2.1"),
				endpoint("nova", "admin", base+"/admin/v2.1"),
			},
		},
		object{
			"type": "identity",
			"name": "keystone",
			"id":   idFor("service", "keystone"),
			"endpoints": []any{
				endpoint("keystone", "public", base+"/v3"),
				endpoint("keystone", "internal", base+"/v3"),
				endpoint("keystone", "admin", base+"/v3"),
			},
		},
	}
}
