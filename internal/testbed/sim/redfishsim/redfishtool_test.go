package redfishsim

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"
)

const redfishtoolPath = "/usr/bin/redfishtool"

// requireFile fails (never skips) when a client the tests drive is not
// installed, saying how to get it.
func requireFile(t *testing.T, path, debianPkg string) {
	t.Helper()
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("%s is missing (%v): install Debian package %s; `make deps` installs it (or apt-get install -y %s)",
			path, err, debianPkg, debianPkg)
	}
}

// toolEnv is the environment for client tools. The sim is on loopback,
// so a proxy configured on the machine must not be used. The CA bundle
// variables go because python-requests lets them override a session's
// verify=False (requests issue 3829), which is how sushy skips
// verification of the sim's self-signed certificate.
func toolEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if name != "REQUESTS_CA_BUNDLE" && name != "CURL_CA_BUNDLE" {
			env = append(env, kv)
		}
	}
	return append(env, "NO_PROXY=127.0.0.1,localhost", "no_proxy=127.0.0.1,localhost")
}

// run executes a client tool and returns its stdout, stderr and exit code.
func run(t *testing.T, name string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = toolEnv()
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exit):
		code = exit.ExitCode()
	default:
		t.Fatalf("running %s %q: %v", name, args, err)
	}
	return out.String(), errb.String(), code
}

// redfishtool runs redfishtool against host ("127.0.0.1:PORT") over plain
// HTTP ("-S Never"; its default insists on HTTPS for authenticated calls).
func redfishtool(t *testing.T, host string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	return run(t, redfishtoolPath, append([]string{"-r", host, "-S", "Never"}, args...)...)
}

// mustJSON runs redfishtool, requires success and decodes its JSON output.
func mustJSON(t *testing.T, host string, args ...string) map[string]any {
	t.Helper()
	out, errOut, code := redfishtool(t, host, args...)
	if code != 0 {
		t.Fatalf("redfishtool %q: exit %d\nstdout: %s\nstderr: %s", args, code, out, errOut)
	}
	var doc map[string]any
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("redfishtool %q: output is not JSON: %v\n%s", args, err, out)
	}
	return doc
}

var creds = []string{"-u", "admin", "-p", "password"}

func args(a ...string) []string { return append(slices.Clone(creds), a...) }

func TestRedfishtool(t *testing.T) {
	t.Parallel()
	requireFile(t, redfishtoolPath, "redfishtool")
	s := New(Options{Systems: 3})
	host := strings.TrimPrefix(s.Start(), "http://")
	defer s.Close()

	t.Run("root without credentials", func(t *testing.T) {
		doc := mustJSON(t, host, "root")
		if doc["RedfishVersion"] != "1.6.0" {
			t.Errorf("root = %v", doc)
		}
	})

	t.Run("Systems list", func(t *testing.T) {
		doc := mustJSON(t, host, args("Systems", "list")...)
		if doc["Members@odata.count"] != 3.0 {
			t.Fatalf("Members@odata.count = %v", doc["Members@odata.count"])
		}
		var ids []string
		for _, m := range doc["Members"].([]any) {
			ids = append(ids, m.(map[string]any)["Id"].(string))
		}
		if !slices.Equal(ids, []string{"1", "2", "3"}) {
			t.Errorf("ids = %v", ids)
		}
	})

	t.Run("Systems get", func(t *testing.T) {
		doc := mustJSON(t, host, args("Systems", "-I", "1", "get")...)
		if doc["Id"] != "1" || doc["PowerState"] != "On" {
			t.Errorf("get: Id %v, PowerState %v", doc["Id"], doc["PowerState"])
		}
		doc = mustJSON(t, host, args("Systems", "-L", "/redfish/v1/Systems/2", "get", "-P", "PowerState")...)
		if len(doc) != 1 || doc["PowerState"] != "On" {
			t.Errorf("get -P PowerState = %v", doc)
		}
	})

	t.Run("reset ForceOff then On", func(t *testing.T) {
		for _, step := range []struct{ resetType, want string }{{"ForceOff", "Off"}, {"On", "On"}} {
			out, errOut, code := redfishtool(t, host, args("Systems", "-I", "1", "reset", step.resetType)...)
			if code != 0 {
				t.Fatalf("reset %s: exit %d\n%s%s", step.resetType, code, out, errOut)
			}
			if got := s.PowerState("1"); got != step.want {
				t.Fatalf("after reset %s, PowerState = %s, want %s", step.resetType, got, step.want)
			}
			doc := mustJSON(t, host, args("Systems", "-I", "1", "-P", "PowerState")...)
			if doc["PowerState"] != step.want {
				t.Errorf("redfishtool reads PowerState %v, want %s", doc["PowerState"], step.want)
			}
		}
		if got := s.Resets("1"); !slices.Equal(got, []string{"ForceOff", "On"}) {
			t.Errorf("Resets = %v", got)
		}
	})

	t.Run("wrong password", func(t *testing.T) {
		_, errOut, code := redfishtool(t, host, "-u", "admin", "-p", "wrong", "Systems", "list")
		if code == 0 || !strings.Contains(errOut, "401") {
			t.Errorf("exit %d, stderr %q; want failure mentioning 401", code, errOut)
		}
	})

	t.Run("reset type not advertised", func(t *testing.T) {
		// redfishtool checks AllowableValues itself and never POSTs.
		s.SetAllowableResetTypes("3", []string{"On", "ForceOff"})
		_, errOut, code := redfishtool(t, host, args("Systems", "-I", "3", "reset", "PowerCycle")...)
		if code == 0 || !strings.Contains(errOut, "not supported") {
			t.Errorf("exit %d, stderr %q; want a refusal", code, errOut)
		}
		if len(s.Resets("3")) != 0 {
			t.Errorf("Resets = %v", s.Resets("3"))
		}
	})

	t.Run("409 from the service", func(t *testing.T) {
		s.SetPowerState("2", "Off")
		_, errOut, code := redfishtool(t, host, args("Systems", "-L", "/redfish/v1/Systems/2", "reset", "GracefulRestart")...)
		if code == 0 || !strings.Contains(errOut, "409") {
			t.Errorf("exit %d, stderr %q; want failure mentioning 409", code, errOut)
		}
	})

	t.Run("session auth logs out", func(t *testing.T) {
		out, errOut, code := redfishtool(t, host, args("-A", "Session", "Systems", "-L", "/redfish/v1/Systems/2", "reset", "On")...)
		if code != 0 {
			t.Fatalf("exit %d\n%s%s", code, out, errOut)
		}
		if s.PowerState("2") != "On" {
			t.Errorf("PowerState = %s, want On", s.PowerState("2"))
		}
		if n := s.ActiveSessions(); n != 0 {
			t.Errorf("ActiveSessions = %d after redfishtool exited, want 0", n)
		}
		// With a wrong password the login POST itself fails.
		if _, _, code := redfishtool(t, host, "-u", "admin", "-p", "wrong", "-A", "Session", "Systems", "list"); code == 0 {
			t.Errorf("session login with a wrong password succeeded")
		}
	})

	t.Run("explicit login and logout", func(t *testing.T) {
		login := mustJSON(t, host, args("SessionService", "login")...)
		tok, _ := login["X-Auth-Token"].(string)
		id, _ := login["SessionId"].(string)
		if tok == "" || id == "" || s.ActiveSessions() != 1 {
			t.Fatalf("login = %v, ActiveSessions %d", login, s.ActiveSessions())
		}
		doc := mustJSON(t, host, "-A", "Session", "-t", tok, "Systems", "-L", "/redfish/v1/Systems/1", "get")
		if doc["Id"] != "1" {
			t.Errorf("get with token = %v", doc["Id"])
		}
		out, errOut, code := redfishtool(t, host, "-A", "Session", "-t", tok, "SessionService", "logout", "-i", id)
		if code != 0 {
			t.Fatalf("logout: exit %d\n%s%s", code, out, errOut)
		}
		if n := s.ActiveSessions(); n != 0 {
			t.Errorf("ActiveSessions after logout = %d", n)
		}
	})

	t.Run("hung BMC times out", func(t *testing.T) {
		s.SetFault("3", FaultHang)
		defer s.SetFault("3", FaultNone)
		// -L, not -I: -I reads every member to match Id, and would hang
		// on system 3 whichever system was asked for.
		// A read timeout surfaces as a socket error, which redfishtool
		// handles silently: exit 5 with nothing on stderr, after a further
		// sleep of its connect wait (-W, 3s by default).
		t0 := time.Now()
		out, _, code := redfishtool(t, host, args("-T", "1", "-W", "1:1", "Systems", "-L", "/redfish/v1/Systems/3", "get")...)
		// (-W also makes it print "num: 1,  time: 1" on stdout.)
		if code != 5 || strings.Contains(out, "PowerState") {
			t.Errorf("exit %d, stdout %q; want exit 5 and no system", code, out)
		}
		if d := time.Since(t0); d < time.Second {
			t.Errorf("gave up after %v, before its 1s timeout", d)
		}
	})
}

func TestRedfishtoolTLS(t *testing.T) {
	t.Parallel()
	requireFile(t, redfishtoolPath, "redfishtool")
	s := New(Options{})
	host := strings.TrimPrefix(s.StartTLS(), "https://")
	defer s.Close()
	// -S Always: HTTPS for every call; redfishtool does not verify the
	// certificate, like most BMC tooling.
	out, errOut, code := run(t, redfishtoolPath, append([]string{"-r", host, "-S", "Always"}, args("Systems", "-I", "1", "reset", "GracefulShutdown")...)...)
	if code != 0 {
		t.Fatalf("exit %d\n%s%s", code, out, errOut)
	}
	if s.PowerState("1") != "Off" {
		t.Errorf("PowerState = %s, want Off", s.PowerState("1"))
	}
}
