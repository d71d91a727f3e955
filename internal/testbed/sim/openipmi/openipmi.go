// Package openipmi runs a fleet of Debian OpenIPMI ipmi_sim BMC simulators
// for tests and benchmarks: many BMCs per ipmi_sim process, each on its own
// UDP port with its own power state file, in processes that can be stopped
// and restarted mid-test.
//
// ipmi_sim has no power state of its own: it asks the test bed's chassis.sh,
// which keeps "1" (on) or "0" (off) in one file per BMC. That file is the
// truth PowerOn and SetPowerOn read and write, independent of any IPMI
// client.
package openipmi

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// MaxBMCsPerProcess is how many BMCs one ipmi_sim process can serve: each
// needs its own IPMB address, and there are 255 non-zero ones.
const MaxBMCsPerProcess = 255

// Options configures a fleet.
type Options struct {
	// BMCs is the total number of BMCs.
	BMCs int
	// Processes is how many ipmi_sim processes share the BMCs, evenly;
	// default 1. At most MaxBMCsPerProcess BMCs go to one process. A
	// process handles one request at a time and runs chassis.sh for every
	// chassis command (about 3 ms), so it serves a few hundred chassis
	// commands a second across all its BMCs: spread heavy load over more
	// processes.
	Processes int
	// DistinctAddresses puts process i on 127.0.0.(2+i) instead of
	// 127.0.0.1 for all, so a client can tell the processes apart by host.
	DistinctAddresses bool
	// Username and Password of the one admin user; default admin / password.
	Username, Password string
	// Dir holds the generated configurations, state files and logs;
	// default a new temporary directory that Close removes.
	Dir string
	// Testbed is the directory holding chassis.sh; default TestbedDir().
	Testbed string
}

// BMC is one simulated BMC.
type BMC struct {
	Index   int // position in Fleet.BMCs
	Process int // index of the ipmi_sim process serving it
	Host    string
	Port    int

	Username, Password string

	// StateFile holds "1" (on) or "0" (off).
	StateFile string
}

// Addr is the BMC's host:port.
func (b BMC) Addr() string {
	return net.JoinHostPort(b.Host, strconv.Itoa(b.Port))
}

// Fleet is a set of running ipmi_sim processes and their BMCs.
type Fleet struct {
	dir     string
	ownDir  bool
	bin     string
	bmcs    []BMC
	guids   [][16]byte // what each BMC answers to Get System GUID
	procs   []*process
	ports   []netip.AddrPort
	held    []net.PacketConn // one per port, for the fleet's life
	closeMu sync.Mutex
	closed  bool
}

// process is one ipmi_sim and the BMCs it serves.
type process struct {
	index int
	dir   string
	log   string
	bmcs  []int            // indices into Fleet.bmcs
	ports []netip.AddrPort // of those BMCs, in the same order

	mu   sync.Mutex // held across a whole start or stop
	cmd  *exec.Cmd  // nil while stopped
	done chan struct{}
	err  error // Wait's result, valid once done is closed
}

// TestbedDir finds the ipmi_sim test bed: $METALPOWER_TESTBED_DIR/ipmi_sim,
// or else shared/testbed/ipmi_sim beside the root of the repository holding
// the working directory (the directory with go.mod).
func TestbedDir() (string, error) {
	if d := os.Getenv("METALPOWER_TESTBED_DIR"); d != "" {
		return checkTestbed(filepath.Join(d, "ipmi_sim"))
	}
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for ; dir != filepath.Dir(dir); dir = filepath.Dir(dir) {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return checkTestbed(filepath.Join(filepath.Dir(dir), "shared", "testbed", "ipmi_sim"))
		}
	}
	return "", errors.New("ipmi_sim test bed: repository root (go.mod) not found above the working directory; set METALPOWER_TESTBED_DIR")
}

func checkTestbed(dir string) (string, error) {
	if _, err := os.Stat(filepath.Join(dir, "chassis.sh")); err != nil {
		return "", fmt.Errorf("ipmi_sim test bed not found at %s (set METALPOWER_TESTBED_DIR): %w", dir, err)
	}
	return dir, nil
}

// Start writes the configurations, starts every process and returns once
// every BMC answers as itself. All BMCs start powered on.
func Start(ctx context.Context, opts Options) (*Fleet, error) {
	if opts.BMCs < 1 {
		return nil, fmt.Errorf("openipmi: BMCs = %d, want at least 1", opts.BMCs)
	}
	if opts.Processes == 0 {
		opts.Processes = 1
	}
	if opts.Processes < 1 || opts.Processes > opts.BMCs {
		return nil, fmt.Errorf("openipmi: Processes = %d, want 1 to BMCs (%d)", opts.Processes, opts.BMCs)
	}
	if per := (opts.BMCs + opts.Processes - 1) / opts.Processes; per > MaxBMCsPerProcess {
		return nil, fmt.Errorf("openipmi: %d BMCs per process, at most %d fit (IPMB addresses); use more processes", per, MaxBMCsPerProcess)
	}
	if opts.DistinctAddresses && opts.Processes > 253 {
		return nil, fmt.Errorf("openipmi: %d processes, at most 253 distinct addresses in 127.0.0.2-254", opts.Processes)
	}
	if opts.Username == "" {
		opts.Username = "admin"
	}
	if opts.Password == "" {
		opts.Password = "password"
	}
	// IPMI's limits; lan.conf puts them between double quotes.
	if len(opts.Username) > 16 || len(opts.Password) > 20 || !quotable(opts.Username) || !quotable(opts.Password) {
		return nil, errors.New("openipmi: username (up to 16 bytes) and password (up to 20) must be printable ASCII without double quotes or backslashes")
	}
	bin, err := exec.LookPath("ipmi_sim")
	if err != nil {
		return nil, fmt.Errorf("openipmi: ipmi_sim not installed; `make deps` installs it (apt-get install openipmi): %w", err)
	}
	if opts.Testbed == "" {
		if opts.Testbed, err = TestbedDir(); err != nil {
			return nil, fmt.Errorf("openipmi: %w", err)
		}
	}
	chassis, err := filepath.Abs(filepath.Join(opts.Testbed, "chassis.sh"))
	if err != nil {
		return nil, fmt.Errorf("openipmi: %w", err)
	}
	if _, err := os.Stat(chassis); err != nil {
		return nil, fmt.Errorf("openipmi: chassis script: %w", err)
	}

	f := &Fleet{dir: opts.Dir, bin: bin}
	if f.dir == "" {
		if f.dir, err = os.MkdirTemp("", "openipmi-"); err != nil {
			return nil, fmt.Errorf("openipmi: %w", err)
		}
		f.ownDir = true
	} else if f.dir, err = filepath.Abs(f.dir); err != nil {
		return nil, fmt.Errorf("openipmi: %w", err)
	}
	// chassis_control is run by a shell, so the paths go in unquoted.
	if !plain(chassis) || !plain(f.dir) {
		f.Close()
		return nil, fmt.Errorf("openipmi: paths with blanks or quotes are not supported: %s, %s", chassis, f.dir)
	}
	if err := f.setUp(opts, chassis); err != nil {
		f.Close()
		return nil, fmt.Errorf("openipmi: %w", err)
	}

	errs := make([]error, len(f.procs))
	var wg sync.WaitGroup
	for i := range f.procs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = f.Start(ctx, i)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// setUp assigns hosts, ports and GUIDs and writes every process's files.
func (f *Fleet) setUp(opts Options, chassis string) error {
	var fleetID [12]byte
	rand.Read(fleetID[:])
	for i := range opts.Processes {
		host := "127.0.0.1"
		if opts.DistinctAddresses {
			host = "127.0.0." + strconv.Itoa(2+i)
		}
		// Process i serves BMCs [lo, hi): the first BMCs%Processes get one extra.
		lo := i*(opts.BMCs/opts.Processes) + min(i, opts.BMCs%opts.Processes)
		hi := lo + opts.BMCs/opts.Processes
		if i < opts.BMCs%opts.Processes {
			hi++
		}
		p := &process{index: i, dir: filepath.Join(f.dir, "p"+strconv.Itoa(i))}
		p.log = filepath.Join(p.dir, "ipmi_sim.log")
		for j := lo; j < hi; j++ {
			p.bmcs = append(p.bmcs, j)
			f.bmcs = append(f.bmcs, BMC{
				Index: j, Process: i, Host: host,
				Username: opts.Username, Password: opts.Password,
				StateFile: filepath.Join(p.dir, "bmc"+strconv.Itoa(j)+".power"),
			})
			// A GUID unique to this fleet and BMC lets the readiness probe
			// tell our BMC from anyone else's bound to the same port.
			var g [16]byte
			copy(g[:], fleetID[:])
			g[12], g[13], g[14], g[15] = byte(j>>24), byte(j>>16), byte(j>>8), byte(j)
			f.guids = append(f.guids, g)
		}
		f.procs = append(f.procs, p)
	}
	if err := f.allocPorts(); err != nil {
		return err
	}
	for _, p := range f.procs {
		for _, j := range p.bmcs {
			p.ports = append(p.ports, f.ports[j])
		}
		if err := f.writeConfig(p, chassis); err != nil {
			return err
		}
		for _, j := range p.bmcs {
			if err := f.SetPowerOn(f.bmcs[j], true); err != nil {
				return err
			}
		}
	}
	return nil
}

// allocPorts binds a free UDP port per BMC and keeps it bound for the
// fleet's life. ipmi_sim binds with SO_REUSEADDR, so two of them given the
// same port both start, and the one that bound last gets all the traffic.
// A bound port is never handed out as free, so holding ours keeps every
// other program off them, also while a process is stopped. SO_REUSEADDR,
// set on our socket after binding, lets ipmi_sim bind beside it; the
// kernel then delivers to ipmi_sim, bound last, and to our socket (which
// never reads) only while ipmi_sim is down.
func (f *Fleet) allocPorts() error {
	for i := range f.bmcs {
		b := &f.bmcs[i]
		c, err := net.ListenPacket("udp4", net.JoinHostPort(b.Host, "0"))
		if err != nil {
			return fmt.Errorf("find a free UDP port on %s: %w", b.Host, err)
		}
		f.held = append(f.held, c)
		if err := setReuseAddr(c.(*net.UDPConn)); err != nil {
			return fmt.Errorf("hold UDP port %v: %w", c.LocalAddr(), err)
		}
		ap := c.LocalAddr().(*net.UDPAddr).AddrPort()
		b.Port = int(ap.Port())
		f.ports = append(f.ports, ap)
	}
	return nil
}

// BMCs returns every BMC of the fleet, in Index order.
func (f *Fleet) BMCs() []BMC {
	return append([]BMC(nil), f.bmcs...)
}

// Start starts a stopped process on its old ports and state files and
// waits until all its BMCs answer.
func (f *Fleet) Start(ctx context.Context, i int) error {
	return f.with(i, func(p *process) error {
		if p.cmd != nil {
			return fmt.Errorf("openipmi: process %d is already running", i)
		}
		return f.start(ctx, p)
	})
}

// Stop kills a process (SIGKILL, as a crash or power loss would) and
// leaves it down until Start or Restart. Its ports stay bound meanwhile,
// so requests to its BMCs go unanswered, as to a dead BMC, rather than
// drawing an ICMP port unreachable.
func (f *Fleet) Stop(i int) error {
	return f.with(i, func(p *process) error {
		p.kill()
		return nil
	})
}

// Restart kills a process and starts it again on the same ports with the
// same state files: power states survive, IPMI sessions do not.
func (f *Fleet) Restart(ctx context.Context, i int) error {
	return f.with(i, func(p *process) error {
		p.kill()
		return f.start(ctx, p)
	})
}

// with runs fn on process i, holding its lock across a whole start or stop.
func (f *Fleet) with(i int, fn func(*process) error) error {
	p, err := f.process(i)
	if err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return fn(p)
}

func (f *Fleet) process(i int) (*process, error) {
	f.closeMu.Lock()
	defer f.closeMu.Unlock()
	if f.closed {
		return nil, errors.New("openipmi: fleet closed")
	}
	if i < 0 || i >= len(f.procs) {
		return nil, fmt.Errorf("openipmi: no process %d (fleet has %d)", i, len(f.procs))
	}
	return f.procs[i], nil
}

// start runs ipmi_sim for p and waits until all p's BMCs answer. p.mu is
// held.
func (f *Fleet) start(ctx context.Context, p *process) error {
	logf, err := os.OpenFile(p.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("openipmi: %w", err)
	}
	logStart, err := logf.Seek(0, io.SeekEnd)
	if err != nil {
		logf.Close()
		return fmt.Errorf("openipmi: %w", err)
	}
	fmt.Fprintf(logf, "=== %s: start\n", time.Now().Format(time.RFC3339Nano))
	// -n: no console on stdin; -p: persist nothing, so lan.conf's users
	// always apply.
	cmd := exec.Command(f.bin, "-c", filepath.Join(p.dir, "lan.conf"), "-f", filepath.Join(p.dir, "bmc.emu"), "-s", filepath.Join(p.dir, "state"), "-n", "-p")
	cmd.Dir = p.dir
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = procAttr()
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("openipmi: start process %d: %w", p.index, err)
	}
	p.cmd = cmd
	p.done = make(chan struct{})
	go func(done chan struct{}) {
		p.err = cmd.Wait()
		logf.Close()
		close(done)
	}(p.done)

	if err := f.waitReady(ctx, p); err != nil {
		p.kill()
		return fmt.Errorf("openipmi: process %d (log %s): %w\n%s", p.index, p.log, err, readLog(p.log, logStart))
	}
	return nil
}

// kill stops p's ipmi_sim with SIGKILL and waits for it. p.mu is held.
func (p *process) kill() {
	if p.cmd == nil {
		return
	}
	p.cmd.Process.Kill()
	<-p.done
	// A chassis.sh that ipmi_sim had started may still be writing a
	// state file; let it finish, so the file is whole when the process is
	// back or the caller reads it.
	waitGroup(p.cmd.Process.Pid)
	p.cmd = nil
}

// PowerOn reads the BMC's power state from its state file.
func (f *Fleet) PowerOn(b BMC) (bool, error) {
	path, err := f.stateFile(b)
	if err != nil {
		return false, err
	}
	// chassis.sh writes with `echo 0 > file`: a read between the truncation
	// and the write sees an empty file.
	for i := 0; ; i++ {
		data, err := os.ReadFile(path)
		if err != nil {
			return false, fmt.Errorf("openipmi: BMC %d power state: %w", b.Index, err)
		}
		switch strings.TrimSpace(string(data)) {
		case "1":
			return true, nil
		case "0":
			return false, nil
		case "":
			if i < 100 {
				time.Sleep(time.Millisecond)
				continue
			}
		}
		return false, fmt.Errorf("openipmi: BMC %d power state file %s holds %q, want 1 or 0", b.Index, path, data)
	}
}

// SetPowerOn sets the BMC's power state in its state file, as a person
// pressing the server's power button would: the BMC reports it from the
// next command on.
func (f *Fleet) SetPowerOn(b BMC, on bool) error {
	path, err := f.stateFile(b)
	if err != nil {
		return err
	}
	v := "0\n"
	if on {
		v = "1\n"
	}
	// Write and rename, so chassis.sh never reads a half-written file.
	tmp, err := os.CreateTemp(filepath.Dir(path), ".power-*")
	if err != nil {
		return fmt.Errorf("openipmi: BMC %d: %w", b.Index, err)
	}
	_, err = tmp.WriteString(v)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("openipmi: BMC %d: set power state: %w", b.Index, err)
	}
	return nil
}

// stateFile checks that b is one of this fleet's BMCs and returns its
// state file.
func (f *Fleet) stateFile(b BMC) (string, error) {
	if b.Index < 0 || b.Index >= len(f.bmcs) || f.bmcs[b.Index].Port != b.Port || f.bmcs[b.Index].Host != b.Host {
		return "", fmt.Errorf("openipmi: BMC %d (%s) is not in this fleet", b.Index, b.Addr())
	}
	return f.bmcs[b.Index].StateFile, nil
}

// Close kills every process, waits for them, and removes the directory if
// Start created it.
func (f *Fleet) Close() {
	f.closeMu.Lock()
	if f.closed {
		f.closeMu.Unlock()
		return
	}
	f.closed = true
	f.closeMu.Unlock()

	for _, p := range f.procs {
		p.mu.Lock()
		p.kill()
		p.mu.Unlock()
	}
	for _, c := range f.held {
		c.Close()
	}
	if f.ownDir {
		os.RemoveAll(f.dir)
	}
}

func anyKey(m map[netip.AddrPort]int) netip.AddrPort {
	for k := range m {
		return k
	}
	return netip.AddrPort{}
}

// readLog returns what a log file holds from offset on, for error messages.
func readLog(path string, offset int64) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	data, _ := io.ReadAll(io.NewSectionReader(f, offset, 4096))
	return strings.TrimSpace(string(data))
}
