package config

import (
	"strings"
	"testing"

	"github.com/metalpower/metalpower/internal/bmc"
)

// pduOptions stands for a driver's own section, as the snmp driver's
// [snmp]; this package's tests cannot import the real drivers.
type pduOptions struct {
	PowerTimeout int    `toml:"power_timeout" help:"Seconds to wait."`
	Token        string `toml:"token" secret:"true" help:"A secret the test driver needs."`
}

func init() {
	bmc.Register(bmc.Driver{Name: "testpdu", Section: "testpdu", Options: pduOptions{PowerTimeout: 10},
		Parse:        func(map[string]any) (bmc.Access, error) { return nil, nil },
		NewConnector: func(bmc.Env) bmc.Connector { return nil }})
}

func TestDriverSection(t *testing.T) {
	clearEnv(t)
	if got := Default().Section("testpdu").(pduOptions); got.PowerTimeout != 10 {
		t.Fatalf("default section = %+v, want the driver's defaults", got)
	}
	path := writeFile(t, "c.toml", "[testpdu]\npower_timeout = 20\ntoken = \"tok-secret\"\n[ipmi]\nmin_command_interval = 2\n")
	t.Setenv("METALPOWER_TESTPDU_POWER_TIMEOUT", "30")
	c, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	got := c.Section("testpdu").(pduOptions)
	if got.PowerTimeout != 30 || got.Token != "tok-secret" || c.IPMI.MinCommandInterval != 2 {
		t.Fatalf("section = %+v, ipmi %+v: want the environment over the file", got, c.IPMI)
	}
	if c.Section("ipmi").(IPMI) != c.IPMI || c.Section("nosuch") != nil {
		t.Error("Section does not find config's own sections by name")
	}
	s := c.String()
	if !strings.Contains(s, "[testpdu]") || !strings.Contains(s, "power_timeout = 30") || strings.Contains(s, "tok-secret") {
		t.Errorf("String() =\n%s\nwant [testpdu] with the token masked", s)
	}
	if c.Section("testpdu").(pduOptions).Token != "tok-secret" {
		t.Error("Redacted changed the original")
	}
	var doc bool
	for _, o := range Options() {
		if o.Key() == "[testpdu] token" && o.Secret && o.Env == "METALPOWER_TESTPDU_TOKEN" {
			doc = true
		}
	}
	if !doc {
		t.Error("Options() lacks the driver's options")
	}
}

func TestDriverSectionRejectsUnknownKeys(t *testing.T) {
	clearEnv(t)
	path := writeFile(t, "c.toml", "[testpdu]\npower_timout = 20\n")
	if _, err := Load(path); err == nil || !strings.Contains(err.Error(), "testpdu.power_timout") {
		t.Fatalf("Load() = %v, want the misspelt key named", err)
	}
	t.Setenv("METALPOWER_TESTPDU_NOPE", "1")
	if _, err := Load(""); err == nil || !strings.Contains(err.Error(), "no such option in [testpdu]") {
		t.Fatalf("Load() = %v, want an unknown option of [testpdu]", err)
	}
}
