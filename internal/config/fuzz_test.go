package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// rotate maps every letter and digit of s to another of the same class
// (rot13, digits +5), leaving punctuation alone, so that the rotated
// string parses the same way in nearly every context. A message that
// contains s when s is used, and rotate(s) when rotate(s) is used, shows
// that s flows into the message rather than matching its template.
func rotate(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case 'a' <= r && r <= 'z':
			return 'a' + (r-'a'+13)%26
		case 'A' <= r && r <= 'Z':
			return 'A' + (r-'A'+13)%26
		case '0' <= r && r <= '9':
			return '0' + (r-'0'+5)%10
		}
		return r
	}, s)
}

// echoes reports whether the secret part of value flows into what
// render(value) returns: it shows there, and so does the secret of a
// different value in that value's rendering, where the first does not
// (a short secret such as "  a" otherwise matches the layout itself).
func echoes(value string, secret func(string) string, render func(string) string) bool {
	other := rotate(value)
	if other == value || len(secret(value)) < 3 {
		return false
	}
	mine, theirs := render(value), render(other)
	return strings.Contains(mine, secret(value)) && strings.Contains(theirs, secret(other)) &&
		!strings.Contains(theirs, secret(value))
}

func whole(v string) string { return v }

// secretPlaces are the ways a secret can be written in the file or the
// environment: the option, how the fuzzed value becomes its value, and
// which part of the value is secret.
var secretPlaces = []struct {
	section, name string
	wrap          func(v string) string
	secret        func(v string) string
}{
	{"nova", "password", whole, whole},
	{"nova", "application_credential_secret", whole, whole},
	{"temporal", "api_key", whole, whole},
	{"nova", "auth_url", func(v string) string { return "https://ironic:" + v + "@keystone.example:5000/v3" }, whole},
	{"nova", "auth_url", func(v string) string { return "keystone:" + v + "@keystone.example" }, whole},
	{"database", "url", func(v string) string { return "postgres://metal:" + v + "@db.example/metalpower" }, whole},
	// In a query, '&' starts the next parameter and '#' the fragment:
	// what follows is not the password, and may be shown.
	{"database", "url", func(v string) string { return "postgres://db.example/metalpower?user=metal&password=" + v }, func(v string) string {
		if i := strings.IndexAny(v, "&#"); i >= 0 {
			return v[:i]
		}
		return v
	}},
	{"database", "url", func(v string) string { return "mysql://metal:" + v + "@db.example/metalpower" }, whole},
}

// quotings write a TOML value in each of TOML's forms, or not at all.
var quotings = []func(v string) string{
	func(v string) string { return `"` + v + `"` },
	func(v string) string { return `'` + v + `'` },
	func(v string) string { return v },
	func(v string) string { return `"""` + v + `"""` },
	func(v string) string { return `'''` + v + `'''` },
	func(v string) string { return `"` + v },
}

// secretFile renders a config file with one secret option set to
// value; before and after are arbitrary TOML around it.
func secretFile(before string, place, quoting, form uint8, value, after string) string {
	p := secretPlaces[int(place)%len(secretPlaces)]
	v := quotings[int(quoting)%len(quotings)](p.wrap(value))
	var line string
	switch form % 3 {
	case 0:
		line = "[" + p.section + "]\n" + p.name + " = " + v
	case 1:
		line = p.section + "." + p.name + " = " + v
	case 2:
		line = p.section + " = { " + p.name + " = " + v + " }"
	}
	return before + "\n" + line + "\n" + after
}

// FuzzLoadFile loads arbitrary TOML around one secret option: Load never
// panics, and no error ever shows the secret's value, however broken the
// file is.
func FuzzLoadFile(f *testing.F) {
	type seed struct {
		before               string
		place, quoting, form uint8
		value, after         string
	}
	for _, s := range []seed{
		{"", 0, 0, 0, "hunter2MARKER", ""},
		{"", 0, 2, 0, "hunter2MARKER", ""},                 // unquoted
		{"", 0, 5, 0, "hunter2MARKER", ""},                 // unterminated
		{"", 0, 0, 0, `hunter2\qMARKER`, ""},               // bad escape
		{"", 0, 0, 0, "hunter2\x01MARKER", ""},             // control character
		{"", 0, 0, 0, "hunter2MARKER\" trailing junk", ""}, // junk after the value
		{"", 0, 3, 0, "hunter2\nMARKER", ""},
		{"", 0, 4, 0, "hunter2MARKER", ""},
		{"", 0, 0, 1, "hunter2MARKER", ""},
		{"", 0, 2, 2, "hunter2MARKER", ""},
		{"", 0, 0, 0, "hunter2MARKER", "[nova]\npassword = \"again\""}, // duplicate key
		{"", 0, 2, 0, "[1,2]", ""},                                     // wrong type
		{"", 0, 2, 0, "12345678", ""},
		{"", 1, 0, 0, "appcredSECRET", "[nova]\napplication_credential_id = \"id\"\nauth_url = \"http://k\"\n"},
		{"", 2, 2, 0, "tcld-APIKEY", ""},
		{"", 3, 0, 0, "kspassWORD", ""},
		{"", 3, 0, 0, "8Kx9zz", ""},
		{"", 4, 0, 0, "kspassWORD", ""},
		{"", 5, 0, 0, "dbpassWORD", ""},
		{"", 5, 0, 0, "8Kx9zz", ""},
		{"", 5, 2, 0, "dbpassWORD", ""},
		{"", 6, 0, 0, "dbpassWORD", ""},
		{"", 7, 0, 0, "dbpassWORD", ""},
		{"", 6, 0, 0, "&hunter2MARKER", ""}, // the password ends at '&'
		{"", 6, 0, 0, "pw#fragMARKER", ""},
		{"[log]\nlevel = \"loud\"", 0, 0, 0, "hunter2MARKER", "[api]\nport = 0"},
		{"[conductor]\nsync_power_state_workers = 0", 3, 0, 0, "p@ss:w#rd/1", "[temporal]\naddress = \"nope\""},
		{"[bogus]\nx = 1", 0, 0, 0, "hunter2MARKER", ""},
	} {
		f.Add(s.before, s.place, s.quoting, s.form, s.value, s.after)
	}
	path := filepath.Join(f.TempDir(), "metalpower.toml")
	f.Fuzz(func(t *testing.T, before string, place, quoting, form uint8, value, after string) {
		load := func(v string) string {
			if err := os.WriteFile(path, []byte(secretFile(before, place, quoting, form, v, after)), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := Load(path)
			if err == nil {
				return ""
			}
			return strings.ReplaceAll(err.Error(), path, "<path>")
		}
		msg := load(value) // never panics
		if strings.Contains(before+after, value) || strings.Contains(before+after, rotate(value)) {
			return // the value is not only the secret's
		}
		p := secretPlaces[int(place)%len(secretPlaces)]
		if echoes(value, p.secret, load) {
			t.Fatalf("the error shows the value of secret [%s] %s:\nfile:\n%s\nerror: %s",
				p.section, p.name, secretFile(before, place, quoting, form, value, after), msg)
		}
	})
}

// FuzzLoadEnv applies arbitrary METALPOWER_* variables, one of them a
// secret option, and validates the result: nothing panics, and neither
// the errors nor the printed (redacted) configuration show the secret.
func FuzzLoadEnv(f *testing.F) {
	f.Add("METALPOWER_CONDUCTOR_SYNC_POWER_STATE_WORKERS", "32", uint8(0), "hunter2MARKER")
	f.Add("METALPOWER_CONDUCTOR_SYNC_POWER_STATE_WORKERS", "lots", uint8(0), "hunter2MARKER")
	f.Add("METALPOWER_NOVA_SEND_POWER_NOTIFICATIONS", "maybe", uint8(1), "appcredSECRET")
	f.Add("METALPOWER_NOVA_PASSWORD", "first wins", uint8(0), "hunter2MARKER")
	f.Add("METALPOWER_NOVA_NO_SUCH", "x", uint8(2), "tcld-APIKEY")
	f.Add("METALPOWER_NOSUCH_SECTION", "x", uint8(3), "kspassWORD")
	f.Add("METALPOWER_CONFIG", "/etc/metalpower.toml", uint8(3), "8Kx9zz")
	f.Add("METALPOWER_TEST_X", "y", uint8(4), "kspassWORD")
	f.Add("METALPOWER_NOVA_AUTH_URL", "ftp://x", uint8(5), "dbpassWORD")
	f.Add("METALPOWER_DATABASE_URL", "sqlite://", uint8(5), "8Kx9zz")
	f.Add("METALPOWER_API_PORT", " 70000 ", uint8(6), "dbpassWORD")
	f.Add("METALPOWER_NOVA_USERNAME", "ironic", uint8(7), "dbpassWORD")
	f.Add("METALPOWER_=", "==", uint8(0), "a=b\x00c")
	f.Add("METALPOWER_LOG_LEVEL", "loud", uint8(6), "&hunter2MARKER")
	f.Fuzz(func(t *testing.T, name, value string, place uint8, secret string) {
		p := secretPlaces[int(place)%len(secretPlaces)]
		secretEnv := envName(p.section, p.name)
		render := func(s string) (string, string) {
			c := Default()
			// The secret's variable comes second when name is the same
			// variable, and then the fuzzed value wins.
			err := LoadEnv(&c, []string{name + "=" + value, secretEnv + "=" + p.wrap(s)})
			var msgs []string
			if err != nil {
				msgs = append(msgs, err.Error())
			}
			if err := c.Validate(); err != nil {
				msgs = append(msgs, err.Error())
			}
			return strings.Join(msgs, "\n"), c.String()
		}
		render(secret) // never panics
		if name == secretEnv || strings.Contains(name+value, secret) || strings.Contains(name+value, rotate(secret)) {
			return
		}
		if echoes(secret, p.secret, func(s string) string { msg, _ := render(s); return msg }) {
			msg, _ := render(secret)
			t.Fatalf("an error shows the value of secret [%s] %s (%s=%q):\n%s", p.section, p.name, secretEnv, p.wrap(secret), msg)
		}
		if echoes(secret, p.secret, func(s string) string { _, printed := render(s); return printed }) {
			_, printed := render(secret)
			t.Fatalf("the redacted configuration shows the value of secret [%s] %s (%s=%q):\n%s", p.section, p.name, secretEnv, p.wrap(secret), printed)
		}
	})
}
