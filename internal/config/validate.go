package config

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"

	"github.com/metalpower/metalpower/internal/node"
)

// Validate reports every invalid value at once (joined with errors.Join),
// each message naming the option, for example
//
//	[conductor] power_state_change_timeout: must be at least 2 (got 1)
//
// Minimums are Ironic's where Ironic has one. Files named by options are
// checked to exist when they will be used, so a wrong path fails at startup
// rather than at the first TLS handshake or API request. Messages never
// contain a secret: URLs are shown redacted.
func (c Config) Validate() error {
	var v validator
	v.conductor(c.Conductor)
	v.ipmi(c.IPMI)
	v.redfish(c.Redfish)
	v.nova(c.Nova)
	v.database(c.Database)
	v.temporal(c.Temporal)
	v.api(c.API)
	if c.API.AuthStrategy == "keystone" {
		v.keystoneAuthtoken(c.KeystoneAuthtoken)
	}
	v.log(c.Log)
	return errors.Join(v.errs...)
}

// validator collects problems; each method checks one section.
type validator struct {
	errs []error
}

func (v *validator) failf(section, name, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	v.errs = append(v.errs, fmt.Errorf("[%s] %s: %s", section, name, msg))
}

func (v *validator) atLeast(section, name string, got, min int) {
	if got < min {
		v.failf(section, name, "must be at least %d (got %d)", min, got)
	}
}

func (v *validator) oneOf(section, name, got string, allowed ...string) {
	for _, a := range allowed {
		if got == a {
			return
		}
	}
	v.failf(section, name, "must be one of %s (got %q)", strings.Join(allowed, ", "), got)
}

func (v *validator) notEmpty(section, name, got string) {
	if got == "" {
		v.failf(section, name, "must not be empty")
	}
}

// readableFile checks that path names a regular file this process can open.
func (v *validator) readableFile(section, name, path string) {
	f, err := os.Open(path)
	if err != nil {
		// The *PathError names the path and the reason.
		v.errs = append(v.errs, fmt.Errorf("[%s] %s: %w", section, name, err))
		return
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		v.errs = append(v.errs, fmt.Errorf("[%s] %s: %w", section, name, err))
		return
	}
	if !fi.Mode().IsRegular() {
		v.failf(section, name, "%s is not a regular file", path)
	}
}

func (v *validator) conductor(c Conductor) {
	const s = "conductor"
	// sync_power_state_interval has no minimum: 0 or less disables the sync.
	v.atLeast(s, "power_state_sync_max_retries", c.PowerStateSyncMaxRetries, 0)
	v.atLeast(s, "sync_power_state_workers", c.SyncPowerStateWorkers, 1)
	v.atLeast(s, "power_failure_recovery_interval", c.PowerFailureRecoveryInterval, 0)
	v.atLeast(s, "power_state_change_timeout", c.PowerStateChangeTimeout, 2)
	v.atLeast(s, "soft_power_off_timeout", c.SoftPowerOffTimeout, 1)
	v.atLeast(s, "power_conflict_window", c.PowerConflictWindow, 0)
	if _, err := node.ConductorGroup(c.ConductorGroup); err != nil {
		v.failf(s, "conductor_group", "must be at most 255 letters, digits, '_', '-' or '.' (got %q)", c.ConductorGroup)
	}
}

func (v *validator) ipmi(c IPMI) {
	v.atLeast("ipmi", "min_command_interval", c.MinCommandInterval, 0)
	v.atLeast("ipmi", "command_retry_timeout", c.CommandRetryTimeout, 0)
}

func (v *validator) redfish(c Redfish) {
	v.atLeast("redfish", "power_on_conflict_retry_attempts", c.PowerOnConflictRetryAttempts, 0)
	v.atLeast("redfish", "power_on_conflict_retry_interval", c.PowerOnConflictRetryInterval, 1)
}

func (v *validator) nova(c Nova) {
	const s = "nova"
	v.oneOf(s, "interface", c.Interface, "public", "internal", "admin")
	if c.AuthURL == "" {
		// Notifications are then disabled at runtime.
		return
	}
	v.httpURL(s, "auth_url", c.AuthURL, true)
	if !c.SendPowerNotifications {
		return
	}
	password := c.Username != "" && c.Password != ""
	appCred := c.ApplicationCredentialID != "" && c.ApplicationCredentialSecret != ""
	if !password && !appCred {
		v.failf(s, "auth_url", "is set, so set [nova] username and password, or [nova] application_credential_id and application_credential_secret")
	}
}

func (v *validator) database(c Database) {
	const s = "database"
	switch {
	case strings.HasPrefix(c.URL, "sqlite://"):
		if strings.TrimPrefix(c.URL, "sqlite://") == "" {
			v.failf(s, "url", "sqlite:// needs a file path, e.g. sqlite:///var/lib/metalpower/metalpower.db")
		}
	case strings.HasPrefix(c.URL, "postgres://"), strings.HasPrefix(c.URL, "postgresql://"):
	default:
		v.failf(s, "url", "must start with sqlite://, postgres:// or postgresql:// (got %q)", redactURL(c.URL))
	}
}

func (v *validator) temporal(c Temporal) {
	const s = "temporal"
	if err := checkAddress(c.Address); err != nil {
		v.failf(s, "address", "%v", err)
	}
	v.notEmpty(s, "namespace", c.Namespace)
	v.notEmpty(s, "task_queue", c.TaskQueue)
	if c.DeploymentName != "" && !deploymentNameRE.MatchString(c.DeploymentName) {
		v.failf(s, "deployment_name", "must be 1-200 letters, digits, '-' or '_' (got %q)", c.DeploymentName)
	}
	if c.BuildID != "" && !buildIDRE.MatchString(c.BuildID) {
		v.failf(s, "build_id", "must be 1-200 letters, digits, '-', '_', '.' or '+' (got %q)", c.BuildID)
	}
	if c.BuildID != "" && c.DeploymentName == "" {
		v.failf(s, "build_id", "is set but [temporal] deployment_name is empty")
	}

	if !c.TLS {
		// A TLS setting that does nothing is almost certainly a forgotten
		// "tls = true"; better to say so than to connect in plain text.
		for _, o := range []struct {
			name string
			set  bool
		}{
			{"tls_ca_file", c.TLSCAFile != ""},
			{"tls_cert_file", c.TLSCertFile != ""},
			{"tls_key_file", c.TLSKeyFile != ""},
			{"tls_server_name", c.TLSServerName != ""},
			{"tls_insecure_skip_verify", c.TLSInsecureSkipVerify},
		} {
			if o.set {
				v.failf(s, o.name, "is set but [temporal] tls is false")
			}
		}
	}
	switch {
	case c.TLSCertFile != "" && c.TLSKeyFile == "":
		v.failf(s, "tls_key_file", "must be set when tls_cert_file is set")
	case c.TLSCertFile == "" && c.TLSKeyFile != "":
		v.failf(s, "tls_cert_file", "must be set when tls_key_file is set")
	}
	for _, f := range []struct{ name, path string }{
		{"tls_ca_file", c.TLSCAFile},
		{"tls_cert_file", c.TLSCertFile},
		{"tls_key_file", c.TLSKeyFile},
	} {
		if f.path != "" {
			v.readableFile(s, f.name, f.path)
		}
	}
}

// A worker deployment version is "<deployment_name>.<build_id>" in the
// temporal CLI, so the name must not hold the separator.
var (
	deploymentNameRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,200}$`)
	buildIDRE        = regexp.MustCompile(`^[A-Za-z0-9_.+-]{1,200}$`)
)

// checkAddress accepts host:port, and also gRPC resolver targets such as
// dns:///temporal.example.com:7233, which the Temporal SDK passes through.
func checkAddress(addr string) error {
	if scheme, target, ok := strings.Cut(addr, ":///"); ok && scheme != "" && !strings.Contains(scheme, ":") {
		if target == "" {
			return fmt.Errorf("resolver target %q has no address", addr)
		}
		return nil
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("must be host:port (got %q)", addr)
	}
	if host == "" {
		return fmt.Errorf("must be host:port with a host (got %q)", addr)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("port must be 1 to 65535 (got %q)", addr)
	}
	return nil
}

func (v *validator) api(c API) {
	const s = "api"
	if !validHost(c.HostIP) {
		v.failf(s, "host_ip", "must be an IP address or host name (got %q)", c.HostIP)
	}
	if c.Port < 1 || c.Port > 65535 {
		v.failf(s, "port", "must be 1 to 65535 (got %d)", c.Port)
	}
	v.oneOf(s, "auth_strategy", c.AuthStrategy, "noauth", "http_basic", "keystone")
	if c.AuthStrategy == "http_basic" {
		v.readableFile(s, "http_basic_auth_user_file", c.HTTPBasicAuthUserFile)
	}
	if c.AuthStrategy == "keystone" {
		v.notEmpty(s, "rbac_service_project_name", c.RBACServiceProjectName)
	}
}

func (v *validator) keystoneAuthtoken(c KeystoneAuthtoken) {
	const s = "keystone_authtoken"
	v.httpURL(s, "auth_url", c.AuthURL, true)
	v.httpURL(s, "www_authenticate_uri", c.WWWAuthenticateURI, false)
	v.oneOf(s, "auth_type", c.AuthType, "password", "v3applicationcredential")
	switch c.AuthType {
	case "password":
		v.notEmpty(s, "username", c.Username)
		v.notEmpty(s, "password", c.Password)
	case "v3applicationcredential":
		v.notEmpty(s, "application_credential_id", c.ApplicationCredentialID)
		v.notEmpty(s, "application_credential_secret", c.ApplicationCredentialSecret)
	}
	v.oneOf(s, "interface", c.Interface, "public", "internal", "admin")
	if c.CAFile != "" {
		v.readableFile(s, "cafile", c.CAFile)
	}
	v.atLeast(s, "token_cache_time", c.TokenCacheTime, -1)
	v.atLeast(s, "http_connect_timeout", c.HTTPConnectTimeout, 1)
}

// httpURL checks that raw is an http:// or https:// URL with a host.
func (v *validator) httpURL(section, name, raw string, required bool) {
	if raw == "" {
		if required {
			v.notEmpty(section, name, raw)
		}
		return
	}
	if u, err := url.Parse(raw); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		v.failf(section, name, "must be an http:// or https:// URL (got %q)", redactURL(raw))
	}
}

// validHost reports whether s is an IP address or a syntactically valid
// host name (RFC 1123 labels).
func validHost(s string) bool {
	if net.ParseIP(s) != nil {
		return true
	}
	if s == "" || len(s) > 253 {
		return false
	}
	for label := range strings.SplitSeq(strings.TrimSuffix(s, "."), ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, r := range label {
			if !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || r == '-') {
				return false
			}
		}
	}
	return true
}

func (v *validator) log(c Log) {
	v.oneOf("log", "level", c.Level, "debug", "info", "warn", "error")
	v.oneOf("log", "format", c.Format, "auto", "json", "console")
}
