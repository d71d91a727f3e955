// Package ipmi drives server power over IPMI 2.0 (RMCP+, lanplus) with
// go-ipmi, as Ironic's ipmitool driver does with ipmitool.
package ipmi

import (
	"context"
	"errors"
	"net"
	"os"
	"strings"
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
	// SessionIdleTimeout: a session unused for this long is closed rather
	// than kept (default 10 s). BMCs drop idle sessions on their own
	// timeouts (ipmi_sim after about 30 s, many real BMCs after 30 to 60 s)
	// and a request on a dropped session is never answered, so a session is
	// kept only while the next call is likely to come well before that.
	SessionIdleTimeout time.Duration
	// SessionMaxAge: a session is used for calls for at most this long after
	// it opened, then replaced (default 20 s). Whatever is set, a call never
	// starts on a session unless all its attempts end before go-ipmi's
	// keepalive would first fire (30 s).
	SessionMaxAge time.Duration
	// PollInterval is the first wait between reads while a reboot waits for
	// the server to go off (default 500 ms, growing 1.5x).
	PollInterval time.Duration
	// Pacer, when set, spaces commands to the BMC.
	Pacer *Pacer
	// Sessions, when set, bounds the sessions held per BMC across every
	// client sharing it; otherwise the client has a limit of its own.
	Sessions *Sessions
}

// keepaliveMargin keeps our last call on a session this far from the
// moment go-ipmi's keepalive would fire.
const keepaliveMargin = 2 * time.Second

func (o Options) withDefaults() Options {
	if o.AttemptTimeout <= 0 {
		o.AttemptTimeout = 2 * time.Second
	}
	if o.Retries <= 0 {
		o.Retries = 2
	}
	if o.SessionIdleTimeout <= 0 {
		o.SessionIdleTimeout = 10 * time.Second
	}
	if o.SessionMaxAge <= 0 {
		o.SessionMaxAge = 20 * time.Second
	}
	if o.PollInterval <= 0 {
		o.PollInterval = 500 * time.Millisecond
	}
	if o.Sessions == nil {
		o.Sessions = NewSessions(0)
	}
	return o
}

// maxAge is how long after opening a session may still start a call: never
// so late that the call's attempts could run into go-ipmi's keepalive. Zero
// or less means one call per session.
func (o Options) maxAge() time.Duration {
	limit := keepalivePeriod - keepaliveMargin - time.Duration(o.Retries+1)*o.spacedAttempt()
	return min(o.SessionMaxAge, limit)
}

// spacedAttempt is how long go-ipmi waits for an answer before it sends
// a request again: at least the pacer's interval, so its own retries keep
// the BMC's pace too (Ironic passes min_command_interval to ipmitool as
// -N, its wait between retransmissions).
func (o Options) spacedAttempt() time.Duration {
	return max(o.AttemptTimeout, o.Pacer.Interval())
}

// Client manages one BMC. Its methods are safe for concurrent use: calls
// take turns on at most one session (a go-ipmi client is not safe for
// concurrent use: sequence numbers race).
type Client struct {
	info Info
	opts Options

	turn  chan struct{} // held by the call (or the reaper) using sess
	sess  *session
	timer *time.Timer // retires sess when it is not used again in time
}

var _ bmc.PowerManager = (*Client)(nil)

// New returns a client for the BMC in info. It connects on first use.
func New(info Info, opts Options) *Client {
	return &Client{info: info, opts: opts.withDefaults(), turn: make(chan struct{}, 1)}
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
// that is off, and some BMCs reject "off" when already off. A node with
// disable_power_off reboots by hard reset (no off phase) and has no soft
// reboot: IPMI cannot restart the OS without powering off.
func (c *Client) SetPowerState(ctx context.Context, target string, p bmc.Policy) error {
	op := "set power state to " + target
	if p.DisablePowerOff {
		switch target {
		case node.Reboot:
			// A reset of a server that is off would leave it off.
			state, err := c.PowerState(ctx)
			if err != nil {
				return err
			}
			if state == node.PowerOff {
				return c.control(ctx, target, chassis.ChassisControlPowerUp)
			}
			return c.control(ctx, target, chassis.ChassisControlHardReset)
		case node.PowerOff, node.SoftPowerOff, node.SoftReboot:
			return &bmc.Error{Kind: bmc.Unsupported, Op: op, BMC: c.info.HostPort(), Err: bmc.ErrPowerOffDisabled}
		}
	}
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
				return c.classify(ctx, op, err)
			}
		}
		return c.control(ctx, target, chassis.ChassisControlPowerUp)
	}
	return &bmc.Error{Kind: bmc.Unsupported, Op: op, BMC: c.info.HostPort(), Err: bmc.ErrUnsupportedTarget}
}

func (c *Client) control(ctx context.Context, target string, ctl chassis.ChassisControl) error {
	return c.do(ctx, "set power state to "+target, func(ctx context.Context, conn *client.Client) error {
		_, err := conn.ChassisControl(ctx, ctl)
		return err
	})
}

// do runs one request, on the current session when it is still usable,
// otherwise on a new one. A reused session gets a single attempt: if the
// BMC does not answer it, the session is presumed dropped (BMC restart,
// session timeout) and the request is made again on a new session within
// the same call, with the usual retries.
func (c *Client) do(ctx context.Context, op string, fn func(context.Context, *client.Client) error) error {
	select {
	case c.turn <- struct{}{}:
	case <-ctx.Done():
		return c.classify(ctx, op, ctx.Err())
	}
	defer c.release()
	paced, err := c.opts.Pacer.Acquire(ctx, c.info.HostPort())
	if err != nil {
		return c.classify(ctx, op, err)
	}
	defer func() { paced() }()
	if s := c.sess; s != nil && !s.usable(time.Now(), c.opts) {
		c.closeLocked()
	}
	if s := c.sess; s != nil {
		// One attempt: no retransmission, so no spacing within it.
		s.conn.WithRetry(0).WithTimeout(c.opts.AttemptTimeout)
		err := s.run(ctx, fn)
		s.conn.WithRetry(c.opts.Retries).WithTimeout(c.opts.spacedAttempt())
		if c.keepOrDrop(s, err) {
			return nil
		}
		if ctx.Err() != nil || !sessionFailure(err) {
			return c.classify(ctx, op, err)
		}
		// The new session is another command to the BMC: it waits the
		// interval from the end of this one.
		paced()
		if paced, err = c.opts.Pacer.Acquire(ctx, c.info.HostPort()); err != nil {
			return c.classify(ctx, op, err)
		}
	}
	release, err := c.opts.Sessions.Acquire(ctx, c.info.HostPort())
	if err != nil {
		return c.classify(ctx, op, err)
	}
	s, err := openSession(ctx, c.info.Address, c.info.Port, c.info.Username, c.info.Password, c.info.CipherSuite, c.opts, release)
	if err != nil {
		return c.classify(ctx, op, err)
	}
	c.sess = s
	if err := s.run(ctx, fn); !c.keepOrDrop(s, err) {
		return c.classify(ctx, op, err)
	}
	return nil
}

// keepOrDrop settles the session after a call and reports whether the call
// succeeded. A session stays after success or after an answer from the BMC
// (a completion code, say "busy"); after silence, a socket error or a
// cancelled call it is closed.
func (c *Client) keepOrDrop(s *session, err error) bool {
	var rerr *types.ResponseError
	if err == nil || errors.As(err, &rerr) {
		s.lastUsed = time.Now()
		return err == nil
	}
	c.closeLocked()
	return false
}

// sessionFailure reports whether err may mean the session is gone rather
// than the command refused: worth a new session within the same call.
func sessionFailure(err error) bool {
	var rerr *types.ResponseError
	return err != nil && !errors.As(err, &rerr)
}

// armLocked (re)starts the timer that retires the session when it is not
// used again in time.
func (c *Client) armLocked() {
	d := time.Until(c.sess.retireAt(c.opts))
	if c.timer == nil {
		c.timer = time.AfterFunc(d, c.reap)
		return
	}
	c.timer.Reset(d)
}

// release ends a call's turn, first setting the timer for the session the
// call leaves, however the call ended.
func (c *Client) release() {
	if c.sess != nil {
		c.armLocked()
	}
	<-c.turn
}

// reap runs on the timer: it waits for its turn (a call holding the session
// ends within its attempts), then retires the session if it is still due.
func (c *Client) reap() {
	c.turn <- struct{}{}
	if s := c.sess; s != nil && !time.Now().Before(s.retireAt(c.opts)) {
		c.closeLocked()
	}
	c.release()
}

// closeLocked retires the session: Close Session goes out, but no call
// waits for the answer, which a BMC that dropped the session never sends.
// It is not paced: it changes nothing on the server, and ipmitool sends
// it at the end of every invocation without waiting either.
func (c *Client) closeLocked() <-chan struct{} {
	if c.sess == nil {
		return nil
	}
	done := c.sess.closeAsync(c.opts.AttemptTimeout)
	c.sess = nil
	return done
}

// Close ends the session, sending Close Session, and waits for the BMC's
// answer at most two attempt timeouts (the close's own, and an exchange a
// cancelled call may have left on the socket).
func (c *Client) Close() error {
	c.turn <- struct{}{}
	if c.timer != nil {
		c.timer.Stop()
	}
	done := c.closeLocked()
	<-c.turn
	if done != nil {
		<-done
	}
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
	case strings.Contains(msg, rakp2Mismatch), strings.Contains(msg, "unauthorized name"), strings.Contains(msg, "invalid integrity"),
		strings.Contains(msg, "insufficient privilege"),
		strings.Contains(msg, "invalid role"), strings.Contains(msg, "unauthorized role"):
		// Only the BMC's verdict on the credentials: a garbled RAKP
		// exchange (a duplicate answer read as the next step's) fails
		// RAKP 2 too, and is transient.
		kind = bmc.Auth
	}
	return &bmc.Error{Kind: kind, Op: op, BMC: c.info.HostPort(), Err: bmc.Scrub(err, c.info.Password)}
}

// rakp2Mismatch is go-ipmi's verdict when the BMC's RAKP 2 code does not
// match the password: the wrong password. It is read in the message because
// Connect joins each cipher suite's error with %v, dropping the chain (so
// errors.Is(err, client.ErrRAKPAuthentication) never holds), and it must be
// RAKP 2's: a RAKP 4 mismatch comes after both sides proved the password,
// from a garbled exchange (a duplicate answer read as the next step's).
const rakp2Mismatch = "rakp2 authentication code mismatch"

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
