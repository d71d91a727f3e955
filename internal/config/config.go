// Package config holds the one configuration shared by every metalpower
// binary: a TOML file plus METALPOWER_<SECTION>_<OPTION> environment
// overrides. Precedence is environment, then file, then defaults.
//
// Option names follow OpenStack Ironic's where Ironic has the same knob, and
// interval and timeout options are integer seconds exactly as in Ironic, so
// operators can carry their ironic.conf values over unchanged.
//
// Every option is a field with a toml tag (its name), a help tag and, for
// secrets, a secret tag. Options, LoadEnv and Redacted are all derived from
// those tags by reflection, so documentation, environment names and
// redaction cannot drift from the struct.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"strings"

	"github.com/BurntSushi/toml"
)

// Config is the whole configuration. The zero value is not useful; start
// from Default or Load.
type Config struct {
	Conductor Conductor `toml:"conductor"`
	IPMI      IPMI      `toml:"ipmi"`
	Redfish   Redfish   `toml:"redfish"`
	Nova      Nova      `toml:"nova"`
	Database  Database  `toml:"database"`
	Temporal  Temporal  `toml:"temporal"`
	API       API       `toml:"api"`
	// KeystoneAuthtoken is keystonemiddleware's section, read when
	// [api] auth_strategy is keystone.
	KeystoneAuthtoken KeystoneAuthtoken `toml:"keystone_authtoken"`
	Log               Log               `toml:"log"`
	Debug             Debug             `toml:"debug"`

	// drivers holds the sections drivers register ([snmp]), by name:
	// pointers to structs (sections.go).
	drivers *driverValues
}

// Conductor holds the power-management options of Ironic's [conductor].
type Conductor struct {
	SyncPowerStateInterval       int    `toml:"sync_power_state_interval" help:"Interval between syncing the node power state to the database, in seconds. Set to 0 or less to disable syncing."`
	ForcePowerStateDuringSync    bool   `toml:"force_power_state_during_sync" help:"During a power state sync, set the hardware to the power state recorded in the database (true) or update the database from the hardware (false)."`
	PowerStateSyncMaxRetries     int    `toml:"power_state_sync_max_retries" help:"How many consecutive sync failures for a node are tolerated before the node is put into maintenance."`
	SyncPowerStateWorkers        int    `toml:"sync_power_state_workers" help:"Maximum number of concurrent BMC power state reads during one sync pass."`
	PowerFailureRecoveryInterval int    `toml:"power_failure_recovery_interval" help:"Interval between checking the power state of nodes put into maintenance by a power sync failure, in seconds; a node leaves maintenance once its power state is read successfully. Set to 0 to disable."`
	PowerStateChangeTimeout      int    `toml:"power_state_change_timeout" help:"Seconds to wait for a power operation to reach the desired power state before it is considered failed."`
	SoftPowerOffTimeout          int    `toml:"soft_power_off_timeout" help:"Timeout of soft reboot and soft power off operations, in seconds."`
	ConductorGroup               string `toml:"conductor_group" help:"Conductor group (BMC network segment) this worker serves, as Ironic's: it runs the power changes, syncs and BMC checks of the nodes whose conductor_group matches (case-insensitive), and only those. Empty: the default group, whose workers also run the sync and recovery passes that hand each group its share."`
	PowerConflictWindow          int    `toml:"power_conflict_window" help:"A power state changed back within this many seconds after metalpower changed it (by a new request, or behind its back as the sync finds) is recorded in the node history as a conflict, most likely with the compute service's power sync. 0 disables."`
}

// IPMI holds Ironic's [ipmi] options that pace and retry BMC commands.
type IPMI struct {
	MinCommandInterval  int `toml:"min_command_interval" help:"Minimum time between IPMI commands sent to one BMC, in seconds. Some BMCs crash when driven faster; 5 is recommended."`
	CommandRetryTimeout int `toml:"command_retry_timeout" help:"Maximum time to retry a single retryable IPMI command (for example when the BMC is busy), in seconds."`
}

// Redfish holds Ironic's [redfish] options for power-on conflicts.
type Redfish struct {
	PowerOnConflictRetryAttempts int `toml:"power_on_conflict_retry_attempts" help:"Maximum number of retries of a power-on the BMC rejects with HTTP 409 ActionParameterValueConflict (seen on Dell iDRAC10 shortly after a power-off). Set to 0 to disable retrying."`
	PowerOnConflictRetryInterval int `toml:"power_on_conflict_retry_interval" help:"Seconds to wait between power-on retries triggered by an HTTP 409 from the BMC."`
}

// Nova holds Ironic's [nova] option and the keystoneauth options used to
// send power state change notifications to the Compute service.
type Nova struct {
	SendPowerNotifications      bool   `toml:"send_power_notifications" help:"Send power state change notifications to Nova. Set to false in deployments without the Compute service."`
	AuthURL                     string `toml:"auth_url" secret:"url" help:"Keystone URL used to authenticate to Nova. When empty, no notifications are sent."`
	Username                    string `toml:"username" help:"Keystone user name (password authentication)."`
	Password                    string `toml:"password" secret:"true" help:"Keystone password (password authentication)."`
	ProjectName                 string `toml:"project_name" help:"Keystone project to scope the token to."`
	UserDomainName              string `toml:"user_domain_name" help:"Keystone domain of the user."`
	ProjectDomainName           string `toml:"project_domain_name" help:"Keystone domain of the project."`
	RegionName                  string `toml:"region_name" help:"Region of the Nova endpoint in the service catalog."`
	Interface                   string `toml:"interface" help:"Service catalog interface of the Nova endpoint: public, internal or admin."`
	ApplicationCredentialID     string `toml:"application_credential_id" help:"Keystone application credential ID (application credential authentication)."`
	ApplicationCredentialSecret string `toml:"application_credential_secret" secret:"true" help:"Keystone application credential secret (application credential authentication)."`
}

// Database says where nodes are stored.
type Database struct {
	URL string `toml:"url" secret:"url" help:"Node store: sqlite://<path> or postgres://user:password@host/db. A password in the URL is masked when the configuration is printed."`
}

// Temporal says how to reach the Temporal frontend.
type Temporal struct {
	Address               string `toml:"address" help:"Temporal frontend as host:port (or a gRPC resolver target such as dns:///host:port)."`
	Namespace             string `toml:"namespace" help:"Temporal namespace."`
	TaskQueue             string `toml:"task_queue" help:"Task queue the workers poll and the starters submit to."`
	TLS                   bool   `toml:"tls" help:"Connect to Temporal with TLS. The tls_* options take effect only when this is true."`
	TLSCAFile             string `toml:"tls_ca_file" help:"PEM file of CA certificates to verify the server with; empty means the system roots."`
	TLSCertFile           string `toml:"tls_cert_file" help:"PEM client certificate for mutual TLS; requires tls_key_file."`
	TLSKeyFile            string `toml:"tls_key_file" help:"PEM private key of tls_cert_file."`
	TLSServerName         string `toml:"tls_server_name" help:"Server name to verify the server certificate against, when it differs from the address host."`
	TLSInsecureSkipVerify bool   `toml:"tls_insecure_skip_verify" help:"Do not verify the server certificate. For testing only."`
	APIKey                string `toml:"api_key" secret:"true" help:"API key sent to Temporal (for example Temporal Cloud); empty for none."`
	PayloadEncryptionKeys string `toml:"payload_encryption_keys" secret:"true" help:"Encrypt every payload and failure message (AES-256-GCM): comma-separated <key-id>:<base64 32-byte key>; the first encrypts, all decrypt (rotation). Empty: off. Every worker, starter and API needs the same keys."`
	CodecListen           string `toml:"codec_listen" help:"host:port the codec server (starter codec-server) listens on, for the Web UI and temporal --codec-endpoint."`
	CodecCORSOrigins      string `toml:"codec_cors_origins" help:"Comma-separated Web UI origins allowed to call the codec server."`
	CodecAuthToken        string `toml:"codec_auth_token" secret:"true" help:"Bearer token the codec server requires; empty only on a loopback codec_listen."`
	DeploymentName        string `toml:"deployment_name" help:"Worker Deployment the workers join (Worker Deployment Versioning: each workflow runs on the build that may run it, see Upgrading). Empty: unversioned workers."`
	BuildID               string `toml:"build_id" help:"This build's ID within deployment_name. Empty: the ID linked into the binary (make build: its git revision), as starter version prints."`
}

// API holds the options of the REST API server, after Ironic's [api] and
// [DEFAULT] auth_strategy.
type API struct {
	HostIP                string `toml:"host_ip" help:"IP address or host name the API listens on."`
	Port                  int    `toml:"port" help:"TCP port the API listens on."`
	AuthStrategy          string `toml:"auth_strategy" help:"API authentication: noauth, http_basic or keystone (tokens validated with Keystone as [keystone_authtoken] says, and Ironic's default access policy enforced)."`
	HTTPBasicAuthUserFile string `toml:"http_basic_auth_user_file" help:"Apache htpasswd file used when auth_strategy is http_basic."`
	// Ironic keeps these two in [DEFAULT].
	RBACServiceRoleElevatedAccess bool   `toml:"rbac_service_role_elevated_access" help:"With auth_strategy keystone: users with the service role in the project rbac_service_project_name act on every node like a system-scoped member, whatever its owner or lessee (Ironic's option). Off: a service user acts only on the nodes its project owns or leases."`
	RBACServiceProjectName        string `toml:"rbac_service_project_name" help:"Name of the project of the cloud's service users, for rbac_service_role_elevated_access."`
}

// KeystoneAuthtoken holds keystonemiddleware's [keystone_authtoken]
// options: how the API validates users' tokens, and the service user it
// logs in as to do so.
type KeystoneAuthtoken struct {
	WWWAuthenticateURI          string `toml:"www_authenticate_uri" secret:"url" help:"Keystone URL that unauthenticated clients are sent to, in the WWW-Authenticate header of a 401. Empty: auth_url."`
	AuthURL                     string `toml:"auth_url" secret:"url" help:"Keystone URL the API logs in at as its service user, to validate tokens."`
	AuthType                    string `toml:"auth_type" help:"How the service user logs in: password or v3applicationcredential."`
	Username                    string `toml:"username" help:"Service user name (auth_type password)."`
	Password                    string `toml:"password" secret:"true" help:"Service user password (auth_type password)."`
	ProjectName                 string `toml:"project_name" help:"Project the service user's token is scoped to (auth_type password)."`
	UserDomainName              string `toml:"user_domain_name" help:"Domain of the service user."`
	ProjectDomainName           string `toml:"project_domain_name" help:"Domain of project_name."`
	ApplicationCredentialID     string `toml:"application_credential_id" help:"Application credential ID (auth_type v3applicationcredential)."`
	ApplicationCredentialSecret string `toml:"application_credential_secret" secret:"true" help:"Application credential secret (auth_type v3applicationcredential)."`
	RegionName                  string `toml:"region_name" help:"Region of the identity endpoint in the service catalog; tokens are validated there (auth_url when the catalog has none)."`
	Interface                   string `toml:"interface" help:"Catalog interface of the identity endpoint: public, internal or admin."`
	CAFile                      string `toml:"cafile" help:"PEM file of CA certificates to verify Keystone's certificate with; empty means the system roots."`
	Insecure                    bool   `toml:"insecure" help:"Do not verify Keystone's certificate. For testing only."`
	TokenCacheTime              int    `toml:"token_cache_time" help:"Seconds a token's validation (valid or not) is cached, never past the token's expiry; a revoked token is refused at the latest this long after its revocation. -1 disables the cache."`
	HTTPConnectTimeout          int    `toml:"http_connect_timeout" help:"Seconds each request to Keystone may take; a Keystone that does not answer in time makes the API answer 503."`
}

// Debug holds the options for looking inside a running process.
type Debug struct {
	Pprof bool `toml:"pprof" help:"Serve Go's net/http/pprof profiles (CPU, heap, goroutines, mutex and block) under /debug/pprof/: on the worker's metrics listener (-metrics-addr), and on the API's listener behind its authentication. Off by default: profiles show internals and cost CPU while taken."`
}

// Log holds the logging options.
type Log struct {
	Level  string `toml:"level" help:"Minimum level logged: debug, info, warn or error."`
	Format string `toml:"format" help:"Log format: json, console, or auto (console on a terminal, JSON otherwise)."`
}

// Default returns the built-in defaults, which are Ironic's where Ironic has
// the option.
func Default() Config {
	return Config{
		Conductor: Conductor{
			SyncPowerStateInterval:    120,
			ForcePowerStateDuringSync: true,
			PowerStateSyncMaxRetries:  3,
			// Ironic uses 8 threads; a sync pass here only waits on BMC
			// network round trips, so more concurrency is cheap: 10,000
			// BMCs answering in 100 ms are read in about 1 s of waiting.
			SyncPowerStateWorkers:        1000,
			PowerFailureRecoveryInterval: 300,
			PowerStateChangeTimeout:      60,
			SoftPowerOffTimeout:          600,
			// Nova's own power sync runs every 600 s by default.
			PowerConflictWindow: 900,
		},
		IPMI: IPMI{
			MinCommandInterval:  5,
			CommandRetryTimeout: 60,
		},
		Redfish: Redfish{
			PowerOnConflictRetryAttempts: 6,
			PowerOnConflictRetryInterval: 10,
		},
		Nova: Nova{
			SendPowerNotifications: true,
			UserDomainName:         "Default",
			ProjectDomainName:      "Default",
			Interface:              "internal",
		},
		Database: Database{
			URL: "sqlite://.data/metalpower.db",
		},
		Temporal: Temporal{
			Address:   "127.0.0.1:7233",
			Namespace: "default",
			TaskQueue: "metalpower",
			// The codec server beside the dev server's Web UI.
			CodecListen:      "127.0.0.1:8081",
			CodecCORSOrigins: "http://127.0.0.1:8233",
		},
		API: API{
			HostIP:                 "0.0.0.0",
			Port:                   6385,
			AuthStrategy:           "noauth",
			HTTPBasicAuthUserFile:  "/etc/metalpower/htpasswd",
			RBACServiceProjectName: "service",
		},
		KeystoneAuthtoken: KeystoneAuthtoken{
			AuthType:          "password",
			UserDomainName:    "Default",
			ProjectDomainName: "Default",
			Interface:         "internal",
			TokenCacheTime:    300,
			// keystonemiddleware has no bound by default; a hung Keystone
			// would hang every request.
			HTTPConnectTimeout: 10,
		},
		Log: Log{
			Level:  "info",
			Format: "auto",
		},
	}
}

// Load returns the defaults overlaid with the TOML file at path (skipped
// when path is "") and then with the METALPOWER_* environment variables,
// and validates the result.
//
// A missing file is an error when a path was given: silently running on
// defaults because of a wrong path is worse than not starting. Unknown keys
// in the file are errors too, so a misspelt option cannot pass unnoticed.
func Load(path string) (Config, error) {
	c := Default()
	if path != "" {
		if err := loadFile(&c, path); err != nil {
			return Config{}, err
		}
	}
	if err := LoadEnv(&c, os.Environ()); err != nil {
		return Config{}, err
	}
	if err := c.Validate(); err != nil {
		return Config{}, err
	}
	return c, nil
}

func loadFile(c *Config, path string) error {
	md, err := toml.DecodeFile(path, c)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("config file %s does not exist: %w", path, err)
		}
		// A syntax error message can quote the offending text, which may be
		// a secret written without quotes; report only where it is.
		var pe toml.ParseError
		if errors.As(err, &pe) && isSecretKey(pe.LastKey) {
			return fmt.Errorf("config file %s: line %d: invalid value for secret option %s (not shown)", path, pe.Position.Line, pe.LastKey)
		}
		return fmt.Errorf("config file %s: %w", path, err)
	}
	unknown, err := decodeDriverSections(c, path)
	if err != nil {
		return fmt.Errorf("config file %s: %w", path, err)
	}
	for _, k := range md.Undecoded() {
		if !isDriverSection(k[0]) {
			unknown = append(unknown, k.String())
		}
	}
	if keys := unknown; len(keys) > 0 {
		return fmt.Errorf("config file %s: unknown options (misspelt?): %s", path, strings.Join(keys, ", "))
	}
	return nil
}

// isSecretKey reports whether key ("section.name", as toml reports keys)
// names an option whose value must not be shown.
func isSecretKey(key string) bool {
	var c Config
	for _, f := range fields(&c) {
		if f.secret != "" && f.Section+"."+f.Name == key {
			return true
		}
	}
	return false
}

// Redacted returns a copy of c that is safe to print or log: every
// non-empty secret is replaced by "******", and the password inside URL
// options (such as a PostgreSQL database URL) is masked.
func (c Config) Redacted() Config {
	c.cloneDrivers()
	for _, f := range fields(&c) {
		switch f.secret {
		case "true":
			if f.value.String() != "" {
				f.value.SetString(mask)
			}
		case "url":
			f.value.SetString(redactURL(f.value.String()))
		}
	}
	return c
}

// String renders the redacted configuration as TOML, so that printing a
// Config (for example at startup or in a test failure) never shows a secret.
func (c Config) String() string {
	var buf bytes.Buffer
	r := c.Redacted()
	if err := toml.NewEncoder(&buf).Encode(r); err != nil {
		// Config holds only ints, bools and strings, which always encode.
		return "config: " + err.Error()
	}
	if err := encodeDriverSections(&buf, r); err != nil {
		return "config: " + err.Error()
	}
	return buf.String()
}

// mask replaces secret values wherever they would be shown.
const mask = "******"

// redactURL masks the password of a URL's userinfo and any password query
// parameter (libpq and pgx accept one). It edits the raw string rather than
// re-encoding a parsed URL, so the rest reads exactly as the operator wrote
// it. The userinfo is taken to end at the last '@' before the query,
// wherever net/url would stop (a password may hold an unescaped '/' or
// '#'): when unsure, mask more.
func redactURL(raw string) string {
	prefix, rest := "", raw
	if i := strings.Index(raw, "://"); i >= 0 {
		prefix, rest = raw[:i+3], raw[i+3:]
	}
	// An '@' in a query (application_name=a@b) is not userinfo; a URL
	// net/url cannot parse has no trustworthy query, so all of it counts.
	end := len(rest)
	if _, err := url.Parse(raw); err == nil {
		// A query needs key=value before an '@' in it; "pa?ss@host" is a
		// password with a '?'.
		if q := strings.Index(rest, "?"); q >= 0 {
			if at := strings.LastIndex(rest, "@"); at < q || strings.Contains(rest[q:at], "=") {
				end = q
			}
		}
	}
	// "scheme:///path" has no authority, so no userinfo (sqlite paths).
	if at := strings.LastIndex(rest[:end], "@"); at >= 0 && !strings.HasPrefix(rest, "/") {
		if user, _, ok := strings.Cut(rest[:at], ":"); ok {
			rest = user + ":" + mask + rest[at:]
		}
	}
	if base, query, ok := strings.Cut(rest, "?"); ok {
		rest = base + "?" + redactQuery(query)
	}
	return prefix + rest
}

// redactQuery masks the value of every password parameter of a raw query.
// A piece without '=' after a password cannot be a parameter of its own:
// it is taken as part of the password (an unescaped '&' in it), and masked
// with it.
func redactQuery(query string) string {
	if query == "" {
		return query
	}
	var out []string
	inPassword := false
	for _, p := range strings.Split(query, "&") {
		k, _, ok := strings.Cut(p, "=")
		switch {
		case ok && strings.EqualFold(k, "password"):
			out, inPassword = append(out, k+"="+mask), true
		case !ok && inPassword:
			// Part of the password: already masked.
		default:
			out, inPassword = append(out, p), false
		}
	}
	return strings.Join(out, "&")
}
