package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Malformed and oversized input to the CLI gets the exact error and
// changes nothing.
func TestMalformedInputGetsExactErrors(t *testing.T) {
	dir := t.TempDir()
	db := "sqlite://" + filepath.Join(dir, "nodes.db")
	bad := filepath.Join(dir, "bad.toml")
	os.WriteFile(bad, []byte("[conductor]\nsync_power_state_interval = \"often\"\n"), 0o600)
	huge := filepath.Join(dir, "huge.toml")
	os.WriteFile(huge, []byte("[nova]\nusername = \""+strings.Repeat("x", 1<<20)+"\nunterminated"), 0o600)
	env := []string{"METALPOWER_DATABASE_URL=" + db}
	tests := []struct {
		name   string
		args   []string
		code   int
		stderr string
	}{
		{"config value of the wrong type", []string{"-config", bad, "config", "check"}, 1, "sync_power_state_interval"},
		{"oversized, unterminated config", []string{"-config", huge, "config", "check"}, 1, "config file " + huge},
		{"driver-info without =", []string{"node", "create", "--driver", "ipmi", "--driver-info", "ipmi_address"}, 2, `"ipmi_address": want key=value`},
		{"unknown driver", []string{"node", "create", "--driver", "ilo", "--driver-info", "x=y"}, 1, `unknown driver: driver "ilo"`},
		{"bad port", []string{"node", "create", "--driver", "ipmi", "--driver-info", "ipmi_address=h", "--driver-info", "ipmi_port=abc"}, 1, "driver_info.ipmi_port must be an integer"},
		{"bad uuid", []string{"node", "create", "--uuid", "nope", "--driver", "ipmi", "--driver-info", "ipmi_address=h"}, 1, `invalid UUID: uuid "nope" is not a canonical UUID`},
		{"name too long", []string{"node", "create", "--name", strings.Repeat("n", 300), "--driver", "ipmi", "--driver-info", "ipmi_address=h"}, 1, "invalid name: name"},
		{"unknown node", []string{"node", "show", "no-such-node"}, 1, "node not found: no-such-node"},
		{"bad maintenance filter", []string{"node", "list", "--maintenance", "maybe"}, 1, `--maintenance "maybe": use true or false`},
		{"bad marker", []string{"node", "list", "--marker", "x"}, 1, `invalid query: marker "x" is not a node UUID`},
		{"missing argument", []string{"node", "show"}, 2, "usage: starter node show NODE"},
		{"timeout not a number", []string{"power", "off", "x", "--timeout", "abc"}, 2, "usage: starter power off"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, errOut := run(t, env, tt.args...)
			if code != tt.code || !strings.Contains(errOut, tt.stderr) {
				t.Fatalf("exit %d (want %d)\nstderr: %s\nwant it to contain %q", code, tt.code, errOut, tt.stderr)
			}
			if len(errOut) > 4096 {
				t.Fatalf("the error echoes the oversized input (%d bytes)", len(errOut))
			}
		})
	}
	// Nothing was created by the refused commands.
	code, out, _ := run(t, env, "node", "list")
	if code != 0 || strings.Count(out, "\n") != 1 {
		t.Fatalf("refused commands created nodes:\n%s", out)
	}
}
