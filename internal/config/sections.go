package config

import (
	"bytes"
	"reflect"
	"sort"
	"strings"

	"github.com/BurntSushi/toml"

	"github.com/metalpower/metalpower/internal/bmc"
)

// Drivers may bring a section of their own ([snmp]): a bmc.Driver with
// Options. The configuration reads, documents and prints it as one of its
// own, so a new driver's options need no change here.

// driverValues holds a Config's driver sections by name: pointers to
// structs. Config keeps a pointer to it, so Config stays comparable.
type driverValues struct{ m map[string]reflect.Value }

// driverSections lists the registered drivers' sections by name, with
// their defaults.
func driverSections() []bmc.Driver {
	var out []bmc.Driver
	for _, d := range bmc.Drivers() {
		if d.Options != nil && d.Section != "" {
			out = append(out, *d)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Section < out[j].Section })
	return out
}

// driverSection returns c's copy of a driver's section, made from the
// driver's defaults on first use: a pointer to a struct.
func (c *Config) driverSection(d bmc.Driver) reflect.Value {
	if c.drivers == nil {
		c.drivers = &driverValues{}
	}
	v, ok := c.drivers.m[d.Section]
	if !ok {
		v = reflect.New(reflect.TypeOf(d.Options))
		v.Elem().Set(reflect.ValueOf(d.Options))
		if c.drivers.m == nil {
			c.drivers.m = map[string]reflect.Value{}
		}
		c.drivers.m[d.Section] = v
	}
	return v
}

// cloneDrivers gives c sections of its own, so a changed copy (Redacted)
// leaves the original as it was.
func (c *Config) cloneDrivers() {
	if c.drivers == nil {
		return
	}
	old := c.drivers.m
	c.drivers = &driverValues{m: make(map[string]reflect.Value, len(old))}
	for k, v := range old {
		n := reflect.New(v.Elem().Type())
		n.Elem().Set(v.Elem())
		c.drivers.m[k] = n
	}
}

// Section returns the section named name as a value: one of Config's own
// (an IPMI for "ipmi") or a driver's (its Options type), nil when there is
// no such section.
func (c Config) Section(name string) any {
	cv := reflect.ValueOf(c)
	for i := range cv.NumField() {
		if cv.Type().Field(i).Tag.Get("toml") == name && cv.Type().Field(i).IsExported() {
			return cv.Field(i).Interface()
		}
	}
	for _, d := range driverSections() {
		if d.Section == name {
			return c.driverSection(d).Elem().Interface()
		}
	}
	return nil
}

// decodeDriverSections reads the drivers' sections from a TOML file and
// returns the keys of those sections that no option takes.
func decodeDriverSections(c *Config, path string) ([]string, error) {
	sections := driverSections()
	if len(sections) == 0 {
		return nil, nil
	}
	var raw map[string]toml.Primitive
	md, err := toml.DecodeFile(path, &raw)
	if err != nil {
		return nil, err
	}
	for _, d := range sections {
		if p, ok := raw[d.Section]; ok {
			if err := md.PrimitiveDecode(p, c.driverSection(d).Interface()); err != nil {
				return nil, err
			}
		}
	}
	var unknown []string
	for _, k := range md.Undecoded() {
		if isDriverSection(k[0]) && len(k) > 1 {
			unknown = append(unknown, k.String())
		}
	}
	return unknown, nil
}

func isDriverSection(name string) bool {
	for _, d := range driverSections() {
		if d.Section == name {
			return true
		}
	}
	return false
}

// encodeDriverSections appends the drivers' sections to a TOML rendering.
func encodeDriverSections(buf *bytes.Buffer, c Config) error {
	for _, d := range driverSections() {
		buf.WriteString("\n[" + d.Section + "]\n")
		var sec bytes.Buffer
		if err := toml.NewEncoder(&sec).Encode(c.driverSection(d).Interface()); err != nil {
			return err
		}
		buf.WriteString(strings.TrimLeft(sec.String(), "\n"))
	}
	return nil
}
