//go:build linux

package openipmi

import (
	"context"
	"errors"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// These tests run Debian's ipmi_sim and check it with ipmitool. They never
// skip: `make deps` installs both.

func requireTool(t *testing.T, name string) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		t.Fatalf("%s is required for this test; `make deps` installs it (apt-get install openipmi ipmitool): %v", name, err)
	}
}

func startFleet(t *testing.T, opts Options) *Fleet {
	t.Helper()
	requireTool(t, "ipmi_sim")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	f, err := Start(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.Close)
	return f
}

// ipmitool runs ipmitool against b over RMCP+ with cipher suite 3 (ipmi_sim
// ignores the cipher suite query).
func ipmitool(t *testing.T, b BMC, args ...string) string {
	t.Helper()
	requireTool(t, "ipmitool")
	base := []string{"-I", "lanplus", "-C", "3", "-H", b.Host, "-p", strconv.Itoa(b.Port), "-U", b.Username, "-P", b.Password, "-R", "2", "-N", "1"}
	out, err := exec.Command("ipmitool", append(base, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("ipmitool %s on BMC %d (%s): %v: %s", strings.Join(args, " "), b.Index, b.Addr(), err, out)
	}
	return strings.TrimSpace(string(out))
}

func ipmitoolPower(t *testing.T, b BMC) string {
	t.Helper()
	switch out := ipmitool(t, b, "chassis", "power", "status"); out {
	case "Chassis Power is on":
		return "on"
	case "Chassis Power is off":
		return "off"
	default:
		t.Fatalf("BMC %d: unexpected ipmitool output %q", b.Index, out)
		return ""
	}
}

// asfPing sends an RMCP/ASF presence ping to every BMC at once and returns
// those that answered with a pong within timeout. It shares no code with
// the package's own readiness probe.
func asfPing(t *testing.T, bmcs []BMC, timeout time.Duration) map[int]bool {
	t.Helper()
	conn, err := net.ListenUDP("udp4", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ping := []byte{
		0x06, 0x00, 0xff, 0x06, // RMCP, class ASF
		0x00, 0x00, 0x11, 0xbe, // IANA 4542 (ASF)
		0x80, 0x01, 0x00, 0x00, // presence ping, tag 1, no data
	}
	byAddr := map[string]int{}
	for _, b := range bmcs {
		byAddr[b.Addr()] = b.Index
		if _, err := conn.WriteTo(ping, &net.UDPAddr{IP: net.ParseIP(b.Host), Port: b.Port}); err != nil {
			t.Fatal(err)
		}
	}
	answered := map[int]bool{}
	conn.SetReadDeadline(time.Now().Add(timeout))
	buf := make([]byte, 128)
	for len(answered) < len(bmcs) {
		n, from, err := conn.ReadFromUDP(buf)
		if err != nil {
			break
		}
		if i, ok := byAddr[from.String()]; ok && n >= 12 && buf[3] == 0x06 && buf[8] == 0x40 {
			answered[i] = true
		}
	}
	return answered
}

func requireAnswer(t *testing.T, bmcs []BMC) {
	t.Helper()
	got := asfPing(t, bmcs, 2*time.Second)
	for _, b := range bmcs {
		if !got[b.Index] {
			t.Errorf("BMC %d (%s, process %d) did not answer the presence ping", b.Index, b.Addr(), b.Process)
		}
	}
}

func requirePower(t *testing.T, f *Fleet, b BMC, want bool) {
	t.Helper()
	on, err := f.PowerOn(b)
	if err != nil {
		t.Fatal(err)
	}
	if on != want {
		t.Fatalf("BMC %d: state file says on=%v, want %v", b.Index, on, want)
	}
}

func TestFleet(t *testing.T) {
	f := startFleet(t, Options{BMCs: 30, Processes: 3, DistinctAddresses: true})
	bmcs := f.BMCs()
	if len(bmcs) != 30 {
		t.Fatalf("%d BMCs, want 30", len(bmcs))
	}
	addrs := map[string]bool{}
	perProcess := map[int]int{}
	for i, b := range bmcs {
		if b.Index != i || addrs[b.Addr()] {
			t.Fatalf("BMC %d: index %d, address %s (duplicate: %v)", i, b.Index, b.Addr(), addrs[b.Addr()])
		}
		addrs[b.Addr()] = true
		perProcess[b.Process]++
		if want := "127.0.0." + strconv.Itoa(2+b.Process); b.Host != want {
			t.Fatalf("BMC %d of process %d on %s, want %s", i, b.Process, b.Host, want)
		}
	}
	for p := range 3 {
		if perProcess[p] != 10 {
			t.Fatalf("process %d serves %d BMCs, want 10", p, perProcess[p])
		}
	}
	requireAnswer(t, bmcs)

	// BMC 12 is in process 1; 11 and 13 are its neighbours there, 9 and 20
	// in the other processes.
	off := bmcs[12]
	for _, b := range []BMC{bmcs[0], off, bmcs[29]} {
		if got := ipmitoolPower(t, b); got != "on" {
			t.Fatalf("BMC %d: ipmitool says %s, want on", b.Index, got)
		}
	}
	ipmitool(t, off, "chassis", "power", "off")
	requirePower(t, f, off, false)
	for _, i := range []int{9, 11, 13, 20} {
		requirePower(t, f, bmcs[i], true)
		if got := ipmitoolPower(t, bmcs[i]); got != "on" {
			t.Fatalf("BMC %d: ipmitool says %s after powering off BMC 12, want on", i, got)
		}
	}

	// A person at the server: ipmitool sees what the state file says.
	if err := f.SetPowerOn(bmcs[13], false); err != nil {
		t.Fatal(err)
	}
	if got := ipmitoolPower(t, bmcs[13]); got != "off" {
		t.Fatalf("BMC 13: ipmitool says %s after SetPowerOn(false), want off", got)
	}
	if err := f.SetPowerOn(bmcs[13], true); err != nil {
		t.Fatal(err)
	}
	if got := ipmitoolPower(t, bmcs[13]); got != "on" {
		t.Fatalf("BMC 13: ipmitool says %s after SetPowerOn(true), want on", got)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := f.Restart(ctx, off.Process); err != nil {
		t.Fatal(err)
	}
	requireAnswer(t, bmcs)
	if got := ipmitoolPower(t, off); got != "off" {
		t.Fatalf("BMC 12 after restart: ipmitool says %s, want off (state lost)", got)
	}
	requirePower(t, f, off, false)
	if got := ipmitoolPower(t, bmcs[11]); got != "on" {
		t.Fatalf("BMC 11 after restart: ipmitool says %s, want on", got)
	}
	ipmitool(t, off, "chassis", "power", "on")
	requirePower(t, f, off, true)

	// Stop takes exactly one process's BMCs down; Start brings them back.
	if err := f.Stop(2); err != nil {
		t.Fatal(err)
	}
	got := asfPing(t, bmcs, 500*time.Millisecond)
	for _, b := range bmcs {
		if got[b.Index] == (b.Process == 2) {
			t.Fatalf("BMC %d of process %d: answered=%v with process 2 stopped", b.Index, b.Process, got[b.Index])
		}
	}
	requirePower(t, f, bmcs[25], true) // the state file outlives the process
	if err := f.Start(ctx, 2); err != nil {
		t.Fatal(err)
	}
	if err := f.Start(ctx, 2); err == nil {
		t.Fatal("Start of a running process succeeded, want an error")
	}
	requireAnswer(t, bmcs)
	if got := ipmitoolPower(t, bmcs[25]); got != "on" {
		t.Fatalf("BMC 25 after Start: ipmitool says %s, want on", got)
	}
}

// Fleets started at the same time on 127.0.0.1 must not share a port:
// ipmi_sim would start anyway, and one fleet would talk to the other's BMCs.
func TestParallelFleetsGetDistinctPorts(t *testing.T) {
	const fleets = 4
	var (
		mu    sync.Mutex
		seen  = map[string]int{}
		wg    sync.WaitGroup
		errCh = make(chan error, fleets)
	)
	requireTool(t, "ipmi_sim")
	for i := range fleets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			f, err := Start(ctx, Options{BMCs: 40})
			if err != nil {
				errCh <- err
				return
			}
			t.Cleanup(f.Close)
			mu.Lock()
			defer mu.Unlock()
			for _, b := range f.BMCs() {
				if other, dup := seen[b.Addr()]; dup {
					t.Errorf("%s used by fleets %d and %d", b.Addr(), other, i)
				}
				seen[b.Addr()] = i
			}
		}()
	}
	wg.Wait()
	close(errCh)
	for err := range errCh {
		t.Fatal(err)
	}
}

func TestStartRejectsBadOptions(t *testing.T) {
	ctx := context.Background()
	for _, opts := range []Options{
		{BMCs: 0},
		{BMCs: 2, Processes: 3},
		{BMCs: MaxBMCsPerProcess + 1},
		{BMCs: 1, Password: `pass"word`},
		{BMCs: 1, Testbed: t.TempDir()},
	} {
		if f, err := Start(ctx, opts); err == nil {
			f.Close()
			t.Errorf("Start(%+v) succeeded, want an error", opts)
		}
	}
}

func TestCloseRemovesOwnDirOnly(t *testing.T) {
	dir := t.TempDir()
	f := startFleet(t, Options{BMCs: 2, Dir: dir})
	b := f.BMCs()[0]
	f.Close()
	f.Close()
	if on, err := f.PowerOn(b); err != nil || !on {
		t.Fatalf("after Close, PowerOn in the caller's Dir = %v, %v; want true (Dir kept)", on, err)
	}
	if err := f.Restart(context.Background(), 0); err == nil {
		t.Fatal("Restart after Close succeeded, want an error")
	}
	if got := asfPing(t, f.BMCs(), 300*time.Millisecond); len(got) != 0 {
		t.Fatalf("BMCs still answer after Close: %v", got)
	}

	f = startFleet(t, Options{BMCs: 1})
	state := f.BMCs()[0].StateFile
	f.Close()
	if _, err := os.Stat(filepath.Dir(state)); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("after Close, the fleet's own directory: %v; want it removed", err)
	}
}
