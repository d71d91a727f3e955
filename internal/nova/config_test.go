package nova

import (
	"errors"
	"strings"
	"testing"

	"github.com/metalpower/metalpower/internal/config"
	"github.com/metalpower/metalpower/internal/testbed/sim/novasim"
)

func TestNew(t *testing.T) {
	s, good := setup(t, novasim.Options{})
	tests := []struct {
		name          string
		edit          func(*config.Nova)
		notConfigured bool
	}{
		{"no auth_url", func(c *config.Nova) { c.AuthURL = "" }, true},
		{"no credentials", func(c *config.Nova) { c.Username, c.Password = "", "" }, true},
		{"bad interface", func(c *config.Nova) { c.Interface = "private" }, false},
		{"bad auth_url", func(c *config.Nova) { c.AuthURL = "keystone:5000" }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := good
			tt.edit(&cfg)
			n, err := New(cfg, Options{})
			if err == nil || n != nil {
				t.Fatalf("New = %v, %v; want an error", n, err)
			}
			if errors.Is(err, ErrNotConfigured) != tt.notConfigured {
				t.Errorf("errors.Is(%v, ErrNotConfigured) = %v", err, !tt.notConfigured)
			}
		})
	}
	if _, err := New(good, Options{}); err != nil {
		t.Fatal(err)
	}
	if len(s.Requests()) != 0 {
		t.Error("New contacted Keystone")
	}
}

func TestConfigured(t *testing.T) {
	full := config.Nova{
		AuthURL:  "http://keystone/v3",
		Username: "u", Password: "p",
		ApplicationCredentialID: "id", ApplicationCredentialSecret: "s",
	}
	tests := []struct {
		name        string
		edit        func(*config.Nova)
		wantMissing string // "" when configured
	}{
		{"password and application credential", func(c *config.Nova) {}, ""},
		{"password only", func(c *config.Nova) { c.ApplicationCredentialID, c.ApplicationCredentialSecret = "", "" }, ""},
		{"application credential only", func(c *config.Nova) { c.Username, c.Password = "", "" }, ""},
		{"no auth_url", func(c *config.Nova) { c.AuthURL = "" }, "auth_url"},
		{"no credentials", func(c *config.Nova) { *c = config.Nova{AuthURL: c.AuthURL} },
			"username and password (or application_credential_id and application_credential_secret)"},
		{"nothing", func(c *config.Nova) { *c = config.Nova{} }, "auth_url; username and password"},
		{"no password", func(c *config.Nova) { *c = config.Nova{AuthURL: c.AuthURL, Username: "u"} }, "password not set"},
		{"no username", func(c *config.Nova) { *c = config.Nova{AuthURL: c.AuthURL, Password: "p"} }, "username not set"},
		{"no secret", func(c *config.Nova) { *c = config.Nova{AuthURL: c.AuthURL, ApplicationCredentialID: "id"} },
			"application_credential_secret not set"},
		{"no credential id", func(c *config.Nova) { *c = config.Nova{AuthURL: c.AuthURL, ApplicationCredentialSecret: "s"} },
			"application_credential_id not set"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := full
			tt.edit(&cfg)
			err := Configured(cfg)
			if tt.wantMissing == "" {
				if err != nil {
					t.Fatalf("Configured: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrNotConfigured) || !strings.Contains(err.Error(), tt.wantMissing) {
				t.Errorf("Configured = %v, want ErrNotConfigured naming %q", err, tt.wantMissing)
			}
		})
	}
}

func TestTag(t *testing.T) {
	tests := []struct {
		state, tag string
		ok         bool
	}{
		{"power on", "POWER_ON", true},
		{"power off", "POWER_OFF", true},
		{"rebooting", "", false},
		{"soft rebooting", "", false},
		{"soft power off", "", false},
		{"error", "", false},
		{"", "", false},
		{"POWER_ON", "", false},
	}
	for _, tt := range tests {
		tag, ok := Tag(tt.state)
		if tag != tt.tag || ok != tt.ok {
			t.Errorf("Tag(%q) = %q, %v; want %q, %v", tt.state, tag, ok, tt.tag, tt.ok)
		}
	}
}
