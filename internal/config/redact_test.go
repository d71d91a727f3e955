package config

import (
	"strings"
	"testing"
)

// Passwords with characters net/url reads as structure must still be
// masked (found by FuzzLoadEnv).
func TestRedactURLPasswordsWithURLCharacters(t *testing.T) {
	for _, raw := range []string{
		"https://ironic:#00@keystone.example:5000/v3",
		"postgres://metal:00?@db.example/metalpower",
		"postgres://metal:8/Kx9zz@db/metalpower",
	} {
		got := redactURL(raw)
		for _, secret := range []string{"#00", "00?", "8/Kx9zz"} {
			if strings.Contains(raw, ":"+secret+"@") && strings.Contains(got, secret) {
				t.Errorf("redactURL(%q) = %q shows the password", raw, got)
			}
		}
	}
}
