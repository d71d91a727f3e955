package bmc

import (
	"errors"
	"strings"
	"testing"
)

func TestRegistry(t *testing.T) {
	parse := func(map[string]any) (Access, error) { return nil, nil }
	conn := func(Env) Connector { return nil }
	Register(Driver{Name: "test-a", Parse: parse, NewConnector: conn, Fields: []Field{{Name: "a_token", Secret: true}, {Name: "a_host"}}})
	Register(Driver{Name: "test-b", Parse: parse, NewConnector: conn})

	if d, err := Lookup("test-a"); err != nil || d.Name != "test-a" {
		t.Fatalf("Lookup(test-a) = %v, %v", d, err)
	}
	_, err := Lookup("ilo")
	if !errors.Is(err, ErrUnknownDriver) || !strings.Contains(err.Error(), `"ilo": use `) || !strings.Contains(err.Error(), "test-a") {
		t.Errorf("Lookup(ilo) = %v, want ErrUnknownDriver naming the drivers", err)
	}
	if !SecretField("a_token") || SecretField("a_host") || SecretField("b_token") {
		t.Error("SecretField does not follow the drivers' fields")
	}
	if got := NameList(); !strings.HasSuffix(got, "test-a or test-b") {
		t.Errorf("NameList() = %q", got)
	}
	for name, d := range map[string]Driver{
		"duplicate":  {Name: "test-a", Parse: parse, NewConnector: conn},
		"no name":    {Parse: parse, NewConnector: conn},
		"no parse":   {Name: "test-c", NewConnector: conn},
		"no connect": {Name: "test-d", Parse: parse},
	} {
		t.Run(name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Error("Register did not panic")
				}
			}()
			Register(d)
		})
	}
}
