// Package deploy holds no code: its test checks the Docker Compose
// deployment (docker-compose.yml, deploy/) against the configuration
// options, so the two cannot drift apart.
package deploy

import (
	"bufio"
	"bytes"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/metalpower/metalpower/internal/config"
)

// root is the repository root, where docker-compose.yml lives.
const root = "../.."

// Env files the compose file reads by default; the real ones replace them
// through POSTGRES_ENV_FILE and APP_ENV_FILE.
var envExamples = []string{"deploy/metalpower.env.example", "deploy/postgres.env.example"}

// compose is the part of a (normalized) compose file the test looks at.
type compose struct {
	Services map[string]service `yaml:"services"`
}

type service struct {
	Image       string         `yaml:"image"`
	Command     any            `yaml:"command"`
	Environment map[string]any `yaml:"environment"` // `docker-compose config` output is a map
	Ports       []any          `yaml:"ports"`
	Profiles    []string       `yaml:"profiles"`
	DependsOn   map[string]struct {
		Condition string `yaml:"condition"`
	} `yaml:"depends_on"`
	Healthcheck *struct {
		Test []string `yaml:"test"`
	} `yaml:"healthcheck"`
	Deploy struct {
		Replicas *int `yaml:"replicas"`
	} `yaml:"deploy"`
}

// dockerCompose runs Debian's docker-compose in the repository root with
// the environment of a fresh checkout: the committed example env files.
func dockerCompose(t *testing.T, args ...string) []byte {
	t.Helper()
	bin, err := exec.LookPath("docker-compose")
	if err != nil {
		t.Fatalf("docker-compose not found (`make deps` installs Debian's docker-compose package): %v", err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Dir = root
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if k == "POSTGRES_ENV_FILE" || k == "APP_ENV_FILE" || strings.HasPrefix(k, "COMPOSE_") {
			continue
		}
		cmd.Env = append(cmd.Env, kv)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("docker-compose %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return out
}

// normalized returns `docker-compose --profile sim config`: anchors merged,
// env files read into environment, ports in long form.
func normalized(t *testing.T) compose {
	t.Helper()
	normalizedOnce.Do(func() { normalizedOut = dockerCompose(t, "--profile", "sim", "config") })
	if normalizedOut == nil {
		t.Fatal("docker-compose config failed in an earlier test")
	}
	var c compose
	if err := yaml.Unmarshal(normalizedOut, &c); err != nil {
		t.Fatalf("parse docker-compose config output: %v", err)
	}
	return c
}

var (
	normalizedOnce sync.Once
	normalizedOut  []byte
)

func TestComposeConfigValid(t *testing.T) {
	dockerCompose(t, "config", "-q")
	dockerCompose(t, "--profile", "sim", "config", "-q")
}

func TestComposeServices(t *testing.T) {
	c := normalized(t)
	for _, name := range []string{"postgres", "temporal", "temporal-ui", "worker", "api", "sim-redfish",
		"temporal-schema", "temporal-namespace", "metalpower-migrate"} {
		if _, ok := c.Services[name]; !ok {
			t.Errorf("service %s missing", name)
		}
	}
	for name, s := range c.Services {
		sim := strings.HasPrefix(name, "sim-")
		if sim != slices.Contains(s.Profiles, "sim") {
			t.Errorf("service %s: profiles %v; the sim-* services, and only they, belong to the sim profile", name, s.Profiles)
		}
	}
	if w := c.Services["worker"]; w.Deploy.Replicas == nil || *w.Deploy.Replicas != 2 {
		t.Errorf("worker: deploy.replicas = %v, want 2", w.Deploy.Replicas)
	}
	for _, name := range []string{"worker", "api"} {
		s := c.Services[name]
		for dep, cond := range map[string]string{
			"postgres":           "service_healthy",
			"temporal":           "service_healthy",
			"metalpower-migrate": "service_completed_successfully",
		} {
			if got := s.DependsOn[dep].Condition; got != cond {
				t.Errorf("%s: depends_on %s condition %q, want %q", name, dep, got, cond)
			}
		}
	}
	for _, name := range []string{"postgres", "temporal", "api", "sim-redfish"} {
		if s := c.Services[name]; s.Healthcheck == nil || len(s.Healthcheck.Test) == 0 {
			t.Errorf("%s: no healthcheck", name)
		}
	}
	if hc := c.Services["postgres"].Healthcheck; hc != nil && !strings.Contains(strings.Join(hc.Test, " "), "pg_isready") {
		t.Errorf("postgres healthcheck %q does not use pg_isready", hc.Test)
	}
}

// envVar matches a METALPOWER_* variable being set: "NAME=" in an env file
// (also commented out, as documentation) or "NAME:" as a YAML key.
var envVar = regexp.MustCompile(`(?m)^[\s#-]*(METALPOWER_[A-Z0-9_]+)\s*[=:]`)

func TestComposeVariablesAreOptions(t *testing.T) {
	known := make(map[string]bool)
	for _, o := range config.Options() {
		known[o.Env] = true
	}
	check := func(where, name string) {
		// LoadEnv ignores METALPOWER_CONFIG-style names; nothing here may
		// set one, since the deployment configures through options only.
		if !known[name] {
			t.Errorf("%s: %s is not a configuration option (see `starter config options`)", where, name)
		}
	}
	for _, f := range append([]string{"docker-compose.yml"}, envExamples...) {
		data, err := os.ReadFile(filepath.Join(root, f))
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range envVar.FindAllStringSubmatch(string(data), -1) {
			check(f, m[1])
		}
	}
	c := normalized(t)
	for name, s := range c.Services {
		var env []string
		for k, v := range s.Environment {
			if strings.HasPrefix(k, config.EnvPrefix) {
				check("service "+name, k)
				env = append(env, k+"="+scalar(v))
			}
		}
		if len(env) == 0 {
			continue
		}
		// The values must also parse and validate as the binaries would.
		cfg := config.Default()
		if err := config.LoadEnv(&cfg, env); err != nil {
			t.Errorf("service %s: %v", name, err)
			continue
		}
		if err := cfg.Validate(); err != nil {
			t.Errorf("service %s: %v", name, err)
		}
	}
}

func TestComposeAddresses(t *testing.T) {
	c := normalized(t)
	api := c.Services["api"]
	want := config.Default().API.Port
	if p := scalar(api.Environment["METALPOWER_API_PORT"]); p != "" && p != strconv.Itoa(want) {
		t.Errorf("api: METALPOWER_API_PORT=%s, want the default %d", p, want)
	}
	if !slices.Contains(published(t, api), [2]int{want, want}) {
		t.Errorf("api: ports %v do not publish %d:%d", api.Ports, want, want)
	}
	if hc := api.Healthcheck; hc == nil || !strings.Contains(strings.Join(hc.Test, " "), ":"+strconv.Itoa(want)+"/") {
		t.Errorf("api: healthcheck does not probe port %d", want)
	}

	const temporalPort = "7233" // the Temporal frontend's gRPC port
	if !slices.Contains(published(t, c.Services["temporal"]), [2]int{7233, 7233}) {
		t.Errorf("temporal: ports %v do not include %s", c.Services["temporal"].Ports, temporalPort)
	}
	for _, name := range []string{"worker", "api", "metalpower-migrate"} {
		s := c.Services[name]
		addr := scalar(s.Environment["METALPOWER_TEMPORAL_ADDRESS"])
		host, port, err := net.SplitHostPort(addr)
		if err != nil || host != "temporal" || port != temporalPort {
			t.Errorf("%s: METALPOWER_TEMPORAL_ADDRESS=%q, want temporal:%s", name, addr, temporalPort)
		}
		url := scalar(s.Environment["METALPOWER_DATABASE_URL"])
		if !strings.HasPrefix(url, "postgres://") || !strings.Contains(url, "@postgres:5432/") {
			t.Errorf("%s: METALPOWER_DATABASE_URL does not name the postgres service", name)
		}
	}
	for _, name := range []string{"temporal-ui", "temporal-namespace"} {
		if got := scalar(c.Services[name].Environment["TEMPORAL_ADDRESS"]); got != "temporal:"+temporalPort {
			t.Errorf("%s: TEMPORAL_ADDRESS=%q, want temporal:%s", name, got, temporalPort)
		}
	}
}

// secretName matches variable names whose values are secrets.
var secretName = regexp.MustCompile(`(?i)PASSWORD|PASSWD|PWD|SECRET|TOKEN|API_KEY|PRIVATE_KEY`)

// urlPassword matches a URL with a password in it.
var urlPassword = regexp.MustCompile(`[a-z][a-z0-9+.-]*://[^/\s:@]+:[^/\s@]+@`)

// reference matches a value that only points elsewhere: ${VAR} or ${VAR:-default}.
var reference = regexp.MustCompile(`^\$\{[A-Za-z_][A-Za-z0-9_]*(:?[-?][^}]*)?\}$`)

func TestComposeHasNoInlineSecrets(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(root, "docker-compose.yml"))
	if err != nil {
		t.Fatal(err)
	}
	if m := urlPassword.Find(data); m != nil {
		t.Errorf("docker-compose.yml: URL with a password %q: move it to an env file", m)
	}
	var raw struct {
		Services map[string]struct {
			Environment any `yaml:"environment"`
		} `yaml:"services"`
	}
	if err := yaml.Unmarshal(data, &raw); err != nil {
		t.Fatalf("parse docker-compose.yml: %v", err)
	}
	for name, s := range raw.Services {
		for k, v := range environment(s.Environment) {
			if secretName.MatchString(k) && v != "" && !reference.MatchString(v) {
				t.Errorf("docker-compose.yml: service %s sets %s inline: use an env file or a secret", name, k)
			}
		}
	}

	// The committed examples must say that their secrets are examples.
	for _, f := range envExamples {
		file, err := os.Open(filepath.Join(root, f))
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(file)
		for n := 1; sc.Scan(); n++ {
			line := strings.TrimSpace(sc.Text())
			if line == "" || strings.HasPrefix(line, "#") {
				continue
			}
			k, v, _ := strings.Cut(line, "=")
			if (secretName.MatchString(k) || urlPassword.MatchString(v)) && v != "" && !strings.Contains(strings.ToLower(v), "example") {
				t.Errorf("%s:%d: %s holds a value not marked as an example", f, n, k)
			}
		}
		file.Close()
		if err := sc.Err(); err != nil {
			t.Fatal(err)
		}
	}
}

// environment returns a service's environment in either compose form:
// a map, or a list of NAME=value.
func environment(v any) map[string]string {
	out := make(map[string]string)
	switch e := v.(type) {
	case map[string]any:
		for k, val := range e {
			out[k] = scalar(val)
		}
	case []any:
		for _, item := range e {
			k, val, _ := strings.Cut(scalar(item), "=")
			out[k] = val
		}
	}
	return out
}

// scalar formats a YAML scalar as the string a container would see.
func scalar(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return x
	case int:
		return strconv.Itoa(x)
	case bool:
		return strconv.FormatBool(x)
	default:
		b, _ := yaml.Marshal(x)
		return strings.TrimSpace(string(b))
	}
}

// published returns a service's [published, target] port pairs as
// `docker-compose config` writes them.
func published(t *testing.T, s service) [][2]int {
	t.Helper()
	var out [][2]int
	for _, p := range s.Ports {
		var pubs, tgts string
		if m, ok := p.(map[string]any); ok {
			pubs, tgts = scalar(m["published"]), scalar(m["target"])
		} else {
			// Short form, which docker-compose keeps for ports bound to
			// an address: [IP:]PUBLISHED:TARGET[/PROTOCOL].
			f := strings.Split(strings.TrimSuffix(scalar(p), "/tcp"), ":")
			if len(f) >= 2 {
				pubs, tgts = f[len(f)-2], f[len(f)-1]
			}
		}
		pub, err1 := strconv.Atoi(pubs)
		tgt, err2 := strconv.Atoi(tgts)
		if err := errors.Join(err1, err2); err != nil {
			t.Errorf("port %v: %v", p, err)
			continue
		}
		out = append(out, [2]int{pub, tgt})
	}
	return out
}
