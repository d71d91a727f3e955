package config

import (
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"
)

// EnvPrefix starts the name of every environment variable that sets an
// option: METALPOWER_<SECTION>_<OPTION>, upper-case.
const EnvPrefix = "METALPOWER_"

// testEnvPrefix marks variables that tests use for their own purposes;
// LoadEnv ignores them instead of reporting an unknown section.
const testEnvPrefix = EnvPrefix + "TEST_"

// Option describes one configuration option, for documentation and for
// tests that check every option is reachable.
type Option struct {
	Section string // TOML table, e.g. "conductor"
	Name    string // TOML key, e.g. "sync_power_state_interval"
	Env     string // environment variable, e.g. "METALPOWER_CONDUCTOR_SYNC_POWER_STATE_INTERVAL"
	Type    string // "int", "bool" or "string"
	Default string // the default value as it would be written in the environment
	Help    string
	Secret  bool // the value is replaced by "******" whenever it is shown
}

// Key returns the option's name as used in error messages: "[section] name".
func (o Option) Key() string {
	return "[" + o.Section + "] " + o.Name
}

// Options lists every option in file order, with its default.
func Options() []Option {
	d := Default()
	fs := fields(&d)
	opts := make([]Option, len(fs))
	for i, f := range fs {
		opts[i] = f.Option
		opts[i].Default = formatValue(f.value)
	}
	return opts
}

// field is one option together with the struct field that holds it.
type field struct {
	Option
	value  reflect.Value // settable
	secret string        // the secret tag: "", "true" or "url"
}

// fields walks c's sections and options by reflection. Each section is a
// struct field of Config or a driver's registered section, and each option
// a field of a section; both are named by their toml tags.
func fields(c *Config) []field {
	var out []field
	cv := reflect.ValueOf(c).Elem()
	ct := cv.Type()
	type section struct {
		name string
		v    reflect.Value
	}
	var sections []section
	for i := range ct.NumField() {
		if ct.Field(i).IsExported() {
			sections = append(sections, section{ct.Field(i).Tag.Get("toml"), cv.Field(i)})
		}
	}
	for _, d := range driverSections() {
		sections = append(sections, section{d.Section, c.driverSection(d).Elem()})
	}
	for _, sec := range sections {
		section, sv := sec.name, sec.v
		st := sv.Type()
		for j := range st.NumField() {
			sf := st.Field(j)
			name := sf.Tag.Get("toml")
			secret := sf.Tag.Get("secret")
			out = append(out, field{
				Option: Option{
					Section: section,
					Name:    name,
					Env:     envName(section, name),
					Type:    sf.Type.Kind().String(),
					Help:    sf.Tag.Get("help"),
					Secret:  secret == "true",
				},
				value:  sv.Field(j),
				secret: secret,
			})
		}
	}
	return out
}

func envName(section, name string) string {
	return EnvPrefix + strings.ToUpper(section) + "_" + strings.ToUpper(name)
}

func formatValue(v reflect.Value) string {
	switch v.Kind() {
	case reflect.Int:
		return strconv.FormatInt(v.Int(), 10)
	case reflect.Bool:
		return strconv.FormatBool(v.Bool())
	default:
		return v.String()
	}
}

// LoadEnv applies the METALPOWER_<SECTION>_<OPTION> variables in environ
// (in os.Environ's "KEY=value" form) to c. Load calls it with
// os.Environ(); tests pass their own list.
//
// A variable that looks like an option but names none is an error, so a
// typo cannot silently leave a default in place. Variables without an
// underscore after the prefix (such as METALPOWER_CONFIG) are not option
// names and are ignored, as are METALPOWER_TEST_* variables. When a name
// occurs twice the first wins, as with os.Getenv.
func LoadEnv(c *Config, environ []string) error {
	byEnv := make(map[string]field)
	sections := make(map[string]bool)
	for _, f := range fields(c) {
		byEnv[f.Env] = f
		sections[strings.ToUpper(f.Section)] = true
	}

	var errs []error
	seen := make(map[string]bool)
	for _, kv := range environ {
		key, value, ok := strings.Cut(kv, "=")
		if !ok || !strings.HasPrefix(key, EnvPrefix) || seen[key] {
			continue
		}
		seen[key] = true
		f, ok := byEnv[key]
		if !ok {
			if err := unknownEnv(key, sections); err != nil {
				errs = append(errs, err)
			}
			continue
		}
		if err := setValue(f, value); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// unknownEnv explains why key, which starts with EnvPrefix but is not an
// option's variable, is wrong - or returns nil when it is not meant to be
// an option at all.
func unknownEnv(key string, sections map[string]bool) error {
	if strings.HasPrefix(key, testEnvPrefix) {
		return nil
	}
	rest := strings.TrimPrefix(key, EnvPrefix)
	if !strings.Contains(rest, "_") {
		return nil
	}
	// The longest section name that prefixes rest is the section
	// (keystone_authtoken holds an underscore); none: the first word.
	section, _, _ := strings.Cut(rest, "_")
	for s := range sections {
		if strings.HasPrefix(rest, s+"_") && (!sections[section] || len(s) > len(section)) {
			section = s
		}
	}
	if sections[section] {
		return fmt.Errorf("environment variable %s: no such option in [%s]", key, strings.ToLower(section))
	}
	return fmt.Errorf("environment variable %s: no such section [%s]", key, strings.ToLower(section))
}

// setValue parses value for f and stores it. Errors name both the variable
// and the option, and never repeat a secret's value.
func setValue(f field, value string) error {
	shown := strconv.Quote(value)
	if f.secret != "" {
		shown = "(value hidden)"
	}
	switch f.value.Kind() {
	case reflect.Int:
		n, err := strconv.ParseInt(strings.TrimSpace(value), 10, 0)
		if err != nil {
			return fmt.Errorf("environment variable %s (%s): %s is not a decimal integer", f.Env, f.Key(), shown)
		}
		f.value.SetInt(n)
	case reflect.Bool:
		b, ok := parseBool(value)
		if !ok {
			return fmt.Errorf("environment variable %s (%s): %s is not a boolean (use true/false, 1/0 or yes/no)", f.Env, f.Key(), shown)
		}
		f.value.SetBool(b)
	case reflect.String:
		f.value.SetString(value)
	default:
		// Only reachable if a field of a new type is added to Config.
		return fmt.Errorf("environment variable %s (%s): unsupported option type %s", f.Env, f.Key(), f.value.Kind())
	}
	return nil
}

func parseBool(s string) (value, ok bool) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "true", "1", "yes":
		return true, true
	case "false", "0", "no":
		return false, true
	}
	return false, false
}
