// Package ipmi drives server power over IPMI 2.0 (RMCP+, lanplus) with
// go-ipmi, as Ironic's ipmitool driver does with ipmitool.
package ipmi

import (
	"context"
	"errors"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/bougou/go-ipmi/pkg/client"
	"github.com/bougou/go-ipmi/pkg/command/chassis"
	"github.com/bougou/go-ipmi/pkg/types"

	"github.com/metalpower/metalpower/internal/bmc"
	"github.com/metalpower/metalpower/internal/node"
)

// Options tunes the client; zero values take the defaults.
type Options struct {
	// AttemptTimeout bounds one UDP request/response (default 2 s; go-ipmi's
	// 1 s is below what loaded OpenBMC needs for RAKP).
	AttemptTimeout time.Duration
	// Retries per request after the first attempt (default 2).
	Retries int
	// SessionMaxAge: an RMCP+ session is reused for this long, then
	// reopened (default 25 s). go-ipmi sends a keepalive on the session
	// every 30 s from its own goroutine, and that races our requests on the
	// shared sequence number; retiring sessions before 30 s means it never
	// fires.
	SessionMaxAge time.Duration
	// PollInterval is the first wait between reads while a reboot waits for
	// the server to go off (default 500 ms, growing 1.5x).
	PollInterval time.Duration
	// Pacer, when set, spaces commands to the BMC.
	Pacer *Pacer
}

func (o Options) withDefaults() Options {
	if o.AttemptTimeout <= 0 {
		o.AttemptTimeout = 2 * time.Second
	}
	if o.Retries <= 0 {
		o.Retries = 2
	}
	if o.SessionMaxAge <= 0 {
		o.SessionMaxAge = 25 * time.Second
	}
	if o.PollInterval <= 0 {
		o.PollInterval = 500 * time.Millisecond
	}
	return o
}

// Client manages one BMC. Its methods are safe for concurrent use: a go-ipmi
// client is not (sequence numbers race), so calls take turns on one session.
type Client struct {
	info node.IPMIInfo
	opts Options

	mu       sync.Mutex
	conn     *client.Client
	openedAt time.Time
}

var _ bmc.PowerManager = (*Client)(nil)

// New returns a client for the BMC in info. It connects on first use.
func New(info node.IPMIInfo, opts Options) *Client {
	return &Client{info: info, opts: opts.withDefaults()}
}

// PowerState reads the chassis power state.
func (c *Client) PowerState(ctx context.Context) (string, error) {
	var on bool
	err := c.do(ctx, "get power state", func(ctx context.Context, conn *client.Client) error {
		st, err := conn.GetChassisStatus(ctx)
		if err != nil {
			return err
		}
		on = st.PowerIsOn
		return nil
	})
	if err != nil {
		return "", err
	}
	if on {
		return node.PowerOn, nil
	}
	return node.PowerOff, nil
}

// SetPowerState issues the chassis control for target. Reboots follow
// Ironic's ipmitool driver: power off (hard or soft) unless already off,
// wait until off, then power on; a power cycle would fail on a server
// that is off, and some BMCs reject "off" when already off.
func (c *Client) SetPowerState(ctx context.Context, target string) error {
	switch target {
	case node.PowerOn:
		return c.control(ctx, target, chassis.ChassisControlPowerUp)
	case node.PowerOff:
		return c.control(ctx, target, chassis.ChassisControlPowerDown)
	case node.SoftPowerOff:
		return c.control(ctx, target, chassis.ChassisControlSoftShutdown)
	case node.Reboot, node.SoftReboot:
		off := chassis.ChassisControlPowerDown
		if target == node.SoftReboot {
			off = chassis.ChassisControlSoftShutdown
		}
		state, err := c.PowerState(ctx)
		if err != nil {
			return err
		}
		if state != node.PowerOff {
			if err := c.control(ctx, target, off); err != nil {
				return err
			}
			if err := bmc.WaitForState(ctx, c.PowerState, node.PowerOff, c.opts.PollInterval); err != nil {
				return c.classify(ctx, "set power state to "+target, err)
			}
		}
		return c.control(ctx, target, chassis.ChassisControlPowerUp)
	}
	return &bmc.Error{Kind: bmc.Unsupported, Op: "set power state to " + target, BMC: c.info.HostPort(), Err: bmc.ErrUnsupportedTarget}
}

func (c *Client) control(ctx context.Context, target string, ctl chassis.ChassisControl) error {
	return c.do(ctx, "set power state to "+target, func(ctx context.Context, conn *client.Client) error {
		_, err := conn.ChassisControl(ctx, ctl)
		return err
	})
}

// do runs one request on the session, opening it if needed. A failed
// request drops the session, so the next call starts clean.
func (c *Client) do(ctx context.Context, op string, fn func(context.Context, *client.Client) error) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.opts.Pacer.Wait(ctx, c.info.HostPort()); err != nil {
		return c.classify(ctx, op, err)
	}
	if c.conn != nil && time.Since(c.openedAt) > c.opts.SessionMaxAge {
		c.closeLocked()
	}
	if c.conn == nil {
		if err := c.connectLocked(ctx); err != nil {
			return c.classify(ctx, op, err)
		}
	}
	if err := fn(ctx, c.conn); err != nil {
		c.closeLocked()
		return c.classify(ctx, op, err)
	}
	return nil
}

func (c *Client) connectLocked(ctx context.Context) error {
	conn, err := client.NewClient(c.info.Address, c.info.Port, c.info.Username, c.info.Password)
	if err != nil {
		return err
	}
	conn.WithTimeout(c.opts.AttemptTimeout).WithRetry(c.opts.Retries)
	if c.info.CipherSuite >= 0 {
		conn.WithCipherSuiteID(types.CipherSuiteID(c.info.CipherSuite))
	} else {
		// Suite 17 (SHA-256) first, then 3 (SHA-1), as ipmitool does; a
		// pinned list also skips the cipher suite discovery that BMCs
		// ignoring it (ipmi_sim) answer only after a long stall.
		conn.WithCipherSuiteID(types.CipherSuiteID17, types.CipherSuiteID3)
	}
	if err := conn.Connect(ctx); err != nil {
		conn.Close(context.WithoutCancel(ctx))
		return err
	}
	c.conn, c.openedAt = conn, time.Now()
	return nil
}

func (c *Client) closeLocked() {
	if c.conn == nil {
		return
	}
	// Closing sends Close Session; a dead BMC must not hold us up.
	ctx, cancel := context.WithTimeout(context.Background(), c.opts.AttemptTimeout)
	defer cancel()
	c.conn.Close(ctx)
	c.conn = nil
}

// Close ends the session.
func (c *Client) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closeLocked()
	return nil
}

// classify turns a go-ipmi error into a bmc.Error. go-ipmi reports
// authentication failures only in message text, so that text is read here,
// once, and nowhere else.
func (c *Client) classify(ctx context.Context, op string, err error) error {
	if _, ok := bmc.KindOf(err); ok {
		return err
	}
	kind := bmc.Transient
	var rerr *types.ResponseError
	var nerr net.Error
	msg := strings.ToLower(err.Error())
	switch {
	case ctx.Err() != nil, errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded):
		kind = bmc.Transient
	case errors.As(err, &rerr):
		kind = completionKind(rerr.CompletionCode())
	case errors.As(err, &nerr) && nerr.Timeout():
		kind = bmc.Transient
	case strings.Contains(msg, "no such host"), strings.Contains(msg, "too long"):
		kind = bmc.Config
	case strings.Contains(msg, "unauthorized name"), strings.Contains(msg, "invalid integrity"),
		strings.Contains(msg, "authcode"), strings.Contains(msg, "auth code"), strings.Contains(msg, "rakp2"),
		strings.Contains(msg, "rakp 2"), strings.Contains(msg, "insufficient privilege"),
		strings.Contains(msg, "invalid role"), strings.Contains(msg, "unauthorized role"):
		kind = bmc.Auth
	}
	return &bmc.Error{Kind: kind, Op: op, BMC: c.info.HostPort(), Err: bmc.Scrub(err, c.info.Password)}
}

// completionKind sorts IPMI completion codes (IPMI 2.0 table 5-2).
func completionKind(cc types.CompletionCode) bmc.Kind {
	switch cc {
	case types.CodeInsufficientPrivilege:
		return bmc.Auth
	case types.CodeInvalidCommand, types.CodeRequestDataFieldInvalid, types.CodeParameterOutOfRange,
		types.CodeRequestDataLengthInvalid, types.CodeRequestDataTruncated, types.CodeIllegalCommand:
		return bmc.Unsupported
	}
	// Busy, timeout, unspecified, cannot respond, not supported in the
	// present state: a later attempt can succeed.
	return bmc.Transient
}
