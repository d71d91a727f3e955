package node

import "github.com/metalpower/metalpower/internal/bmc"

// fakeDriver stands in for a driver in this package's tests, which cannot
// import the real ones (they import node).
const fakeDriver = "fake"

// fakeOutlet stands in for a driver with power on, off and reboot only,
// as a PDU outlet.
const fakeOutlet = "fake-outlet"

type fakeAccess struct{ addr, password string }

func (a fakeAccess) BMC() string       { return a.addr }
func (a fakeAccess) Key() []string     { return []string{a.addr, a.password} }
func (a fakeAccess) Secrets() []string { return []string{a.password} }

func init() {
	bmc.Register(bmc.Driver{
		Name:   fakeDriver,
		Fields: []bmc.Field{{Name: "fake_address", Required: true}, {Name: "fake_community", Secret: true}},
		Parse: func(m map[string]any) (bmc.Access, error) {
			d := DriverInfo(m)
			addr, err := d.RequiredString("fake_address")
			if err != nil {
				return nil, err
			}
			if _, err := d.OptionalString("fake_username"); err != nil {
				return nil, err
			}
			if _, err := d.OptionalInt("fake_port", 1); err != nil {
				return nil, err
			}
			pw, err := d.OptionalString("fake_password")
			return fakeAccess{addr, pw}, err
		},
		Supports:     bmc.Supports{SoftPowerOff: true, Reboot: true, SoftReboot: true},
		NewConnector: func(bmc.Env) bmc.Connector { return nil },
	})
	bmc.Register(bmc.Driver{
		Name:         fakeOutlet,
		Supports:     bmc.Supports{Reboot: true},
		Parse:        func(map[string]any) (bmc.Access, error) { return fakeAccess{}, nil },
		NewConnector: func(bmc.Env) bmc.Connector { return nil },
	})
}
