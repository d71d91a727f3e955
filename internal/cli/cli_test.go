package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

func run(t *testing.T, env []string, args ...string) (int, string, string) {
	t.Helper()
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	var out, errOut bytes.Buffer
	code := Main(context.Background(), args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestConfigCommands(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.toml")
	os.WriteFile(good, []byte("[nova]\nauth_url = \"http://keystone:5000/v3\"\nusername = \"ironic\"\npassword = \"nova-secret\"\n"), 0o600)
	bad := filepath.Join(dir, "bad.toml")
	os.WriteFile(bad, []byte("[conductor]\npower_state_change_timeout = 1\n"), 0o600)
	tests := []struct {
		name   string
		env    []string
		args   []string
		code   int
		stdout string
		stderr string
	}{
		{"show masks secrets", nil, []string{"-config", good, "config", "show"}, 0, "password = \"******\"", ""},
		{"check ok", nil, []string{"-config", good, "config", "check"}, 0, "configuration ok", ""},
		{"check names the option", nil, []string{"-config", bad, "config", "check"}, 1, "", "[conductor] power_state_change_timeout"},
		{"env override is validated", []string{"METALPOWER_API_PORT=70000"}, []string{"config", "check"}, 1, "", "[api] port"},
		{"missing file", nil, []string{"-config", filepath.Join(dir, "nope.toml"), "config", "check"}, 1, "", "does not exist"},
		{"unknown command", nil, []string{"frobnicate"}, 2, "", "usage: starter"},
		{"extra argument", nil, []string{"config", "show", "x"}, 2, "", "usage: starter config show"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := run(t, tt.env, tt.args...)
			if code != tt.code || !strings.Contains(out, tt.stdout) || !strings.Contains(errOut, tt.stderr) {
				t.Fatalf("exit %d, stdout %q, stderr %q", code, out, errOut)
			}
			if strings.Contains(out+errOut, "nova-secret") {
				t.Fatal("output leaks the Nova password")
			}
		})
	}
}

func TestDBMigrate(t *testing.T) {
	url := "sqlite://" + filepath.Join(t.TempDir(), "db", "nodes.db")
	for i := 0; i < 2; i++ {
		code, out, errOut := run(t, []string{"METALPOWER_DATABASE_URL=" + url}, "db", "migrate")
		if code != 0 || !strings.Contains(out, "up to date") {
			t.Fatalf("run %d: exit %d %q %q", i, code, out, errOut)
		}
	}
}

// TestDocsListEveryOption keeps docs/configuration.md's option table in
// step with the configuration.
func TestDocsListEveryOption(t *testing.T) {
	readme, err := os.ReadFile("../../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	code, out, _ := run(t, nil, "config", "options")
	if code != 0 {
		t.Fatalf("config options exit %d", code)
	}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if !strings.Contains(string(readme), line) {
			t.Errorf("docs/configuration.md lacks the row (run `starter config options`):\n%s", line)
		}
	}
}

// TestDocsNameOnlyWhatExists: every `make X` the README and docs/ mention
// is a Makefile target, every [section] of the configuration they name
// exists, and every page the README links to is there.
func TestDocsNameOnlyWhatExists(t *testing.T) {
	makefile, err := os.ReadFile("../../Makefile")
	if err != nil {
		t.Fatal(err)
	}
	targets := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^([a-z][a-z0-9-]*):`).FindAllStringSubmatch(string(makefile), -1) {
		targets[m[1]] = true
	}
	code, out, _ := run(t, nil, "config", "options")
	if code != 0 {
		t.Fatalf("config options exit %d", code)
	}
	pages, err := filepath.Glob("../../docs/*.md")
	if err != nil || len(pages) < 5 {
		t.Fatalf("docs pages: %v, %v", pages, err)
	}
	for _, p := range append(pages, "../../README.md") {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range regexp.MustCompile("`make ([a-z][a-z0-9-]*)").FindAllStringSubmatch(string(b), -1) {
			if !targets[m[1]] {
				t.Errorf("%s mentions `make %s`, which the Makefile does not have", filepath.Base(p), m[1])
			}
		}
		for _, m := range regexp.MustCompile("`\\[([a-z_]+)\\] [a-z_]+`").FindAllStringSubmatch(string(b), -1) {
			if !strings.Contains(out, "["+m[1]+"]") {
				t.Errorf("%s names section [%s], which the configuration does not have", filepath.Base(p), m[1])
			}
		}
		for _, m := range regexp.MustCompile(`\]\(((?:docs/|\.\./)?[a-zA-Z_.-]+\.md)\)`).FindAllStringSubmatch(string(b), -1) {
			if _, err := os.Stat(filepath.Join(filepath.Dir(p), m[1])); err != nil {
				t.Errorf("%s links to %s: %v", filepath.Base(p), m[1], err)
			}
		}
	}
}
