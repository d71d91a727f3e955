package policy

import (
	"errors"
	"slices"
)

// ErrUnauthenticated is the cause of every 401: the request has no
// credentials, or credentials that are not (or no longer) valid.
var ErrUnauthenticated = errors.New("the request you have made requires authentication")

// Credentials are what a request is allowed by: who made it, in which
// scope, with which roles, as keystonemiddleware passes them to Ironic
// (X-User-Id, X-Project-Id, X-System-Scope, X-Roles).
type Credentials struct {
	UserID, UserName string
	// ProjectID and ProjectName are set for a project-scoped token.
	ProjectID, ProjectName string
	// System is set for a system-scoped token (scope "all").
	System bool
	// Roles are the token's effective roles, implied ones included
	// (Keystone expands admin to member and reader), lower case.
	Roles []string
	// Unrestricted is the caller of an API without Keystone (noauth,
	// http_basic): Ironic enforces no policy there, and neither do we.
	Unrestricted bool
}

// Unrestricted is the caller when the API authenticates without Keystone.
var Unrestricted = Credentials{Unrestricted: true}

// HasRole reports whether c holds role.
func (c Credentials) HasRole(role string) bool { return slices.Contains(c.Roles, role) }
