package snmp

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/gosnmp/gosnmp"

	"github.com/metalpower/metalpower/internal/bmc"
	"github.com/metalpower/metalpower/internal/node"
)

// sysObjectID is SNMPv2-MIB's sysObjectID.0, which names the PDU's model.
const sysObjectID = "1.3.6.1.2.1.1.2.0"

// pdu is the connection to one agent. gosnmp's client is not safe for
// concurrent use, so the outlets of one PDU take turns.
type pdu struct {
	info Info
	opts Options

	mu     sync.Mutex
	read   *gosnmp.GoSNMP // nil until first use, and after Close
	write  *gosnmp.GoSNMP
	family *family // detected once for "auto", as Ironic memoizes it
}

func newPDU(info Info, opts Options) *pdu { return &pdu{info: info, opts: opts} }

// PowerManager returns the handle on a's outlet.
func (p *pdu) PowerManager(a bmc.Access) bmc.PowerManager { return outlet{p, a.(Info).Outlet} }

func (p *pdu) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, g := range []*gosnmp.GoSNMP{p.read, p.write} {
		if g != nil && g.Conn != nil {
			g.Conn.Close()
		}
	}
	p.read, p.write, p.family = nil, nil, nil
	return nil
}

// client returns the read or write client, connecting on first use.
func (p *pdu) client(write bool) (*gosnmp.GoSNMP, error) {
	g := &p.read
	community := p.info.ReadCommunity
	if write {
		g, community = &p.write, p.info.WriteCommunity
	}
	if *g != nil {
		return *g, nil
	}
	c := &gosnmp.GoSNMP{
		Target:    p.info.Address,
		Port:      uint16(p.info.Port),
		Transport: "udp",
		Community: community,
		Timeout:   seconds(max(p.opts.UDPTransportTimeout, 1)),
		Retries:   max(p.opts.UDPTransportRetries, 0),
		MaxOids:   gosnmp.MaxOids,
	}
	switch p.info.Version {
	case "1":
		c.Version = gosnmp.Version1
	case "2c":
		c.Version = gosnmp.Version2c
	case "3":
		c.Version = gosnmp.Version3
		c.SecurityModel = gosnmp.UserSecurityModel
		c.ContextEngineID, c.ContextName = p.info.ContextEngineID, p.info.Context
		usm := &gosnmp.UsmSecurityParameters{UserName: p.info.User, AuthenticationProtocol: gosnmp.NoAuth, PrivacyProtocol: gosnmp.NoPriv}
		c.MsgFlags = gosnmp.NoAuthNoPriv
		if a := authProtocols[p.info.AuthProtocol]; a > gosnmp.NoAuth {
			usm.AuthenticationProtocol, usm.AuthenticationPassphrase = a, p.info.AuthKey
			c.MsgFlags = gosnmp.AuthNoPriv
			if pr := privProtocols[p.info.PrivProtocol]; pr > gosnmp.NoPriv {
				usm.PrivacyProtocol, usm.PrivacyPassphrase = pr, p.info.PrivKey
				c.MsgFlags = gosnmp.AuthPriv
			}
		}
		c.SecurityParameters = usm
		// v3 uses one user for reads and writes: one client.
		if p.read != nil {
			*g = p.read
			return *g, nil
		}
		if p.write != nil {
			*g = p.write
			return *g, nil
		}
	}
	if err := c.Connect(); err != nil {
		return nil, err
	}
	*g = c
	return c, nil
}

// get reads one integer object. ok is false when the agent has no such
// object or instance.
func (p *pdu) get(ctx context.Context, oid string) (value int, ok bool, err error) {
	g, err := p.client(false)
	if err != nil {
		return 0, false, err
	}
	g.Context = ctx
	res, err := g.Get([]string{oid})
	if err != nil {
		return 0, false, err
	}
	if res.Error == gosnmp.NoSuchName {
		return 0, false, nil // version 1's way of saying so
	}
	if res.Error != gosnmp.NoError {
		return 0, false, pduError{res.Error}
	}
	if len(res.Variables) != 1 {
		return 0, false, fmt.Errorf("the agent answered %d values for one object", len(res.Variables))
	}
	v := res.Variables[0]
	switch v.Type {
	case gosnmp.NoSuchObject, gosnmp.NoSuchInstance, gosnmp.EndOfMibView:
		return 0, false, nil
	case gosnmp.ObjectIdentifier:
		return 0, false, fmt.Errorf("%s is an object identifier, not an integer", oid)
	}
	n := gosnmp.ToBigInt(v.Value)
	return int(n.Int64()), true, nil
}

// getOID reads an object identifier (sysObjectID).
func (p *pdu) getOID(ctx context.Context, oid string) (string, error) {
	g, err := p.client(false)
	if err != nil {
		return "", err
	}
	g.Context = ctx
	res, err := g.Get([]string{oid})
	if err != nil {
		return "", err
	}
	if res.Error != gosnmp.NoError || len(res.Variables) != 1 {
		return "", nil
	}
	s, _ := res.Variables[0].Value.(string)
	return s, nil
}

func (p *pdu) set(ctx context.Context, oid string, value int) error {
	g, err := p.client(true)
	if err != nil {
		return err
	}
	g.Context = ctx
	res, err := g.Set([]gosnmp.SnmpPDU{{Name: oid, Type: gosnmp.Integer, Value: value}})
	if err != nil {
		return err
	}
	if res.Error != gosnmp.NoError {
		return pduError{res.Error}
	}
	return nil
}

// pduError is an error-status the agent answered.
type pduError struct{ status gosnmp.SNMPError }

func (e pduError) Error() string { return "the agent answered " + e.status.String() }

// familyFor is the node's family; for "auto" the one the agent's
// sysObjectID names, read once per connection.
func (p *pdu) familyFor(ctx context.Context) (family, error) {
	if p.info.Family != auto {
		return families[p.info.Family], nil
	}
	if p.family != nil {
		return *p.family, nil
	}
	id, err := p.getOID(ctx, sysObjectID)
	if err != nil {
		return family{}, err
	}
	f, ok := bySysObjectID(id)
	if !ok {
		return family{}, &bmc.Error{Kind: bmc.Config, Op: "detect the PDU family", BMC: p.info.HostPort(),
			Err: fmt.Errorf("SNMPDriverAuto: no driver matching sysObjectID %q: set snmp_driver to the PDU's family", id)}
	}
	p.family = &f
	return f, nil
}

// outlet is one node's outlet on a PDU.
type outlet struct {
	pdu *pdu
	n   int
}

var _ bmc.PowerManager = outlet{}

// Close leaves the PDU's connection to the pool.
func (o outlet) Close() error { return nil }

// PowerState reads the outlet.
func (o outlet) PowerState(ctx context.Context) (string, error) {
	o.pdu.mu.Lock()
	defer o.pdu.mu.Unlock()
	const op = "get power state"
	f, err := o.pdu.familyFor(ctx)
	if err != nil {
		return "", o.classify(ctx, op, err)
	}
	v, ok, err := o.pdu.get(ctx, oid(f.status, o.n))
	if err != nil {
		return "", o.classify(ctx, op, err)
	}
	if !ok {
		return "", o.absent(ctx, op, f)
	}
	return f.state(v), nil
}

// SetPowerState switches the outlet. A reboot is Ironic's power_reset:
// off, wait until off ([snmp] power_timeout), reboot_delay, on. Soft
// actions do not exist on a PDU.
func (o outlet) SetPowerState(ctx context.Context, target string, p bmc.Policy) error {
	op := "set power state to " + target
	switch target {
	case node.PowerOn:
		return o.switchTo(ctx, op, true)
	case node.PowerOff, node.Reboot:
		if p.DisablePowerOff {
			return o.err(bmc.Unsupported, op, bmc.ErrPowerOffDisabled)
		}
	default:
		return o.err(bmc.Unsupported, op, fmt.Errorf("%w: a PDU outlet can only be switched on and off", bmc.ErrUnsupportedTarget))
	}
	if err := o.switchTo(ctx, op, false); err != nil || target == node.PowerOff {
		return err
	}
	wait, cancel := context.WithTimeout(ctx, seconds(o.pdu.opts.PowerTimeout))
	defer cancel()
	// Ironic polls once a second.
	if err := bmc.WaitForState(wait, o.PowerState, node.PowerOff, time.Second); err != nil {
		if ctx.Err() == nil && errors.Is(err, bmc.ErrTimeout) {
			return o.err(bmc.Transient, op, err)
		}
		return err
	}
	select {
	case <-ctx.Done():
		return o.err(bmc.Transient, op, ctx.Err())
	case <-time.After(seconds(o.pdu.opts.RebootDelay)):
	}
	return o.switchTo(ctx, op, true)
}

// switchTo writes the family's command. The family is checked first, so
// a node on the wrong family or outlet never has a value written.
func (o outlet) switchTo(ctx context.Context, op string, on bool) error {
	o.pdu.mu.Lock()
	defer o.pdu.mu.Unlock()
	f, err := o.pdu.familyFor(ctx)
	if err != nil {
		return o.classify(ctx, op, err)
	}
	if _, ok, err := o.pdu.get(ctx, oid(f.status, o.n)); err != nil {
		return o.classify(ctx, op, err)
	} else if !ok {
		return o.absent(ctx, op, f)
	}
	obj, value := f.command(on, o.n)
	if err := o.pdu.set(ctx, obj, value); err != nil {
		return o.classify(ctx, op, err)
	}
	return nil
}

// absent explains an outlet object the agent does not have: the family
// is wrong (the agent's sysObjectID names another one) or the outlet does
// not exist. Either way nothing was written.
func (o outlet) absent(ctx context.Context, op string, f family) error {
	id, _ := o.pdu.getOID(ctx, sysObjectID)
	if actual, ok := bySysObjectID(id); ok && f.sysObjectID != "" && actual.sysObjectID != f.sysObjectID {
		return o.err(bmc.Config, op, fmt.Errorf("PDU family mismatch: snmp_driver is %s, but the agent's sysObjectID %s is %s's", f.name, id, actual.name))
	}
	return o.err(bmc.Config, op, fmt.Errorf("outlet %d does not exist on this %s PDU (no object %s)", o.n, f.name, oid(f.status, o.n)))
}

// classify sorts gosnmp's errors by what a caller should do.
func (o outlet) classify(ctx context.Context, op string, err error) error {
	if _, ok := bmc.KindOf(err); ok {
		return err
	}
	kind := bmc.Transient
	var pe pduError
	switch {
	case ctx.Err() != nil:
	case errors.Is(err, syscall.ECONNREFUSED):
		err = fmt.Errorf("the SNMP agent is unreachable (nothing listens on %s): %w", o.pdu.info.HostPort(), err)
	case errors.Is(err, gosnmp.ErrUnknownUsername), errors.Is(err, gosnmp.ErrWrongDigest),
		errors.Is(err, gosnmp.ErrUnknownSecurityLevel), errors.Is(err, gosnmp.ErrDecryption),
		// gosnmp words a reply signed with another key so, with no
		// sentinel to match.
		strings.Contains(err.Error(), "not authentic"):
		kind = bmc.Auth
		err = fmt.Errorf("the agent refused the SNMPv3 user or its keys: %w", err)
	case errors.As(err, &pe) && slices.Contains([]gosnmp.SNMPError{gosnmp.NoAccess, gosnmp.AuthorizationError, gosnmp.NotWritable, gosnmp.ReadOnly}, pe.status):
		kind = bmc.Auth
		err = fmt.Errorf("the agent refused the write (check snmp_community_write): %w", err)
	case errors.As(err, &pe):
		kind = bmc.Unsupported
	case errors.Is(err, gosnmp.ErrMaxRetriesExceeded):
		// A v1/v2c agent drops a request with a wrong community without
		// a word: silence is all a wrong community looks like.
		err = fmt.Errorf("no answer from the SNMP agent: it is down or unreachable, or it ignores the community (agents do not answer a wrong community): %w", err)
	}
	return o.err(kind, op, err)
}

func (o outlet) err(kind bmc.Kind, op string, err error) error {
	for _, s := range o.pdu.info.Secrets() {
		err = bmc.Scrub(err, s)
	}
	return &bmc.Error{Kind: kind, Op: op, BMC: o.pdu.info.BMC(), Err: err}
}

func sortedKeys[V any](m map[string]V) []string {
	return slices.Sorted(maps.Keys(m))
}
