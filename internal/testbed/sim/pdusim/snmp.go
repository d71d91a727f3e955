package pdusim

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
)

// sysObjectIDOID is SNMPv2-MIB::sysObjectID.0.
const sysObjectIDOID = "1.3.6.1.2.1.1.2.0"

// snmpInSetRequestsOID is SNMPv2-MIB::snmpInSetRequests.0.
const snmpInSetRequestsOID = "1.3.6.1.2.1.11.17.0"

// Snmpget runs Debian's snmpget against the agent, as an operator would,
// and returns its standard output: the check that what a test saw through
// metalpower is what the PDU says. args are options, then OIDs; the agent's
// address goes between them. By default it speaks SNMPv2c with the
// read-write community, prints OIDs numerically (-On) and waits 1 s for
// an answer, twice more on silence; options in args override any of that
// (for example "-v1", "-c", "public", "-t", "0.3", or V3Args()...). A v2c
// noSuchObject or noSuchInstance is an answer, not an error: it is in the
// output.
func (p *PDU) Snmpget(ctx context.Context, args ...string) (string, error) {
	return p.run(ctx, "snmpget", p.v2cArgs(), args)
}

// Snmpset runs Debian's snmpset against the agent like Snmpget; after
// the options, args are OID, type, value triples such as
// ".1.3.6.1.4.1.318.1.1.12.3.3.1.1.4.1", "i", "2"; a value may be
// negative. An error status (wrongValue, notWritable, noAccess, ...) is an
// error holding snmpset's message.
func (p *PDU) Snmpset(ctx context.Context, args ...string) (string, error) {
	return p.run(ctx, "snmpset", p.v2cArgs(), args)
}

// Snmpwalk runs Debian's snmpwalk against the agent like Snmpget; with no
// args at all it walks the outlet table (Subtree).
func (p *PDU) Snmpwalk(ctx context.Context, args ...string) (string, error) {
	if len(args) == 0 {
		args = []string{"." + p.fam.subtree}
	}
	return p.run(ctx, "snmpwalk", p.v2cArgs(), args)
}

// V3Args are the snmpget/snmpset options that speak SNMPv3 as
// Options.User, at the security level the agent requires of it; nil
// without a user.
func (p *PDU) V3Args() []string {
	if p.opts.User == "" {
		return nil
	}
	args := []string{"-v3", "-u", p.opts.User, "-l", p.securityLevel()}
	if p.opts.AuthKey != "" {
		args = append(args, "-a", p.opts.AuthProtocol, "-A", p.opts.AuthKey)
	}
	if p.opts.PrivKey != "" {
		args = append(args, "-x", p.opts.PrivProtocol, "-X", p.opts.PrivKey)
	}
	return args
}

// valued are the options of the net-snmp tools that take a value, as the
// next argument unless attached: those of snmp_parse_args (but -D,
// whose value is optional and attached) and the tools' -C.
const valued = "3ACEILMOPTXYZacelmnprtuvx"

// splitOptions splits args into the leading options, with their values,
// and the rest, the OIDs and values. A "--" ends the options and is
// dropped.
func splitOptions(args []string) (opts, rest []string) {
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			return args[:i], args[i+1:]
		case len(a) < 2 || a[0] != '-':
			return args[:i], args[i:]
		case len(a) == 2 && strings.IndexByte(valued, a[1]) >= 0:
			i++
		}
	}
	return args, nil
}

func (p *PDU) v2cArgs() []string {
	return []string{"-v2c", "-c", p.opts.Community}
}

// run runs a net-snmp command-line tool: base options, args' options,
// then the agent's address and the rest of args. The address goes after
// a "--", for a negative value among the rest not to read as an option.
func (p *PDU) run(ctx context.Context, tool string, base, args []string) (string, error) {
	opts, rest := splitOptions(args)
	// -m "": load no MIB files, as snmpd; -On: numeric OIDs, which
	// without MIBs would print as "iso.3.6...".
	full := slices.Concat(base, []string{"-m", "", "-On", "-t", "1", "-r", "2"}, opts, []string{"--", p.Addr()}, rest)
	cmd := exec.CommandContext(ctx, tool, full...)
	// Read neither the system's snmp.conf nor the user's, whose defaults
	// (version, community, MIBs) would change what the arguments mean.
	cmd.Env = append(os.Environ(), "SNMPCONFPATH="+p.clientDir, "SNMP_PERSISTENT_DIR="+p.clientDir)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(stderr.String() + "\n" + stdout.String())
		return "", fmt.Errorf("%s %s on %s: %w: %s", tool, strings.Join(args, " "), p.Addr(), err, msg)
	}
	return strings.TrimSpace(stdout.String()), nil
}

// Status reads outlet n's state object with snmpget and returns its raw
// value: the family's on or off value, or for Eaton 0 (off), 1 (on),
// 2 (pending off) or 3 (pending on).
func (p *PDU) Status(ctx context.Context, n int) (int, error) {
	oid := p.OutletOID(n)
	out, err := p.Snmpget(ctx, "-Oqv", "."+oid)
	if err != nil {
		return 0, err
	}
	v, err := strconv.Atoi(out)
	if err != nil {
		return 0, fmt.Errorf("pdusim: outlet %d (%s): %s", n, oid, out)
	}
	return v, nil
}

// Outlet reads whether outlet n is on, with snmpget, translating the
// value as Ironic does: an Eaton outlet pending off is on, one pending on
// is off. Any other value is an error.
func (p *PDU) Outlet(ctx context.Context, n int) (on bool, err error) {
	v, err := p.Status(ctx, n)
	if err != nil {
		return false, err
	}
	c := p.fam.stateColumn()
	switch {
	case c.kind == "status" && (v == 1 || v == 2), c.kind == "switch" && v == c.on:
		return true, nil
	case c.kind == "status" && (v == 0 || v == 3), c.kind == "switch" && v == c.off:
		return false, nil
	}
	return false, fmt.Errorf("pdusim: outlet %d (%s) reads %d, neither on nor off", n, p.OutletOID(n), v)
}

// SetOutlet switches outlet n on or off with snmpset, as an operator at
// the PDU would behind metalpower's back: the SET counts in Sets and
// Writes, and waits SwitchDelay like any. Eaton outlets are switched by
// writing 0 (now) to outletControlOnCmd or outletControlOffCmd.
func (p *PDU) SetOutlet(ctx context.Context, n int, on bool) error {
	oid, v := p.switchOID(n, on)
	_, err := p.Snmpset(ctx, "."+oid, "i", strconv.Itoa(v))
	return err
}

// switchOID is the object to write, and the value, to switch outlet n.
func (p *PDU) switchOID(n int, on bool) (string, int) {
	if c, ok := p.fam.column("switch"); ok {
		if on {
			return c.oid(n), c.on
		}
		return c.oid(n), c.off
	}
	kind := "offcmd"
	if on {
		kind = "oncmd"
	}
	c, _ := p.fam.column(kind)
	return c.oid(n), 0
}

// SetRequests reads snmpd's snmpInSetRequests counter: every SET PDU the
// agent accepted (right community or user), whether it succeeded or not,
// since snmpd last started. Reading it is a GET, which it does not count.
func (p *PDU) SetRequests(ctx context.Context) (int, error) {
	out, err := p.Snmpget(ctx, "-Oqv", "."+snmpInSetRequestsOID)
	if err != nil {
		return 0, err
	}
	v, err := strconv.Atoi(out)
	if err != nil {
		return 0, fmt.Errorf("pdusim: snmpInSetRequests: %s", out)
	}
	return v, nil
}
