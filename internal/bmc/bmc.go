// Package bmc reads and sets server power through a BMC. The ipmi and
// redfish subpackages implement it; errors are classified here once, so
// workflows branch on Kind, never on message text.
package bmc

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
)

// PowerManager is what the power workflows need from a BMC. Targets and
// states use Ironic's strings (node.PowerOn, node.Reboot, ...).
type PowerManager interface {
	// PowerState reads the current state: node.PowerOn, node.PowerOff,
	// or "" when the BMC reports a state the driver cannot map (Ironic's
	// None).
	PowerState(ctx context.Context) (string, error)
	// SetPowerState issues a power action (node.PowerOn, node.PowerOff,
	// node.Reboot, node.SoftReboot, node.SoftPowerOff) within what the
	// node's policy allows. It returns once the BMC accepted the request;
	// callers verify the outcome by reading.
	SetPowerState(ctx context.Context, target string, p Policy) error
	// Close releases the connection or session.
	Close() error
}

// Policy is what a node allows a power action to do.
type Policy struct {
	// DisablePowerOff: the node must never be off (Ironic's
	// disable_power_off). A reboot restarts it without an off phase
	// where the protocol can; an action that needs an off state is
	// refused with ErrPowerOffDisabled.
	DisablePowerOff bool
}

// Kind classifies a BMC error by what a caller should do about it.
type Kind int

const (
	// Transient errors may succeed on retry: timeouts, refused or reset
	// connections, 5xx, a BMC busy finishing the previous request.
	Transient Kind = iota
	// Auth: the BMC rejected the credentials. Retrying will not help and may
	// lock the account.
	Auth
	// Unsupported: the BMC does not offer the action (a reset type it does
	// not advertise, a completion code meaning "invalid command").
	Unsupported
	// Config: the driver_info cannot work (malformed address, unknown
	// system). Fix the node, then retry.
	Config
)

func (k Kind) String() string {
	switch k {
	case Transient:
		return "transient"
	case Auth:
		return "authentication"
	case Unsupported:
		return "unsupported"
	case Config:
		return "configuration"
	}
	return fmt.Sprintf("kind(%d)", int(k))
}

// Error is every error a driver returns. It names the BMC by address only;
// credentials never appear in it.
type Error struct {
	Kind Kind
	// Op is what was attempted: "get power state", "set power state to power off".
	Op string
	// BMC is the address (host:port or URL) of the BMC.
	BMC string
	Err error
}

func (e *Error) Error() string {
	return fmt.Sprintf("%s on BMC %s failed (%s): %v", e.Op, e.BMC, e.Kind, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

// Permanent reports whether retrying the same call cannot help.
func (e *Error) Permanent() bool { return e.Kind != Transient }

// IsPermanent reports whether err is a BMC error that retrying cannot fix.
// Errors that are not *Error (a cancelled context, say) are not permanent.
func IsPermanent(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Permanent()
}

// KindOf returns the kind of a BMC error, and false for other errors.
func KindOf(err error) (Kind, bool) {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind, true
	}
	return 0, false
}

// Sentinels wrapped by drivers for common causes.
var (
	ErrUnsupportedTarget = errors.New("unsupported power target")
	// ErrPowerOffDisabled refuses an action that would power off a node
	// with disable_power_off set.
	ErrPowerOffDisabled = errors.New("the node has disable_power_off set: this action would power it off")
	ErrTimeout          = errors.New("timed out waiting for the BMC")
)

// WaitForState polls read until it returns want, waiting interval between
// reads and growing the wait 1.5x, as Ironic's back-off loop does. It
// returns a read's error as is, and ErrTimeout when ctx ends first.
func WaitForState(ctx context.Context, read func(context.Context) (string, error), want string, interval time.Duration) error {
	for {
		state, err := read(ctx)
		if err != nil {
			return err
		}
		if state == want {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: still %s, want %s", ErrTimeout, state, want)
		case <-time.After(interval):
			interval = interval * 3 / 2
		}
	}
}

// Scrub removes a secret from an error's text, whatever a library put there.
func Scrub(err error, secret string) error {
	if err == nil || secret == "" || !strings.Contains(err.Error(), secret) {
		return err
	}
	return errors.New(strings.ReplaceAll(err.Error(), secret, "******"))
}
