// Package pdusim runs Debian's SNMP agent, net-snmp's snmpd, as a power
// distribution unit for tests: a PDU of one of the families OpenStack
// Ironic's snmp power interface drives, with a writable outlet table, that
// can be stopped and restarted mid-test. Helpers read and switch outlets
// with Debian's snmpget and snmpset, as an operator would.
//
// snmpd speaks the protocol: SNMPv1, v2c and v3 (USM), communities, error
// statuses, getnext across the whole MIB. Only the outlet table is ours:
// pdu.pl, a Perl program snmpd runs through its pass_persist extension,
// serves it from a state file that survives restarts.
//
// What a client sees, as from a real agent:
//   - A GET of a missing outlet, or of another family's object, answers
//     noSuchInstance or noSuchObject in v2c and v3, noSuchName in v1.
//   - A SET of anything but the family's on and off values (APC's reboot,
//     say) is refused with wrongValue (badValue in v1), of a type other
//     than INTEGER with wrongType, of Eaton's outletControlStatus with
//     notWritable, and of a missing outlet, by snmpd itself, with
//     notWritable (noSuchName in v1).
//   - A request with an unknown community gets no answer at all; a SET
//     with the read-only community is refused with noAccess (noSuchName
//     in v1).
package pdusim

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

//go:embed pdu.pl
var pduPL []byte

// perl runs pdu.pl. It is Debian's own (perl-base is essential), not
// whatever perl comes first on PATH.
const perl = "/usr/bin/perl"

// readyTimeout bounds how long snmpd may take to answer; it normally does
// in a few tens of milliseconds.
const readyTimeout = 10 * time.Second

// Options configures a PDU.
type Options struct {
	// Family is the PDU's kind as Ironic's snmp_driver names it, such as
	// "apc_rackpdu" or "eatonpower"; see Families.
	Family string
	// Outlets is the number of outlets, numbered from 1; default 8, or
	// len(Initial).
	Outlets int
	// Initial is each outlet's first state, true for on, outlet n at
	// index n-1; nil for all on.
	Initial []bool
	// SysObjectID overrides the family's sysObjectID, for testing the
	// prefix match of family detection with a longer, model-specific one.
	SysObjectID string

	// Community is the read-write community of SNMPv1 and v2c; default
	// "private".
	Community string
	// ReadCommunity, if set, is a read-only community besides.
	ReadCommunity string

	// User, if set, is an SNMPv3 (USM) user with read-write access. The
	// security level the agent requires of it follows from the keys given:
	// authPriv with both, authNoPriv with AuthKey only, noAuthNoPriv with
	// neither.
	User string
	// AuthProtocol is MD5, SHA (SHA-1), SHA-224, SHA-256, SHA-384 or
	// SHA-512; default SHA when AuthKey is set.
	AuthProtocol string
	// AuthKey is the authentication passphrase, at least 8 characters.
	AuthKey string
	// PrivProtocol is DES or AES (AES-128); default AES when PrivKey is set.
	PrivProtocol string
	// PrivKey is the privacy passphrase, at least 8 characters; it needs
	// AuthKey.
	PrivKey string

	// SwitchDelay is how long a switch takes after the SET that asks for
	// it. Meanwhile an Eaton outlet reads as pending off (2) or pending
	// on (3) and the other families read the old state. Zero switches at
	// once.
	SwitchDelay time.Duration

	// Dir holds the configuration, state, logs and snmpd's persistent
	// data; default a new temporary directory that Close removes.
	Dir string
}

// PDU is a running (or stopped) simulated PDU.
type PDU struct {
	opts   Options
	fam    family
	sysOID string
	snmpd  string
	dir    string
	ownDir bool
	host   string
	port   int

	conf, persistDir, clientDir, log, state, sets string

	mu     sync.Mutex // held across a whole start or stop
	cmd    *exec.Cmd  // nil while stopped
	done   chan struct{}
	err    error          // Wait's result, valid once done is closed
	held   net.PacketConn // the port, bound by us while snmpd is stopped
	closed bool
}

// errBind is snmpd failing to bind its port, which another program took
// between our finding it free and snmpd binding it.
var errBind = errors.New("snmpd could not bind its port")

// Start writes the configuration, starts snmpd on a free UDP port of
// 127.0.0.1 and returns once it answers an SNMP GET of sysObjectID and of
// outlet 1.
func Start(ctx context.Context, opts Options) (*PDU, error) {
	p, err := newPDU(opts)
	if err != nil {
		return nil, fmt.Errorf("pdusim: %w", err)
	}
	for attempt := 1; ; attempt++ {
		err = p.setUp()
		if err == nil {
			p.mu.Lock()
			err = p.start(ctx)
			p.mu.Unlock()
		}
		if err == nil {
			return p, nil
		}
		if !errors.Is(err, errBind) || attempt == 3 {
			p.Close()
			return nil, fmt.Errorf("pdusim: %w", err)
		}
	}
}

// newPDU checks opts, fills in the defaults and finds the programs.
func newPDU(opts Options) (*PDU, error) {
	fam, ok := families[opts.Family]
	if !ok {
		return nil, fmt.Errorf("unknown family %q; want one of %s", opts.Family, strings.Join(Families(), ", "))
	}
	if opts.Outlets == 0 {
		opts.Outlets = 8
		if opts.Initial != nil {
			opts.Outlets = len(opts.Initial)
		}
	}
	if opts.Outlets < 1 || opts.Outlets > 4096 {
		return nil, fmt.Errorf("Outlets = %d, want 1 to 4096", opts.Outlets)
	}
	if opts.Initial != nil && len(opts.Initial) != opts.Outlets {
		return nil, fmt.Errorf("Initial has %d states for %d outlets", len(opts.Initial), opts.Outlets)
	}
	sysOID := fam.sysObjectID
	if opts.SysObjectID != "" {
		sysOID = strings.TrimPrefix(opts.SysObjectID, ".")
		if !numericOID(sysOID) {
			return nil, fmt.Errorf("SysObjectID %q is not a numeric OID", opts.SysObjectID)
		}
	}
	if opts.Community == "" {
		opts.Community = "private"
	}
	if !word(opts.Community) || (opts.ReadCommunity != "" && !word(opts.ReadCommunity)) {
		return nil, errors.New("communities must be printable ASCII without blanks, quotes, backslashes or '#', and not start with '-'")
	}
	if opts.ReadCommunity == opts.Community {
		return nil, errors.New("ReadCommunity is the same as Community")
	}
	if err := checkUser(&opts); err != nil {
		return nil, err
	}
	if opts.SwitchDelay < 0 {
		return nil, fmt.Errorf("SwitchDelay = %v, want 0 or more", opts.SwitchDelay)
	}

	snmpd, err := exec.LookPath("snmpd")
	if err != nil {
		// Debian's snmpd is in /usr/sbin, which a user's PATH may lack.
		if _, serr := os.Stat("/usr/sbin/snmpd"); serr != nil {
			return nil, fmt.Errorf("snmpd not installed; `make deps` installs it (apt-get install snmpd snmp): %w", err)
		}
		snmpd = "/usr/sbin/snmpd"
	}
	for _, tool := range []string{"snmpget", "snmpset"} {
		if _, err := exec.LookPath(tool); err != nil {
			return nil, fmt.Errorf("%s not installed; `make deps` installs it (apt-get install snmp): %w", tool, err)
		}
	}
	if _, err := os.Stat(perl); err != nil {
		return nil, fmt.Errorf("pass_persist helper needs Debian's perl: %w", err)
	}

	p := &PDU{opts: opts, fam: fam, sysOID: sysOID, snmpd: snmpd, dir: opts.Dir, host: "127.0.0.1"}
	if p.dir == "" {
		if p.dir, err = os.MkdirTemp("", "pdusim-"); err != nil {
			return nil, err
		}
		p.ownDir = true
	} else if p.dir, err = filepath.Abs(p.dir); err != nil {
		return nil, err
	}
	// snmpd splits the pass_persist line at blanks and ends it at '#' or
	// ';', and -c takes a comma-separated list.
	if strings.ContainsAny(p.dir, " \t\n#;,\"'\\") {
		p.Close()
		return nil, fmt.Errorf("directory %q: blanks, quotes, '#', ';' and ',' are not supported", p.dir)
	}
	p.conf = filepath.Join(p.dir, "snmpd.conf")
	p.persistDir = filepath.Join(p.dir, "persist")
	p.clientDir = filepath.Join(p.dir, "client")
	p.log = filepath.Join(p.dir, "snmpd.log")
	p.state = filepath.Join(p.dir, "outlets.state")
	p.sets = filepath.Join(p.dir, "sets.log")
	return p, nil
}

// setUp picks a free port and writes every file snmpd and pdu.pl read:
// the configurations, the outlets' first state, an empty log of SETs and a
// fresh persistent directory.
func (p *PDU) setUp() error {
	c, err := net.ListenPacket("udp4", net.JoinHostPort(p.host, "0"))
	if err != nil {
		return fmt.Errorf("find a free UDP port: %w", err)
	}
	// snmpd binds UDP without SO_REUSEADDR, so it cannot share the port
	// with us: free it and let snmpd take it. Start retries should another
	// program take it first.
	p.port = c.LocalAddr().(*net.UDPAddr).Port
	c.Close()

	if err := os.RemoveAll(p.persistDir); err != nil {
		return err
	}
	for _, d := range []string{p.persistDir, p.clientDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return err
		}
	}
	files := map[string][]byte{
		p.conf: p.snmpdConf(),
		filepath.Join(p.persistDir, "snmpd.conf"): p.persistConf(),
		filepath.Join(p.dir, "pdu.conf"):          p.pduConf(),
		filepath.Join(p.dir, "pdu.pl"):            pduPL,
		p.state:                                   p.initialState(),
		p.sets:                                    nil,
	}
	for path, data := range files {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			return err
		}
	}
	return nil
}

// Addr is the agent's host:port, 127.0.0.1:<udp port>.
func (p *PDU) Addr() string { return net.JoinHostPort(p.host, strconv.Itoa(p.port)) }

// Host is the agent's IP address, 127.0.0.1.
func (p *PDU) Host() string { return p.host }

// Port is the agent's UDP port.
func (p *PDU) Port() int { return p.port }

// Family is the PDU's family, as Options.Family gave it.
func (p *PDU) Family() string { return p.opts.Family }

// Outlets is the number of outlets.
func (p *PDU) Outlets() int { return p.opts.Outlets }

// SysObjectID is what the agent reports as sysObjectID.0, without a
// leading dot.
func (p *PDU) SysObjectID() string { return p.sysOID }

// Subtree is the OID of the part of the MIB the outlet table lives in:
// what `snmpwalk` of the table walks.
func (p *PDU) Subtree() string { return p.fam.subtree }

// OutletOID is the OID of the object that tells outlet n's state: the one
// Ironic reads (and, but for Eaton, writes).
func (p *PDU) OutletOID(n int) string { return p.fam.stateColumn().oid(n) }

// Log is the path of snmpd's log, which pdu.pl's errors also go to.
func (p *PDU) Log() string { return p.log }

// Start starts the stopped agent on its old port with the outlets' state
// as it was, and waits until it answers.
func (p *PDU) Start(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return errors.New("pdusim: closed")
	}
	if p.cmd != nil {
		return errors.New("pdusim: snmpd is already running")
	}
	if err := p.start(ctx); err != nil {
		p.hold()
		return fmt.Errorf("pdusim: %w", err)
	}
	return nil
}

// Stop kills snmpd and pdu.pl (SIGKILL, as a crash or power loss of the
// PDU's management card would) and leaves the agent down until Start or
// Restart. The port stays bound meanwhile, so requests go unanswered and
// time out, as from a dead agent, rather than drawing an ICMP port
// unreachable.
func (p *PDU) Stop() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return errors.New("pdusim: closed")
	}
	p.kill()
	p.hold()
	return nil
}

// Restart kills snmpd and starts it again on the same port: outlet states
// and SNMPv3 users survive, snmpd's counters do not.
func (p *PDU) Restart(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return errors.New("pdusim: closed")
	}
	p.kill()
	if err := p.start(ctx); err != nil {
		p.hold()
		return fmt.Errorf("pdusim: %w", err)
	}
	return nil
}

// hold binds the port while snmpd is down. p.mu is held.
func (p *PDU) hold() {
	if p.held != nil {
		return
	}
	if c, err := net.ListenPacket("udp4", p.Addr()); err == nil {
		p.held = c
	}
}

// start runs snmpd and waits until it answers. p.mu is held.
func (p *PDU) start(ctx context.Context) error {
	if p.held != nil {
		p.held.Close()
		p.held = nil
	}
	logf, err := os.OpenFile(p.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	logStart, err := logf.Seek(0, io.SeekEnd)
	if err != nil {
		logf.Close()
		return err
	}
	fmt.Fprintf(logf, "=== %s: start on %s\n", time.Now().Format(time.RFC3339Nano), p.Addr())
	// -f: stay in the foreground; -C: read no configuration but ours,
	// not even the persistent one, hence its explicit -c; -m "": load no
	// MIB files (Debian ships almost none, and each missing one is a
	// warning); -A: append to the log, which must come before -Lf.
	cmd := exec.Command(p.snmpd, "-f", "-C", "-c", p.conf+","+filepath.Join(p.persistDir, "snmpd.conf"),
		"-m", "", "-A", "-Lf", p.log)
	cmd.Dir = p.dir
	cmd.Env = append(os.Environ(), "SNMP_PERSISTENT_DIR="+p.persistDir)
	// pdu.pl's stderr is snmpd's.
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = procAttr()
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start snmpd: %w", err)
	}
	p.cmd = cmd
	done := make(chan struct{})
	p.done = done
	go func() {
		p.err = cmd.Wait()
		logf.Close()
		close(done)
	}()

	if err := p.waitReady(ctx); err != nil {
		p.kill()
		tail := readLog(p.log, logStart)
		if strings.Contains(tail, "Error opening specified endpoint") {
			err = fmt.Errorf("%w: %v", errBind, err)
		}
		return fmt.Errorf("snmpd on %s (log %s): %w\n%s", p.Addr(), p.log, err, tail)
	}
	return nil
}

// waitReady asks for sysObjectID and outlet 1 until snmpd answers with
// this PDU's: proof that snmpd is up, that it is ours and not another
// agent on the same port, and that pdu.pl works. p.mu is held.
func (p *PDU) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	oids := []string{"." + sysObjectIDOID, "." + p.OutletOID(1)}
	want := "." + sysObjectIDOID + " = OID: ." + p.sysOID + "\n." + p.OutletOID(1) + " = INTEGER: "
	var last error
	// A request sent before snmpd has bound the port is lost, and snmpd
	// takes some 50 ms to start: ask with short timeouts first, longer
	// ones for a slow machine.
	wait := 25 * time.Millisecond
	for {
		select {
		case <-p.done:
			return fmt.Errorf("snmpd exited: %v", p.err)
		case <-ctx.Done():
			return fmt.Errorf("no answer within %v: %v (last try: %v)", readyTimeout, ctx.Err(), last)
		default:
		}
		wait = min(2*wait, time.Second)
		timeout := strconv.FormatFloat(wait.Seconds(), 'f', 3, 64)
		out, err := p.run(ctx, "snmpget", p.v2cArgs(), append([]string{"-t", timeout, "-r", "0"}, oids...))
		switch {
		case err != nil:
			last = err
		case strings.HasPrefix(out, want):
			return nil
		case strings.HasPrefix(out, "."+sysObjectIDOID+" = OID: ."+p.sysOID+"\n"):
			return fmt.Errorf("pdu.pl does not serve outlet 1: %s", out)
		default:
			return fmt.Errorf("another agent answers on %s: %s", p.Addr(), out)
		}
	}
}

// kill stops snmpd and pdu.pl with SIGKILL and waits for snmpd. pdu.pl
// needs no waiting for: SIGKILL stops it at once, and it renames its
// state file into place, so none is left half written. p.mu is held.
func (p *PDU) kill() {
	if p.cmd == nil {
		return
	}
	killGroup(p.cmd.Process.Pid)
	p.cmd.Process.Kill()
	<-p.done
	p.cmd = nil
}

// Close kills snmpd, frees the port, and removes the directory if Start
// created it.
func (p *PDU) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return
	}
	p.closed = true
	p.kill()
	if p.held != nil {
		p.held.Close()
		p.held = nil
	}
	if p.ownDir {
		os.RemoveAll(p.dir)
	}
}

// State reads outlet n's state from pdu.pl's state file, without SNMP,
// so also while the agent is stopped. It is the outlet's actual power: an
// Eaton outlet pending off is still on.
func (p *PDU) State(n int) (on bool, err error) {
	if n < 1 || n > p.opts.Outlets {
		return false, fmt.Errorf("pdusim: no outlet %d (PDU has %d)", n, p.opts.Outlets)
	}
	data, err := os.ReadFile(p.state)
	if err != nil {
		return false, fmt.Errorf("pdusim: %w", err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) != 4 || f[0] != strconv.Itoa(n) {
			continue
		}
		// As pdu.pl's load: a pending switch whose time has come is done.
		cur := f[1]
		if f[2] != "-" {
			due, err := strconv.ParseFloat(f[3], 64)
			if err != nil {
				break
			}
			if float64(time.Now().UnixNano())/1e9 >= due {
				cur = f[2]
			}
		}
		return cur == "1", nil
	}
	return false, fmt.Errorf("pdusim: state file %s has no valid line for outlet %d: %q", p.state, n, data)
}

// A Set is one SET of an outlet table object that reached pdu.pl. SETs
// snmpd refuses by itself (wrong or read-only community, unknown user,
// an OID outside the table or of no outlet) never do.
type Set struct {
	Time   time.Time
	OID    string // as snmpd passed it, with a leading dot
	Value  string // as snmpd passed it: type and value, such as "integer 2"
	Result string // pdu.pl's answer: "DONE", or an error such as "wrong-value"
}

// Sets returns every SET that reached pdu.pl since Start, accepted or
// not, in order, across restarts.
func (p *PDU) Sets() ([]Set, error) {
	data, err := os.ReadFile(p.sets)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("pdusim: %w", err)
	}
	var sets []Set
	for _, line := range strings.Split(strings.TrimSuffix(string(data), "\n"), "\n") {
		if line == "" {
			continue
		}
		f := strings.Split(line, "\t")
		if len(f) != 4 {
			return nil, fmt.Errorf("pdusim: %s: bad line %q", p.sets, line)
		}
		secs, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			return nil, fmt.Errorf("pdusim: %s: bad line %q", p.sets, line)
		}
		sets = append(sets, Set{
			Time:   time.Unix(0, int64(secs*1e9)),
			OID:    f[1],
			Value:  f[2],
			Result: f[3],
		})
	}
	return sets, nil
}

// Writes is how many SETs reached pdu.pl since Start (see Sets), or -1
// if its log cannot be read, which no count a test expects matches.
func (p *PDU) Writes() int {
	sets, err := p.Sets()
	if err != nil {
		return -1
	}
	return len(sets)
}

// readLog returns what a log file holds from offset on, for error
// messages: its last 4 KiB.
func readLog(path string, offset int64) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.Size()-offset > 4096 {
		offset = fi.Size() - 4096
	}
	data, _ := io.ReadAll(io.NewSectionReader(f, offset, 4096))
	return strings.TrimSpace(string(data))
}
