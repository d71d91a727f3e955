package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestValidate(t *testing.T) {
	dir := t.TempDir()
	pem := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(pem, []byte("not checked"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.pem")

	tests := []struct {
		name   string
		modify func(*Config)
		// want is "" for a valid configuration, else substrings that must
		// all appear in the error.
		want []string
	}{
		{"defaults", func(*Config) {}, nil},

		{"sync disabled", func(c *Config) { c.Conductor.SyncPowerStateInterval = 0 }, nil},
		{"sync negative", func(c *Config) { c.Conductor.SyncPowerStateInterval = -1 }, nil},
		{"max retries", func(c *Config) { c.Conductor.PowerStateSyncMaxRetries = -1 },
			[]string{"[conductor] power_state_sync_max_retries: must be at least 0 (got -1)"}},
		{"workers", func(c *Config) { c.Conductor.SyncPowerStateWorkers = 0 },
			[]string{"[conductor] sync_power_state_workers: must be at least 1 (got 0)"}},
		{"recovery disabled", func(c *Config) { c.Conductor.PowerFailureRecoveryInterval = 0 }, nil},
		{"recovery", func(c *Config) { c.Conductor.PowerFailureRecoveryInterval = -5 },
			[]string{"[conductor] power_failure_recovery_interval: must be at least 0 (got -5)"}},
		{"change timeout", func(c *Config) { c.Conductor.PowerStateChangeTimeout = 1 },
			[]string{"[conductor] power_state_change_timeout: must be at least 2 (got 1)"}},
		{"soft off timeout", func(c *Config) { c.Conductor.SoftPowerOffTimeout = 0 },
			[]string{"[conductor] soft_power_off_timeout: must be at least 1 (got 0)"}},

		{"ipmi interval", func(c *Config) { c.IPMI.MinCommandInterval = -1 },
			[]string{"[ipmi] min_command_interval: must be at least 0"}},
		{"ipmi retry", func(c *Config) { c.IPMI.CommandRetryTimeout = -1 },
			[]string{"[ipmi] command_retry_timeout: must be at least 0"}},

		{"redfish attempts", func(c *Config) { c.Redfish.PowerOnConflictRetryAttempts = -1 },
			[]string{"[redfish] power_on_conflict_retry_attempts: must be at least 0"}},
		{"redfish interval", func(c *Config) { c.Redfish.PowerOnConflictRetryInterval = 0 },
			[]string{"[redfish] power_on_conflict_retry_interval: must be at least 1"}},

		{"nova interface", func(c *Config) { c.Nova.Interface = "private" },
			[]string{`[nova] interface: must be one of public, internal, admin (got "private")`}},
		{"nova auth_url scheme", func(c *Config) { c.Nova.AuthURL = "keystone:5000"; setPassword(c) },
			[]string{"[nova] auth_url: must be an http:// or https:// URL"}},
		{"nova auth_url no host", func(c *Config) { c.Nova.AuthURL = "https:///v3"; setPassword(c) },
			[]string{"[nova] auth_url"}},
		{"nova password auth", func(c *Config) { c.Nova.AuthURL = "https://ks/v3"; setPassword(c) }, nil},
		{"nova app cred auth", func(c *Config) {
			c.Nova.AuthURL = "http://ks:5000/v3"
			c.Nova.ApplicationCredentialID = "id"
			c.Nova.ApplicationCredentialSecret = "s"
		}, nil},
		{"nova no credentials", func(c *Config) { c.Nova.AuthURL = "https://ks/v3" },
			[]string{"[nova] auth_url", "username and password", "application_credential_id and application_credential_secret"}},
		{"nova password missing", func(c *Config) { c.Nova.AuthURL = "https://ks/v3"; c.Nova.Username = "u" },
			[]string{"[nova] auth_url", "username and password"}},
		{"nova app secret missing", func(c *Config) { c.Nova.AuthURL = "https://ks/v3"; c.Nova.ApplicationCredentialID = "id" },
			[]string{"application_credential_secret"}},
		{"nova notifications off", func(c *Config) { c.Nova.AuthURL = "https://ks/v3"; c.Nova.SendPowerNotifications = false }, nil},

		{"database postgres", func(c *Config) { c.Database.URL = "postgres://u:p@h/db" }, nil},
		{"database postgresql", func(c *Config) { c.Database.URL = "postgresql://h/db" }, nil},
		{"database sqlite absolute", func(c *Config) { c.Database.URL = "sqlite:///var/lib/m.db" }, nil},
		{"database scheme", func(c *Config) { c.Database.URL = "mysql://h/db" },
			[]string{`[database] url: must start with sqlite://, postgres:// or postgresql:// (got "mysql://h/db")`}},
		{"database empty", func(c *Config) { c.Database.URL = "" }, []string{"[database] url"}},
		{"database sqlite no path", func(c *Config) { c.Database.URL = "sqlite://" },
			[]string{"[database] url: sqlite:// needs a file path"}},

		{"conductor group", func(c *Config) { c.Conductor.ConductorGroup = "Rack-A_1.east" }, nil},
		{"conductor group with a space", func(c *Config) { c.Conductor.ConductorGroup = "rack a" },
			[]string{`[conductor] conductor_group: must be at most 255 letters, digits, '_', '-' or '.' (got "rack a")`}},

		{"deployment", func(c *Config) { c.Temporal.DeploymentName, c.Temporal.BuildID = "metalpower", "2026.11.25+abc_1-x" }, nil},
		{"deployment without build id", func(c *Config) { c.Temporal.DeploymentName = "metalpower" }, nil},
		{"deployment name with a dot", func(c *Config) { c.Temporal.DeploymentName = "metal.power" },
			[]string{`[temporal] deployment_name: must be 1-200 letters, digits, '-' or '_' (got "metal.power")`}},
		{"build id with a space", func(c *Config) { c.Temporal.DeploymentName, c.Temporal.BuildID = "metalpower", "v 2" },
			[]string{`[temporal] build_id: must be 1-200 letters, digits, '-', '_', '.' or '+' (got "v 2")`}},
		{"build id without deployment", func(c *Config) { c.Temporal.BuildID = "v2" },
			[]string{"[temporal] build_id: is set but [temporal] deployment_name is empty"}},
		{"temporal dns target", func(c *Config) { c.Temporal.Address = "dns:///temporal.example.com:7233" }, nil},
		{"temporal ipv6", func(c *Config) { c.Temporal.Address = "[::1]:7233" }, nil},
		{"temporal no port", func(c *Config) { c.Temporal.Address = "temporal" },
			[]string{`[temporal] address: must be host:port (got "temporal")`}},
		{"temporal no host", func(c *Config) { c.Temporal.Address = ":7233" }, []string{"[temporal] address"}},
		{"temporal bad port", func(c *Config) { c.Temporal.Address = "h:70000" }, []string{"[temporal] address"}},
		{"temporal namespace", func(c *Config) { c.Temporal.Namespace = "" },
			[]string{"[temporal] namespace: must not be empty"}},
		{"temporal task queue", func(c *Config) { c.Temporal.TaskQueue = "" },
			[]string{"[temporal] task_queue: must not be empty"}},
		{"temporal tls files", func(c *Config) {
			c.Temporal.TLS = true
			c.Temporal.TLSCAFile, c.Temporal.TLSCertFile, c.Temporal.TLSKeyFile = pem, pem, pem
		}, nil},
		{"temporal tls missing file", func(c *Config) { c.Temporal.TLS = true; c.Temporal.TLSCAFile = missing },
			[]string{"[temporal] tls_ca_file", missing}},
		{"temporal tls directory", func(c *Config) { c.Temporal.TLS = true; c.Temporal.TLSCAFile = dir },
			[]string{"[temporal] tls_ca_file", dir, "not a regular file"}},
		{"temporal cert without key", func(c *Config) { c.Temporal.TLS = true; c.Temporal.TLSCertFile = pem },
			[]string{"[temporal] tls_key_file: must be set when tls_cert_file is set"}},
		{"temporal key without cert", func(c *Config) { c.Temporal.TLS = true; c.Temporal.TLSKeyFile = pem },
			[]string{"[temporal] tls_cert_file: must be set when tls_key_file is set"}},
		{"temporal tls option without tls", func(c *Config) { c.Temporal.TLSServerName = "t.example.com" },
			[]string{"[temporal] tls_server_name: is set but [temporal] tls is false"}},
		{"temporal skip verify without tls", func(c *Config) { c.Temporal.TLSInsecureSkipVerify = true },
			[]string{"[temporal] tls_insecure_skip_verify"}},

		{"api host name", func(c *Config) { c.API.HostIP = "api.example.com" }, nil},
		{"api ipv6", func(c *Config) { c.API.HostIP = "::" }, nil},
		{"api host", func(c *Config) { c.API.HostIP = "0.0.0.0:6385" }, []string{"[api] host_ip"}},
		{"api empty host", func(c *Config) { c.API.HostIP = "" }, []string{"[api] host_ip"}},
		{"api port 0", func(c *Config) { c.API.Port = 0 }, []string{"[api] port: must be 1 to 65535 (got 0)"}},
		{"api port high", func(c *Config) { c.API.Port = 65536 }, []string{"[api] port"}},
		{"api auth", func(c *Config) { c.API.AuthStrategy = "kerberos" },
			[]string{`[api] auth_strategy: must be one of noauth, http_basic, keystone (got "kerberos")`}},
		{"keystone needs a service user", func(c *Config) { c.API.AuthStrategy = "keystone" },
			[]string{"[keystone_authtoken] auth_url: must not be empty", "[keystone_authtoken] username: must not be empty",
				"[keystone_authtoken] password: must not be empty"}},
		{"keystone ok", func(c *Config) {
			c.API.AuthStrategy = "keystone"
			c.KeystoneAuthtoken.AuthURL = "http://127.0.0.1:5000/v3"
			c.KeystoneAuthtoken.Username, c.KeystoneAuthtoken.Password = "metalpower", "pw"
		}, nil},
		{"keystone application credential", func(c *Config) {
			c.API.AuthStrategy = "keystone"
			c.KeystoneAuthtoken.AuthURL = "https://keystone/v3"
			c.KeystoneAuthtoken.AuthType = "v3applicationcredential"
		}, []string{"[keystone_authtoken] application_credential_id: must not be empty",
			"[keystone_authtoken] application_credential_secret: must not be empty"}},
		{"keystone bad values", func(c *Config) {
			c.API.AuthStrategy = "keystone"
			c.API.RBACServiceProjectName = ""
			k := &c.KeystoneAuthtoken
			k.AuthURL, k.WWWAuthenticateURI = "keystone:5000", "ftp://user:hunter2@keystone"
			k.AuthType, k.Interface = "token", "private"
			k.TokenCacheTime, k.HTTPConnectTimeout = -2, 0
			k.CAFile = "/nonexistent/ca.pem"
		}, []string{`[keystone_authtoken] auth_url: must be an http:// or https:// URL (got "keystone:5000")`,
			`[keystone_authtoken] www_authenticate_uri: must be an http:// or https:// URL (got "ftp://user:******@keystone")`,
			"[keystone_authtoken] auth_type: must be one of password, v3applicationcredential", "[keystone_authtoken] interface",
			"[keystone_authtoken] token_cache_time: must be at least -1", "[keystone_authtoken] http_connect_timeout",
			"[keystone_authtoken] cafile", "[api] rbac_service_project_name: must not be empty"}},
		{"keystone section ignored without keystone", func(c *Config) { c.KeystoneAuthtoken.TokenCacheTime = -5 }, nil},
		{"api htpasswd", func(c *Config) { c.API.AuthStrategy = "http_basic"; c.API.HTTPBasicAuthUserFile = pem }, nil},
		{"api htpasswd missing", func(c *Config) { c.API.AuthStrategy = "http_basic"; c.API.HTTPBasicAuthUserFile = missing },
			[]string{"[api] http_basic_auth_user_file", missing}},
		{"api htpasswd unused", func(c *Config) { c.API.HTTPBasicAuthUserFile = missing }, nil},

		{"log level", func(c *Config) { c.Log.Level = "INFO" }, []string{`[log] level: must be one of debug, info, warn, error (got "INFO")`}},
		{"log format", func(c *Config) { c.Log.Format = "text" }, []string{"[log] format"}},

		{"all problems reported", func(c *Config) {
			c.Conductor.PowerStateChangeTimeout = 0
			c.API.Port = 0
			c.Log.Level = ""
		}, []string{"[conductor] power_state_change_timeout", "[api] port", "[log] level"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Default()
			tt.modify(&c)
			err := c.Validate()
			if tt.want == nil {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatal("Validate() = nil, want an error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func setPassword(c *Config) {
	c.Nova.Username = "metalpower"
	c.Nova.Password = "pw"
}

func TestValidateFileErrorUnwraps(t *testing.T) {
	c := Default()
	c.API.AuthStrategy = "http_basic"
	c.API.HTTPBasicAuthUserFile = filepath.Join(t.TempDir(), "htpasswd")
	if err := c.Validate(); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Validate() = %v, want an error wrapping os.ErrNotExist", err)
	}
}

func TestRedactURL(t *testing.T) {
	tests := []struct {
		in, want string
	}{
		{"sqlite://.data/metalpower.db", "sqlite://.data/metalpower.db"},
		{"sqlite:///var/lib/a:b@c.db", "sqlite:///var/lib/a:b@c.db"},
		{"postgres://h/db", "postgres://h/db"},
		{"postgres://user@h/db", "postgres://user@h/db"},
		{"postgres://user:hunter2@h:5432/db?sslmode=disable", "postgres://user:******@h:5432/db?sslmode=disable"},
		{"postgresql://user:p%40ss@h/db", "postgresql://user:******@h/db"},
		{"postgres://h/db?sslmode=require&password=hunter2", "postgres://h/db?sslmode=require&password=******"},
		{"postgres://h:5432/db?application_name=a@b", "postgres://h:5432/db?application_name=a@b"},
		// An unescaped '&' in a password: the piece after it is no
		// parameter (no '='), so it is masked with the password.
		{"postgres://h/db?user=metal&password=MAR&MAR", "postgres://h/db?user=metal&password=******"},
		{"postgres://h/db?password=a&b&sslmode=disable", "postgres://h/db?password=******&sslmode=disable"},
		// Unparseable by net/url (unescaped '#'/'/' in the password):
		// everything between the user and the last '@' is masked.
		{"postgres://user:hun#ter/2@h/db", "postgres://user:******@h/db"},
		{"postgres://user:hunter2@h/db%zz", "postgres://user:******@h/db%zz"},
		{"https://admin:hunter2@keystone/v3", "https://admin:******@keystone/v3"},
		{"postgres:/user:hunter2@h/db", "postgres:******@h/db"},
		{"", ""},
	}
	for _, tt := range tests {
		if got := redactURL(tt.in); got != tt.want {
			t.Errorf("redactURL(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// TestSecretsNeverShown sets every secret to a recognisable value and
// checks it appears nowhere a configuration or its problems are printed.
func TestSecretsNeverShown(t *testing.T) {
	const secret = "hunter2"
	c := Default()
	c.Nova.Password = secret
	c.Nova.ApplicationCredentialSecret = secret
	c.Temporal.APIKey = secret
	c.Temporal.PayloadEncryptionKeys = secret
	c.Temporal.CodecAuthToken = secret
	c.KeystoneAuthtoken.Password = secret
	c.KeystoneAuthtoken.ApplicationCredentialSecret = secret
	c.Database.URL = "postgres://metalpower:" + secret + "@db/metalpower?password=" + secret
	c.Nova.AuthURL = "https://admin:" + secret + "@keystone/v3"
	// A driver's secret option (sections_test.go).
	if err := LoadEnv(&c, []string{"METALPOWER_TESTPDU_TOKEN=" + secret}); err != nil {
		t.Fatal(err)
	}
	for _, o := range Options() {
		if o.Secret && valueOf(&c, o) != secret {
			t.Fatalf("test does not set secret option %s", o.Key())
		}
	}

	if s := c.String(); strings.Contains(s, secret) || !strings.Contains(s, "******") {
		t.Errorf("String() shows a secret or no mask:\n%s", s)
	}
	r := c.Redacted()
	if r.Nova.Password != mask || r.Nova.ApplicationCredentialSecret != mask || r.Temporal.APIKey != mask {
		t.Errorf("Redacted() did not mask every secret: %+v", r)
	}
	if r.Database.URL != "postgres://metalpower:******@db/metalpower?password=******" {
		t.Errorf("Redacted() database url = %q", r.Database.URL)
	}
	if c.Nova.Password != secret {
		t.Error("Redacted() modified its receiver")
	}
	if d := Default(); d.Redacted().String() != d.String() || d.Redacted().Nova != d.Nova {
		t.Error("Redacted() changed a configuration without secrets (empty secrets must stay empty)")
	}

	// Invalid URLs are reported redacted.
	bad := c
	bad.Database.URL = "mysql://metalpower:" + secret + "@db/metalpower"
	bad.Nova.AuthURL = "ftp://admin:" + secret + "@keystone/v3"
	if err := bad.Validate(); err == nil || strings.Contains(err.Error(), secret) {
		t.Errorf("Validate() error shows a secret or is nil: %v", err)
	}

	// Environment and file errors do not echo a secret either.
	environ := []string{
		"METALPOWER_NOVA_PASSWORD=" + secret,
		"METALPOWER_NOVA_PASSWORDD=" + secret,
		"METALPOWER_TEMPORAL_API_KEY=" + secret,
		"METALPOWER_TEMPORAL_TLS=maybe",
	}
	if err := LoadEnv(&c, environ); err == nil || strings.Contains(err.Error(), secret) {
		t.Errorf("LoadEnv error shows a secret or is nil: %v", err)
	}
	for _, content := range []string{
		"[nova]\npassword = " + secret + "\n",
		"[nova]\npassword = abcdefgh" + secret + "\n",
		"[database]\nurl = postgres://u:" + secret + "@h/db\n",
		"[nova]\npassword = '" + secret + "\n",
		"[nova]\npassword = \"" + secret + "\"\nusername = \"" + "\n",
		"[nova]\npasword = \"" + secret + "\"\n",
		"[temporal]\napi_key = " + secret + "\n",
	} {
		c := Default()
		err := loadFile(&c, writeFile(t, "c.toml", content))
		if err == nil || strings.Contains(err.Error(), secret) {
			t.Errorf("loading %q: error shows a secret or is nil: %v", content, err)
		}
	}
}
