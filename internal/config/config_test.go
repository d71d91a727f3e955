package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// clearEnv removes every METALPOWER_* variable for the duration of the test,
// so that Load sees only what the test sets.
func clearEnv(t *testing.T) {
	t.Helper()
	for _, kv := range os.Environ() {
		key, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(key, EnvPrefix) {
			t.Setenv(key, "") // registers the restore
			os.Unsetenv(key)
		}
	}
}

// writeFile writes content to a file in a fresh temporary directory and
// returns its path.
func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestDefaults(t *testing.T) {
	// Ironic's defaults, except where metalpower deliberately differs
	// (sync_power_state_workers: Ironic 8) or has no Ironic counterpart.
	want := map[string]string{
		"[conductor] sync_power_state_interval":              "120",
		"[conductor] force_power_state_during_sync":          "true",
		"[conductor] power_state_sync_max_retries":           "3",
		"[conductor] sync_power_state_workers":               "1000",
		"[conductor] power_failure_recovery_interval":        "300",
		"[conductor] power_state_change_timeout":             "60",
		"[conductor] soft_power_off_timeout":                 "600",
		"[conductor] conductor_group":                        "",
		"[conductor] power_conflict_window":                  "900",
		"[ipmi] min_command_interval":                        "5",
		"[ipmi] command_retry_timeout":                       "60",
		"[redfish] power_on_conflict_retry_attempts":         "6",
		"[redfish] power_on_conflict_retry_interval":         "10",
		"[nova] send_power_notifications":                    "true",
		"[nova] auth_url":                                    "",
		"[nova] username":                                    "",
		"[nova] password":                                    "",
		"[nova] project_name":                                "",
		"[nova] user_domain_name":                            "Default",
		"[nova] project_domain_name":                         "Default",
		"[nova] region_name":                                 "",
		"[nova] interface":                                   "internal",
		"[nova] application_credential_id":                   "",
		"[nova] application_credential_secret":               "",
		"[database] url":                                     "sqlite://.data/metalpower.db",
		"[temporal] address":                                 "127.0.0.1:7233",
		"[temporal] namespace":                               "default",
		"[temporal] task_queue":                              "metalpower",
		"[temporal] tls":                                     "false",
		"[temporal] tls_ca_file":                             "",
		"[temporal] tls_cert_file":                           "",
		"[temporal] tls_key_file":                            "",
		"[temporal] tls_server_name":                         "",
		"[temporal] tls_insecure_skip_verify":                "false",
		"[temporal] api_key":                                 "",
		"[temporal] payload_encryption_keys":                 "",
		"[temporal] codec_listen":                            "127.0.0.1:8081",
		"[temporal] codec_cors_origins":                      "http://127.0.0.1:8233",
		"[temporal] codec_auth_token":                        "",
		"[temporal] deployment_name":                         "",
		"[temporal] build_id":                                "",
		"[api] host_ip":                                      "0.0.0.0",
		"[api] port":                                         "6385",
		"[api] auth_strategy":                                "noauth",
		"[api] http_basic_auth_user_file":                    "/etc/metalpower/htpasswd",
		"[api] rbac_service_role_elevated_access":            "false",
		"[api] rbac_service_project_name":                    "service",
		"[keystone_authtoken] www_authenticate_uri":          "",
		"[keystone_authtoken] auth_url":                      "",
		"[keystone_authtoken] auth_type":                     "password",
		"[keystone_authtoken] username":                      "",
		"[keystone_authtoken] password":                      "",
		"[keystone_authtoken] project_name":                  "",
		"[keystone_authtoken] user_domain_name":              "Default",
		"[keystone_authtoken] project_domain_name":           "Default",
		"[keystone_authtoken] application_credential_id":     "",
		"[keystone_authtoken] application_credential_secret": "",
		"[keystone_authtoken] region_name":                   "",
		"[keystone_authtoken] interface":                     "internal",
		"[keystone_authtoken] cafile":                        "",
		"[keystone_authtoken] insecure":                      "false",
		"[keystone_authtoken] token_cache_time":              "300",
		"[keystone_authtoken] http_connect_timeout":          "10",
		"[log] level":                                        "info",
		"[log] format":                                       "auto",
		"[debug] pprof":                                      "false",
		// The test driver's section (sections_test.go).
		"[testpdu] power_timeout": "10",
		"[testpdu] token":         "",
	}
	opts := Options()
	if len(opts) != len(want) {
		t.Errorf("Options() has %d options, want %d", len(opts), len(want))
	}
	for _, o := range opts {
		w, ok := want[o.Key()]
		if !ok {
			t.Errorf("unexpected option %s", o.Key())
			continue
		}
		if o.Default != w {
			t.Errorf("%s default = %q, want %q", o.Key(), o.Default, w)
		}
	}
	if err := Default().Validate(); err != nil {
		t.Errorf("Default().Validate() = %v", err)
	}
}

func TestOptionsComplete(t *testing.T) {
	envs := make(map[string]bool)
	for _, o := range Options() {
		if o.Section == "" || o.Name == "" {
			t.Errorf("option %+v lacks a toml tag", o)
		}
		if want := "METALPOWER_" + strings.ToUpper(o.Section+"_"+o.Name); o.Env != want {
			t.Errorf("%s env = %q, want %q", o.Key(), o.Env, want)
		}
		if envs[o.Env] {
			t.Errorf("env name %s used twice", o.Env)
		}
		envs[o.Env] = true
		if len(o.Help) < 10 || !strings.HasSuffix(o.Help, ".") {
			t.Errorf("%s help text %q is missing or not a sentence", o.Key(), o.Help)
		}
		switch o.Type {
		case "int", "bool", "string":
		default:
			t.Errorf("%s has unsupported type %s", o.Key(), o.Type)
		}
	}
	secrets := []string{"[nova] password", "[nova] application_credential_secret", "[temporal] api_key",
		"[temporal] payload_encryption_keys", "[temporal] codec_auth_token",
		"[keystone_authtoken] password", "[keystone_authtoken] application_credential_secret", "[testpdu] token"}
	for _, o := range Options() {
		want := false
		for _, s := range secrets {
			want = want || o.Key() == s
		}
		if o.Secret != want {
			t.Errorf("%s Secret = %v, want %v", o.Key(), o.Secret, want)
		}
	}
}

// TestEveryOptionSettable sets every option through the environment and
// through a file, and checks it landed in the right field.
func TestEveryOptionSettable(t *testing.T) {
	for _, o := range Options() {
		var value string
		switch o.Type {
		case "int":
			value = "4242"
		case "bool":
			value = strconvNot(o.Default)
		default:
			value = "x-" + o.Name
		}

		c := Default()
		if err := LoadEnv(&c, []string{o.Env + "=" + value}); err != nil {
			t.Errorf("%s: %v", o.Env, err)
			continue
		}
		if got := valueOf(&c, o); got != value {
			t.Errorf("env %s: option = %q, want %q", o.Env, got, value)
		}

		tomlValue := value
		if o.Type == "string" {
			tomlValue = `"` + value + `"`
		}
		path := writeFile(t, "c.toml", "["+o.Section+"]\n"+o.Name+" = "+tomlValue+"\n")
		c = Default()
		if err := loadFile(&c, path); err != nil {
			t.Errorf("file %s: %v", o.Key(), err)
			continue
		}
		if got := valueOf(&c, o); got != value {
			t.Errorf("file %s: option = %q, want %q", o.Key(), got, value)
		}
	}
}

func strconvNot(b string) string {
	if b == "true" {
		return "false"
	}
	return "true"
}

func valueOf(c *Config, o Option) string {
	for _, f := range fields(c) {
		if f.Env == o.Env {
			return formatValue(f.value)
		}
	}
	return "<no such option>"
}

func TestLoad(t *testing.T) {
	clearEnv(t)
	path := writeFile(t, "metalpower.toml", `
[conductor]
sync_power_state_interval = 0
force_power_state_during_sync = false
sync_power_state_workers = 16

[nova]
auth_url = "https://keystone.example.com/v3"
application_credential_id = "abc"
application_credential_secret = "s3cr3t"

[database]
url = "postgres://metalpower:hunter2@db.example.com/metalpower"

[log]
level = "debug"
`)
	t.Setenv("METALPOWER_CONDUCTOR_SYNC_POWER_STATE_WORKERS", "32")
	t.Setenv("METALPOWER_LOG_FORMAT", "json")
	t.Setenv("METALPOWER_CONFIG", "ignored: not an option name")
	t.Setenv("METALPOWER_TEST_WHATEVER", "ignored: reserved for tests")

	got, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	want := Default()
	want.Conductor.SyncPowerStateInterval = 0
	want.Conductor.ForcePowerStateDuringSync = false
	want.Conductor.SyncPowerStateWorkers = 32 // env beats file
	want.Nova.AuthURL = "https://keystone.example.com/v3"
	want.Nova.ApplicationCredentialID = "abc"
	want.Nova.ApplicationCredentialSecret = "s3cr3t"
	want.Database.URL = "postgres://metalpower:hunter2@db.example.com/metalpower"
	want.Log.Level = "debug"
	want.Log.Format = "json" // env beats default
	if !equal(got, want) {
		t.Errorf("Load:\n%s\nwant:\n%s", got, want)
	}
}

func TestLoadNoFile(t *testing.T) {
	clearEnv(t)
	t.Setenv("METALPOWER_API_PORT", "8080")
	got, err := Load("")
	if err != nil {
		t.Fatal(err)
	}
	want := Default()
	want.API.Port = 8080
	if !equal(got, want) {
		t.Errorf("Load(\"\") = %+v, want %+v", got, want)
	}
}

func TestLoadErrors(t *testing.T) {
	tests := []struct {
		name    string
		file    string // TOML content; "" means no file, "-" a missing one
		env     map[string]string
		wantErr []string // substrings of the error
	}{
		{"missing file", "-", nil, []string{"does-not-exist.toml", "does not exist"}},
		{"unknown key", "[conductor]\nsync_power_state_intervall = 60\n", nil,
			[]string{"conductor.sync_power_state_intervall", "unknown"}},
		{"unknown section", "[conductr]\nsync_power_state_interval = 60\n", nil,
			[]string{"conductr"}},
		{"wrong type", "[api]\nport = \"6385\"\n", nil, []string{"api.port"}},
		{"syntax error", "[api\n", nil, []string{"c.toml", "toml: line 2"}},
		{"invalid value", "[conductor]\npower_state_change_timeout = 1\n", nil,
			[]string{"[conductor] power_state_change_timeout: must be at least 2 (got 1)"}},
		{"invalid env value", "[api]\nport = 1\n", map[string]string{"METALPOWER_API_PORT": "http"},
			[]string{"METALPOWER_API_PORT", "[api] port"}},
		{"env makes invalid", "", map[string]string{"METALPOWER_LOG_LEVEL": "verbose"},
			[]string{"[log] level: must be one of debug, info, warn, error (got \"verbose\")"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clearEnv(t)
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			var path string
			switch tt.file {
			case "":
			case "-":
				path = filepath.Join(t.TempDir(), "does-not-exist.toml")
			default:
				path = writeFile(t, "c.toml", tt.file)
			}
			_, err := Load(path)
			if err == nil {
				t.Fatal("Load succeeded, want error")
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestLoadEnv(t *testing.T) {
	tests := []struct {
		name    string
		environ []string
		check   func(Config) bool
		wantErr []string
	}{
		{"bool true", []string{"METALPOWER_TEMPORAL_TLS=true"}, func(c Config) bool { return c.Temporal.TLS }, nil},
		{"bool YES", []string{"METALPOWER_TEMPORAL_TLS=YES"}, func(c Config) bool { return c.Temporal.TLS }, nil},
		{"bool 1", []string{"METALPOWER_TEMPORAL_TLS=1"}, func(c Config) bool { return c.Temporal.TLS }, nil},
		{"bool No", []string{"METALPOWER_NOVA_SEND_POWER_NOTIFICATIONS=No"}, func(c Config) bool { return !c.Nova.SendPowerNotifications }, nil},
		{"bool 0", []string{"METALPOWER_NOVA_SEND_POWER_NOTIFICATIONS=0"}, func(c Config) bool { return !c.Nova.SendPowerNotifications }, nil},
		{"bool False", []string{"METALPOWER_NOVA_SEND_POWER_NOTIFICATIONS=False"}, func(c Config) bool { return !c.Nova.SendPowerNotifications }, nil},
		{"negative int", []string{"METALPOWER_CONDUCTOR_SYNC_POWER_STATE_INTERVAL=-1"}, func(c Config) bool { return c.Conductor.SyncPowerStateInterval == -1 }, nil},
		{"string with =", []string{"METALPOWER_DATABASE_URL=postgres://h/db?sslmode=disable"}, func(c Config) bool { return c.Database.URL == "postgres://h/db?sslmode=disable" }, nil},
		{"empty string", []string{"METALPOWER_NOVA_USER_DOMAIN_NAME="}, func(c Config) bool { return c.Nova.UserDomainName == "" }, nil},
		{"first wins", []string{"METALPOWER_API_PORT=1", "METALPOWER_API_PORT=2"}, func(c Config) bool { return c.API.Port == 1 }, nil},
		{"not ours", []string{"PATH=/bin", "METALPOWERX_API_PORT=x", "METALPOWER_CONFIG=/etc/metalpower.toml"}, func(c Config) bool { return equal(c, Default()) }, nil},
		{"test vars", []string{"METALPOWER_TEST_POSTGRES_URL=postgres://x"}, func(c Config) bool { return equal(c, Default()) }, nil},

		{"bad bool", []string{"METALPOWER_TEMPORAL_TLS=maybe"}, nil,
			[]string{"METALPOWER_TEMPORAL_TLS", "[temporal] tls", `"maybe"`}},
		{"bad int", []string{"METALPOWER_API_PORT=80a"}, nil,
			[]string{"METALPOWER_API_PORT", "[api] port", `"80a"`}},
		{"hex int", []string{"METALPOWER_IPMI_MIN_COMMAND_INTERVAL=0x5"}, nil,
			[]string{"METALPOWER_IPMI_MIN_COMMAND_INTERVAL", "[ipmi] min_command_interval"}},
		{"empty int", []string{"METALPOWER_IPMI_COMMAND_RETRY_TIMEOUT="}, nil,
			[]string{"METALPOWER_IPMI_COMMAND_RETRY_TIMEOUT", "[ipmi] command_retry_timeout"}},
		{"unknown option", []string{"METALPOWER_NOVA_AUTHURL=x"}, nil,
			[]string{"METALPOWER_NOVA_AUTHURL", "no such option in [nova]"}},
		{"unknown section", []string{"METALPOWER_KEYSTONE_AUTH_URL=x"}, nil,
			[]string{"METALPOWER_KEYSTONE_AUTH_URL", "no such section [keystone]"}},
		{"section with an underscore", []string{"METALPOWER_KEYSTONE_AUTHTOKEN_TOKEN_CACHE_TIME=30"},
			func(c Config) bool { return c.KeystoneAuthtoken.TokenCacheTime == 30 }, nil},
		{"unknown option of a section with an underscore", []string{"METALPOWER_KEYSTONE_AUTHTOKEN_AUTHURL=x"}, nil,
			[]string{"METALPOWER_KEYSTONE_AUTHTOKEN_AUTHURL", "no such option in [keystone_authtoken]"}},
		{"all errors", []string{"METALPOWER_API_PORT=x", "METALPOWER_LOG_LEVL=debug"}, nil,
			[]string{"METALPOWER_API_PORT", "METALPOWER_LOG_LEVL"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Default()
			err := LoadEnv(&c, tt.environ)
			if tt.wantErr == nil {
				if err != nil {
					t.Fatal(err)
				}
				if !tt.check(c) {
					t.Errorf("LoadEnv(%q) gave\n%s", tt.environ, c)
				}
				return
			}
			if err == nil {
				t.Fatalf("LoadEnv(%q) succeeded, want error", tt.environ)
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestStringRoundTrip(t *testing.T) {
	c := Default()
	c.Conductor.SyncPowerStateInterval = 30
	c.Temporal.TLS = true
	c.Temporal.TLSServerName = "temporal.example.com"
	// Load reads the drivers' sections too, and refuses unknown keys.
	clearEnv(t)
	back, err := Load(writeFile(t, "back.toml", c.String()))
	if err != nil {
		t.Fatalf("String() does not load: %v\n%s", err, c)
	}
	if back.String() != c.String() {
		t.Errorf("round trip:\n%s\nwant:\n%s", back, c)
	}
}

// equal compares configurations option by option: a Config holds its
// drivers' sections behind a pointer.
func equal(a, b Config) bool {
	for _, d := range driverSections() {
		if a.Section(d.Section) != b.Section(d.Section) {
			return false
		}
	}
	a.drivers, b.drivers = nil, nil
	return a == b
}
