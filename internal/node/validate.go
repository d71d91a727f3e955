package node

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/google/uuid"

	"github.com/metalpower/metalpower/internal/bmc"
)

// Validation errors. Each ValidationError wraps one of these, so callers
// (the API's 400 answers, the CLI) can branch with errors.Is.
var (
	ErrInvalidUUID           = errors.New("invalid UUID")
	ErrInvalidName           = errors.New("invalid name")
	ErrMissingDriverInfo     = errors.New("missing driver_info")
	ErrMalformedDriverInfo   = errors.New("malformed driver_info")
	ErrInvalidPowerState     = errors.New("invalid power state")
	ErrInvalidProvisionState = errors.New("invalid provision state")
	ErrInvalidResourceClass  = errors.New("invalid resource_class")
	ErrInvalidTrait          = errors.New("invalid trait")
	ErrInvalidConductorGroup = errors.New("invalid conductor_group")
)

// ValidationError names the field at fault and why.
type ValidationError struct {
	Field  string
	Err    error
	Detail string
}

func (e *ValidationError) Error() string {
	return fmt.Sprintf("%s: %s %s", e.Err, e.Field, e.Detail)
}

func (e *ValidationError) Unwrap() error { return e.Err }

// InvalidField is the error of a field at fault; err is one of the
// sentinels above.
func InvalidField(field string, err error, format string, args ...any) error {
	return &ValidationError{Field: field, Err: err, Detail: fmt.Sprintf(format, args...)}
}

// Ironic's names are RFC 3986 unreserved characters (logical names).
var nameRE = regexp.MustCompile(`^[A-Za-z0-9\-._~]{1,255}$`)

// ValidUUID reports whether s is a canonical UUID (the form Ironic stores).
func ValidUUID(s string) bool {
	u, err := uuid.Parse(s)
	return err == nil && u.String() == s
}

// Validate checks every field a client can set and returns the first
// problem found.
func (n *Node) Validate() error {
	if !ValidUUID(n.UUID) {
		return InvalidField("uuid", ErrInvalidUUID, "%q is not a canonical UUID", n.UUID)
	}
	if n.Name != "" {
		if !nameRE.MatchString(n.Name) {
			return InvalidField("name", ErrInvalidName, "%q: use 1-255 letters, digits and - . _ ~", n.Name)
		}
		// A name shaped like a UUID would make lookups by ident ambiguous.
		if _, err := uuid.Parse(n.Name); err == nil {
			return InvalidField("name", ErrInvalidName, "%q looks like a UUID", n.Name)
		}
	}
	if n.InstanceUUID != "" && !ValidUUID(n.InstanceUUID) {
		return InvalidField("instance_uuid", ErrInvalidUUID, "%q is not a canonical UUID", n.InstanceUUID)
	}
	if _, err := n.Access(); err != nil {
		return err
	}
	switch n.PowerState {
	case "", PowerOn, PowerOff, PowerError:
	default:
		return InvalidField("power_state", ErrInvalidPowerState, "%q: use %q, %q, %q or null", n.PowerState, PowerOn, PowerOff, PowerError)
	}
	switch n.TargetPowerState {
	case "", PowerOn, PowerOff:
	default:
		return InvalidField("target_power_state", ErrInvalidPowerState, "%q: use %q, %q or null", n.TargetPowerState, PowerOn, PowerOff)
	}
	if !slices.Contains(ProvisionStates, n.ProvisionState) {
		return InvalidField("provision_state", ErrInvalidProvisionState, "%q is not a provision state", n.ProvisionState)
	}
	if err := ValidResourceClass(n.ResourceClass); err != nil {
		return err
	}
	if g, err := ConductorGroup(n.ConductorGroup); err != nil || g != n.ConductorGroup {
		return InvalidField("conductor_group", ErrInvalidConductorGroup, "%q: use at most 255 lower-case letters, digits and _ - .", n.ConductorGroup)
	}
	return ValidTraits(n.Traits)
}

// conductorGroupRE is Ironic's validate_conductor_group.
var conductorGroupRE = regexp.MustCompile(`^[a-zA-Z0-9_\-.]{0,255}$`)

// ConductorGroup checks a conductor group as Ironic does (letters, digits,
// _ - . and at most 255 characters; "" is the default group) and returns
// it in lower case: groups are case-insensitive.
func ConductorGroup(g string) (string, error) {
	if !conductorGroupRE.MatchString(g) {
		return "", InvalidField("conductor_group", ErrInvalidConductorGroup, "%q: use at most 255 letters, digits and _ - .", g)
	}
	return strings.ToLower(g), nil
}

// MaxResourceClassLength is Ironic's limit on resource_class.
const MaxResourceClassLength = 80

// ValidResourceClass checks resource_class as Ironic's API does: a string
// of at most 80 characters ("" is null).
func ValidResourceClass(rc string) error {
	if len(rc) > MaxResourceClassLength {
		return InvalidField("resource_class", ErrInvalidResourceClass, "is longer than %d characters", MaxResourceClassLength)
	}
	return nil
}

// MaxTraits is Ironic's limit on a node's traits.
const MaxTraits = 50

// traitRE is a trait's shape: os_traits' standard names (HW_CPU_X86_AVX2,
// ...) and custom ones (CUSTOM_ and A-Z, 0-9, _), at most 255 characters.
// metalpower does not carry os_traits' list, so any standard-shaped name
// is accepted.
var traitRE = regexp.MustCompile(`^[A-Z][A-Z0-9_]{0,254}$`)

// ValidTraits checks a node's traits as Ironic's API does.
func ValidTraits(traits []string) error {
	if len(traits) > MaxTraits {
		return InvalidField("traits", ErrInvalidTrait, "could not be set: a node can have at most %d traits", MaxTraits)
	}
	for _, t := range traits {
		if !traitRE.MatchString(t) {
			return InvalidField("traits", ErrInvalidTrait, "%q: a valid trait must be no longer than 255 characters. Standard traits are defined in the os_traits library. A custom trait must start with the prefix CUSTOM_ and use the following characters: A-Z, 0-9 and _", t)
		}
	}
	return nil
}

// New returns a node in Ironic's initial state (enroll, power unknown) with
// a fresh UUID unless one is given.
func New(uuidStr, name, driver string, info DriverInfo) *Node {
	if uuidStr == "" {
		uuidStr = uuid.NewString()
	}
	return &Node{
		UUID:           strings.ToLower(uuidStr),
		Name:           name,
		Driver:         driver,
		DriverInfo:     info,
		ProvisionState: Enroll,
	}
}

// InvalidDriverInfo reports whether err says the node's driver or
// driver_info fails validation (Ironic's power.validate), as opposed to a
// BMC that cannot be reached or answers wrongly.
func InvalidDriverInfo(err error) bool {
	return errors.Is(err, bmc.ErrUnknownDriver) || errors.Is(err, ErrMissingDriverInfo) || errors.Is(err, ErrMalformedDriverInfo)
}
