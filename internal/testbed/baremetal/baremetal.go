// Package baremetal runs the OpenStack `baremetal` CLI (Debian's
// python3-ironicclient and python3-openstackclient) against metalpower's
// API in tests, through a proxy that logs every request and answer.
package baremetal

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

// RequestLog records every request the CLI made and its answer, so a
// failure shows exactly what the API was asked and said.
type RequestLog struct {
	mu      sync.Mutex
	entries []string
}

func (l *RequestLog) add(entry string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.entries = append(l.entries, entry)
}

func (l *RequestLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.entries, "\n")
}

// Versions returns the microversion each request declared, in order.
func (l *RequestLog) Versions() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, e := range l.entries {
		_, v, _ := strings.Cut(e, " [")
		v, _, _ = strings.Cut(v, "]")
		out = append(out, v)
	}
	return out
}

// startLoggingProxy serves a reverse proxy to the API that logs each
// request: method, path and query, microversion, body, status and answer.
func startLoggingProxy(t testing.TB, apiURL string) (string, *RequestLog) {
	t.Helper()
	target, err := url.Parse(apiURL)
	if err != nil {
		t.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(target)
	log := &RequestLog{}
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		rec := httptest.NewRecorder()
		proxy.ServeHTTP(rec, r)
		answer := rec.Body.String()
		if len(answer) > 300 {
			answer = answer[:300] + "..."
		}
		log.add(fmt.Sprintf("%s %s [%s] %s -> %d %s", r.Method, r.URL.RequestURI(),
			r.Header.Get("X-OpenStack-Ironic-API-Version"), body, rec.Code, strings.TrimSpace(answer)))
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.Code)
		w.Write(rec.Body.Bytes())
	}))
	t.Cleanup(ts.Close)
	return ts.URL, log
}

// CLI runs the baremetal CLI against one API.
type CLI struct {
	t   testing.TB
	bin string
	// Endpoint is the logging proxy in front of the API the CLI is given.
	Endpoint string
	version  string // --os-baremetal-api-version; "" leaves the CLI's default
	env      []string
	// Log holds every request the CLI made and its answer.
	Log *RequestLog
	// Auth replaces --os-endpoint and --os-auth-type none when set.
	Auth []string
}

// New finds the CLI and prepares an environment free of any
// OpenStack configuration of the machine: no OS_* variables, an empty HOME
// (so no clouds.yaml), and no proxy for the loopback API.
func New(t testing.TB, apiURL, version string) *CLI {
	t.Helper()
	bin, err := exec.LookPath("baremetal")
	if err != nil {
		t.Fatalf("the OpenStack baremetal CLI is not installed: `make deps` installs it (Debian packages python3-ironicclient and python3-openstackclient): %v", err)
	}
	endpoint, log := startLoggingProxy(t, apiURL)
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		upper := strings.ToUpper(name)
		if strings.HasPrefix(upper, "OS_") || strings.HasSuffix(upper, "_PROXY") || upper == "HOME" || upper == "XDG_CONFIG_HOME" {
			continue
		}
		env = append(env, kv)
	}
	env = append(env, "HOME="+t.TempDir(), "NO_PROXY=127.0.0.1,localhost", "no_proxy=127.0.0.1,localhost")
	return &CLI{t: t, bin: bin, Endpoint: endpoint, version: version, env: env, Log: log}
}

// Run runs `baremetal <args>` and returns its output and error.
func (c *CLI) Run(args ...string) (stdout, stderr string, err error) {
	c.t.Helper()
	full := []string{"--os-endpoint", c.Endpoint, "--os-auth-type", "none"}
	if c.Auth != nil {
		full = c.Auth
	}
	if c.version != "" {
		full = append(full, "--os-baremetal-api-version", c.version)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.bin, append(full, args...)...)
	cmd.Env = c.env
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err = cmd.Run()
	return out.String(), errOut.String(), err
}

// OK runs a command that must succeed and returns its standard output.
func (c *CLI) OK(args ...string) string {
	c.t.Helper()
	out, errOut, err := c.Run(args...)
	if err != nil {
		c.t.Fatalf("baremetal %s: %v\nstdout: %s\nstderr: %s\nAPI requests:\n%s", strings.Join(args, " "), err, out, errOut, c.Log)
	}
	return out
}

// Fails runs a command that must fail with wantStderr in its error output.
func (c *CLI) Fails(wantStderr string, args ...string) {
	c.t.Helper()
	out, errOut, err := c.Run(args...)
	if err == nil || !strings.Contains(errOut, wantStderr) {
		c.t.Fatalf("baremetal %s: err %v, stderr %q; want a failure saying %q\nstdout: %s\nAPI requests:\n%s",
			strings.Join(args, " "), err, errOut, wantStderr, out, c.Log)
	}
}

// JSON runs a command given -f json and decodes its output into v.
func (c *CLI) JSON(v any, args ...string) {
	c.t.Helper()
	out := c.OK(append(args, "-f", "json")...)
	if err := json.Unmarshal([]byte(out), v); err != nil {
		c.t.Fatalf("baremetal %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// Show is `node show <ident> -f json`, limited to fields when given.
func (c *CLI) Show(ident string, fields ...string) map[string]any {
	c.t.Helper()
	args := []string{"node", "show", ident}
	if len(fields) > 0 {
		args = append(append(args, "--fields"), fields...)
	}
	var v map[string]any
	c.JSON(&v, args...)
	return v
}
