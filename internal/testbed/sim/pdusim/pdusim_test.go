//go:build linux

package pdusim

import (
	"context"
	"fmt"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// These tests run Debian's snmpd and check it with Debian's snmpget,
// snmpset and snmpwalk. They never skip: `make deps` installs them.

func requireTool(t *testing.T, name string) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		t.Fatalf("%s is required for this test; `make deps` installs it (apt-get install snmpd snmp): %v", name, err)
	}
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func startPDU(t *testing.T, opts Options) *PDU {
	t.Helper()
	requireTool(t, "snmpwalk")
	p, err := Start(testContext(t), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

// get runs snmpget and fails the test on an error.
func get(t *testing.T, p *PDU, args ...string) string {
	t.Helper()
	out, err := p.Snmpget(testContext(t), args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func set(t *testing.T, p *PDU, args ...string) {
	t.Helper()
	if _, err := p.Snmpset(testContext(t), args...); err != nil {
		t.Fatal(err)
	}
}

// fast makes a request to an agent that will not answer fail quickly.
var fast = []string{"-t", "0.3", "-r", "0"}

// ironic is Ironic's table of families (ironic/drivers/modules/snmp.py),
// spelled out again rather than taken from families: what the agent must
// match. write is the object and value that switch the outlet, where
// they differ from the state object's.
var ironic = []struct {
	family            string
	sysOID            string
	oid               string // of outlet %d
	on, off           int
	writeOn, writeOff string // Eaton's command objects, written with 0
}{
	{family: "apc", sysOID: "1.3.6.1.4.1.318.1.1.4", oid: "1.3.6.1.4.1.318.1.1.4.4.2.1.3.%d", on: 1, off: 2},
	{family: "apc_masterswitch", sysOID: "1.3.6.1.4.1.318.1.1.4", oid: "1.3.6.1.4.1.318.1.1.4.4.2.1.3.%d", on: 1, off: 2},
	{family: "apc_masterswitchplus", sysOID: "1.3.6.1.4.1.318.1.1.6", oid: "1.3.6.1.4.1.318.1.1.6.5.1.1.5.%d", on: 1, off: 3},
	{family: "apc_rackpdu", sysOID: "1.3.6.1.4.1.318.1.1.12", oid: "1.3.6.1.4.1.318.1.1.12.3.3.1.1.4.%d", on: 1, off: 2},
	{family: "aten", sysOID: "1.3.6.1.4.1.21317", oid: "1.3.6.1.4.1.21317.1.3.2.2.2.2.%d.0", on: 2, off: 1},
	{family: "cyberpower", sysOID: "1.3.6.1.4.1.3808", oid: "1.3.6.1.4.1.3808.1.1.3.3.3.1.1.4.%d", on: 1, off: 2},
	{family: "teltronix", sysOID: "1.3.6.1.4.1.23620", oid: "1.3.6.1.4.1.23620.1.2.2.1.4.%d", on: 2, off: 1},
	{family: "baytech_mrp27", sysOID: "1.3.6.1.4.1.4779", oid: "1.3.6.1.4.1.4779.1.3.5.3.1.3.1.%d", on: 1, off: 0},
	{family: "eatonpower", sysOID: "1.3.6.1.4.1.534", oid: "1.3.6.1.4.1.534.6.6.7.6.6.1.2.%d", on: 1, off: 0,
		writeOn: "1.3.6.1.4.1.534.6.6.7.6.6.1.4.%d", writeOff: "1.3.6.1.4.1.534.6.6.7.6.6.1.3.%d"},
}

func oidOf(format string, n int) string {
	return "." + strings.Replace(format, "%d", strconv.Itoa(n), 1)
}

func TestFamilies(t *testing.T) {
	t.Parallel()
	if got, want := len(Families()), len(ironic); got != want {
		t.Errorf("Families() = %v, %d of them; the test knows %d", Families(), got, want)
	}
	for _, tc := range ironic {
		t.Run(tc.family, func(t *testing.T) {
			t.Parallel()
			p := startPDU(t, Options{Family: tc.family, Initial: []bool{true, false, true}})
			if got, want := get(t, p, ".1.3.6.1.2.1.1.2.0"), ".1.3.6.1.2.1.1.2.0 = OID: ."+tc.sysOID; got != want {
				t.Errorf("sysObjectID: got %q, want %q", got, want)
			}
			if p.OutletOID(2) != oidOf(tc.oid, 2)[1:] {
				t.Errorf("OutletOID(2) = %s, want %s", p.OutletOID(2), oidOf(tc.oid, 2)[1:])
			}
			want := func(v1, v2, v3 int) {
				t.Helper()
				got := get(t, p, "-Oqv", oidOf(tc.oid, 1), oidOf(tc.oid, 2), oidOf(tc.oid, 3))
				if w := fmt.Sprintf("%d\n%d\n%d", v1, v2, v3); got != w {
					t.Fatalf("outlets 1-3 read %q, want %q", got, w)
				}
			}
			want(tc.on, tc.off, tc.on) // from Initial

			// Switch outlet 2 on and off again with snmpset, as Ironic does.
			writeOn, onValue := oidOf(tc.oid, 2), strconv.Itoa(tc.on)
			writeOff, offValue := writeOn, strconv.Itoa(tc.off)
			if tc.writeOn != "" {
				writeOn, onValue = oidOf(tc.writeOn, 2), "0"
				writeOff, offValue = oidOf(tc.writeOff, 2), "0"
			}
			set(t, p, writeOn, "i", onValue)
			want(tc.on, tc.on, tc.on)
			set(t, p, writeOff, "i", offValue)
			want(tc.on, tc.off, tc.on)

			// The helpers agree, through SNMP and the state file.
			ctx := testContext(t)
			if err := p.SetOutlet(ctx, 3, false); err != nil {
				t.Fatal(err)
			}
			for n, wantOn := range []bool{true, false, false} {
				on, err := p.Outlet(ctx, n+1)
				if err != nil || on != wantOn {
					t.Errorf("Outlet(%d) = %v, %v; want %v", n+1, on, err, wantOn)
				}
				if on, err := p.State(n + 1); err != nil || on != wantOn {
					t.Errorf("State(%d) = %v, %v; want %v", n+1, on, err, wantOn)
				}
			}

			sets, err := p.Sets()
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, s := range sets {
				got = append(got, s.OID+" "+s.Value+" "+s.Result)
			}
			wantSets := []string{
				writeOn + " integer " + onValue + " DONE",
				writeOff + " integer " + offValue + " DONE",
			}
			off3, v3 := p.switchOID(3, false)
			wantSets = append(wantSets, "."+off3+" integer "+strconv.Itoa(v3)+" DONE")
			if !slices.Equal(got, wantSets) {
				t.Errorf("Sets: got %q, want %q", got, wantSets)
			}
			if n, err := p.SetRequests(ctx); err != nil || n != 3 {
				t.Errorf("SetRequests() = %d, %v; want 3", n, err)
			}

			// No outlet 4: noSuchInstance in v2c, noSuchName in v1.
			if out := get(t, p, oidOf(tc.oid, 4)); !strings.Contains(out, "No Such Instance") {
				t.Errorf("v2c GET of outlet 4: %q, want noSuchInstance", out)
			}
			if _, err := p.Snmpget(ctx, "-v1", oidOf(tc.oid, 4)); err == nil || !strings.Contains(err.Error(), "noSuchName") {
				t.Errorf("v1 GET of outlet 4: %v, want noSuchName", err)
			}

			// A client set for another family finds nothing.
			var others []string
			for _, other := range ironic {
				if other.oid != tc.oid {
					others = append(others, oidOf(other.oid, 1))
				}
			}
			for _, line := range strings.Split(get(t, p, others...), "\n") {
				if !strings.HasSuffix(line, " = No Such Object available on this agent at this OID") {
					t.Errorf("GET of another family's outlet 1: %q, want noSuchObject", line)
				}
			}
		})
	}
}

func TestRefusedSets(t *testing.T) {
	t.Parallel()
	tests := []struct {
		family string
		args   []string // snmpset's
		want   string   // in the error
		// logged is pdu.pl's answer if the SET reaches it; "" if snmpd
		// refuses it by itself.
		logged string
	}{
		{"apc_rackpdu", []string{".1.3.6.1.4.1.318.1.1.12.3.3.1.1.4.1", "i", "3"}, "wrongValue", "wrong-value"},
		{"apc_rackpdu", []string{"-v1", ".1.3.6.1.4.1.318.1.1.12.3.3.1.1.4.1", "i", "3"}, "badValue", "wrong-value"},
		{"apc_rackpdu", []string{".1.3.6.1.4.1.318.1.1.12.3.3.1.1.4.1", "s", "off"}, "wrongType", "wrong-type"},
		{"apc_rackpdu", []string{".1.3.6.1.4.1.318.1.1.12.3.3.1.1.4.1", "u", "2"}, "wrongType", "wrong-type"},
		{"apc_rackpdu", []string{".1.3.6.1.4.1.318.1.1.12.3.3.1.1.4.5", "i", "2"}, "notWritable", ""},
		{"apc_rackpdu", []string{"-v1", ".1.3.6.1.4.1.318.1.1.12.3.3.1.1.4.5", "i", "2"}, "noSuchName", ""},
		{"apc_rackpdu", []string{".1.3.6.1.4.1.318.1.1.4.4.2.1.3.1", "i", "2"}, "notWritable", ""},
		{"aten", []string{".1.3.6.1.4.1.21317.1.3.2.2.2.2.1.0", "i", "4"}, "wrongValue", "wrong-value"},
		{"aten", []string{".1.3.6.1.4.1.21317.1.3.2.2.2.2.1", "i", "1"}, "notWritable", ""},
		{"baytech_mrp27", []string{".1.3.6.1.4.1.4779.1.3.5.3.1.3.1.1", "i", "2"}, "wrongValue", "wrong-value"},
		{"eatonpower", []string{".1.3.6.1.4.1.534.6.6.7.6.6.1.2.1", "i", "0"}, "notWritable", "not-writable"},
		{"eatonpower", []string{"--", ".1.3.6.1.4.1.534.6.6.7.6.6.1.3.1", "i", "-2"}, "wrongValue", "wrong-value"},
		{"eatonpower", []string{".1.3.6.1.4.1.534.6.6.7.6.6.1.3.1", "i", "100000"}, "wrongValue", "wrong-value"},
	}
	for _, tc := range tests {
		t.Run(tc.family+" "+strings.Join(tc.args, " "), func(t *testing.T) {
			t.Parallel()
			p := startPDU(t, Options{Family: tc.family, Outlets: 4})
			ctx := testContext(t)
			_, err := p.Snmpset(ctx, tc.args...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("snmpset %v: %v, want %s", tc.args, err, tc.want)
			}
			sets, err := p.Sets()
			if err != nil {
				t.Fatal(err)
			}
			switch {
			case tc.logged == "" && len(sets) != 0:
				t.Errorf("Sets: %+v, want none", sets)
			case tc.logged != "" && (len(sets) != 1 || sets[0].Result != tc.logged):
				t.Errorf("Sets: %+v, want one answered %s", sets, tc.logged)
			}
			for n := 1; n <= 4; n++ {
				if on, err := p.Outlet(ctx, n); err != nil || !on {
					t.Errorf("Outlet(%d) = %v, %v; want still on", n, on, err)
				}
			}
		})
	}
}

func TestCommunities(t *testing.T) {
	t.Parallel()
	p := startPDU(t, Options{Family: "cyberpower", Outlets: 2, Community: "rw-secret", ReadCommunity: "ro-secret"})
	ctx := testContext(t)
	outlet := oidOf(ironic[5].oid, 1)

	// SNMPv1 and v2c agents drop a request with an unknown community
	// without an answer.
	for _, version := range []string{"-v1", "-v2c"} {
		wrong := slices.Concat([]string{version, "-c", "private"}, fast)
		if _, err := p.Snmpget(ctx, slices.Concat(wrong, []string{outlet})...); err == nil || !strings.Contains(err.Error(), "Timeout") {
			t.Errorf("%s GET with a wrong community: %v, want a timeout", version, err)
		}
		if _, err := p.Snmpset(ctx, slices.Concat(wrong, []string{outlet, "i", "2"})...); err == nil || !strings.Contains(err.Error(), "Timeout") {
			t.Errorf("%s SET with a wrong community: %v, want a timeout", version, err)
		}
	}
	if n, err := p.SetRequests(ctx); err != nil || n != 0 {
		t.Errorf("SetRequests() = %d, %v; want 0 after SETs with a wrong community", n, err)
	}

	// The read-only community reads and cannot write.
	if out := get(t, p, "-c", "ro-secret", "-Oqv", outlet); out != "1" {
		t.Errorf("GET with the read-only community: %q, want 1", out)
	}
	if _, err := p.Snmpset(ctx, "-c", "ro-secret", outlet, "i", "2"); err == nil || !strings.Contains(err.Error(), "noAccess") {
		t.Errorf("SET with the read-only community: %v, want noAccess", err)
	}
	if _, err := p.Snmpset(ctx, "-v1", "-c", "ro-secret", outlet, "i", "2"); err == nil || !strings.Contains(err.Error(), "noSuchName") {
		t.Errorf("v1 SET with the read-only community: %v, want noSuchName", err)
	}

	if n := p.Writes(); n != 0 {
		t.Errorf("Writes() = %d, want 0: no SET may reach the outlets", n)
	}
	if on, err := p.Outlet(ctx, 1); err != nil || !on {
		t.Errorf("Outlet(1) = %v, %v; want still on", on, err)
	}
}

func TestSNMPv3(t *testing.T) {
	t.Parallel()
	tests := []struct {
		auth, priv string
		level      string
	}{
		{"SHA", "AES", "authPriv"},
		{"MD5", "DES", "authPriv"},
		{"SHA-256", "AES", "authPriv"},
		{"SHA-512", "", "authNoPriv"},
		{"", "", "noAuthNoPriv"},
	}
	for _, tc := range tests {
		t.Run(tc.auth+"/"+tc.priv, func(t *testing.T) {
			t.Parallel()
			opts := Options{Family: "apc_rackpdu", Outlets: 2, User: "operator"}
			if tc.auth != "" {
				opts.AuthProtocol, opts.AuthKey = tc.auth, "auth-pass-1"
			}
			if tc.priv != "" {
				opts.PrivProtocol, opts.PrivKey = tc.priv, "priv-pass-1"
			}
			p := startPDU(t, opts)
			ctx := testContext(t)
			v3 := p.V3Args()
			if !slices.Contains(v3, tc.level) {
				t.Errorf("V3Args() = %v, want level %s", v3, tc.level)
			}
			if got := get(t, p, append(v3, ".1.3.6.1.2.1.1.2.0")...); got != ".1.3.6.1.2.1.1.2.0 = OID: .1.3.6.1.4.1.318.1.1.12" {
				t.Errorf("v3 GET of sysObjectID: %q", got)
			}
			set(t, p, append(v3, ".1.3.6.1.4.1.318.1.1.12.3.3.1.1.4.2", "i", "2")...)
			if on, err := p.State(2); err != nil || on {
				t.Errorf("State(2) after a v3 SET of off = %v, %v", on, err)
			}
			if tc.auth == "" {
				return
			}
			// A wrong key, or less security than the user has, is refused.
			wrong := slices.Clone(v3)
			wrong[slices.Index(wrong, "-A")+1] = "wrong-pass-1"
			if _, err := p.Snmpget(ctx, append(wrong, ".1.3.6.1.2.1.1.2.0")...); err == nil || !strings.Contains(err.Error(), "Authentication failure") {
				t.Errorf("v3 GET with a wrong key: %v, want an authentication failure", err)
			}
			if _, err := p.Snmpget(ctx, "-v3", "-u", "operator", "-l", "noAuthNoPriv", ".1.3.6.1.2.1.1.2.0"); err == nil {
				t.Error("v3 GET without authentication succeeded")
			}
		})
	}
}

var walkLine = regexp.MustCompile(`^(\.[0-9.]+) = INTEGER: (-?[0-9]+)$`)

func TestWalk(t *testing.T) {
	t.Parallel()
	tests := []struct {
		family  string
		outlets int
		want    []string // OID and value per line
	}{
		{"apc_rackpdu", 12, func() []string {
			var w []string
			for n := 1; n <= 12; n++ {
				w = append(w, oidOf("1.3.6.1.4.1.318.1.1.12.3.3.1.1.4.%d", n)+" 1")
			}
			return w
		}()},
		{"aten", 3, []string{
			".1.3.6.1.4.1.21317.1.3.2.2.2.2.1.0 2",
			".1.3.6.1.4.1.21317.1.3.2.2.2.2.2.0 2",
			".1.3.6.1.4.1.21317.1.3.2.2.2.2.3.0 2",
		}},
		{"eatonpower", 2, []string{
			".1.3.6.1.4.1.534.6.6.7.6.6.1.2.1 1",
			".1.3.6.1.4.1.534.6.6.7.6.6.1.2.2 1",
			".1.3.6.1.4.1.534.6.6.7.6.6.1.3.1 -1",
			".1.3.6.1.4.1.534.6.6.7.6.6.1.3.2 -1",
			".1.3.6.1.4.1.534.6.6.7.6.6.1.4.1 -1",
			".1.3.6.1.4.1.534.6.6.7.6.6.1.4.2 -1",
		}},
	}
	for _, tc := range tests {
		t.Run(tc.family, func(t *testing.T) {
			t.Parallel()
			p := startPDU(t, Options{Family: tc.family, Outlets: tc.outlets})
			ctx := testContext(t)
			for _, version := range []string{"-v1", "-v2c"} {
				out, err := p.Snmpwalk(ctx, version, "."+p.Subtree())
				if err != nil {
					t.Fatal(err)
				}
				var got []string
				for _, line := range strings.Split(out, "\n") {
					m := walkLine.FindStringSubmatch(line)
					if m == nil {
						t.Fatalf("%s walk: unexpected line %q in\n%s", version, line, out)
					}
					got = append(got, m[1]+" "+m[2])
				}
				if !slices.Equal(got, tc.want) {
					t.Errorf("%s walk:\ngot  %q\nwant %q", version, got, tc.want)
				}
			}
			// A walk of the whole MIB passes through the table and out of
			// it: pdu.pl's NONE at its end hands over to the next subtree.
			last := strings.Fields(tc.want[len(tc.want)-1])[0] + " = INTEGER: "
			if out, err := p.Snmpwalk(ctx, ".1.3.6.1.4.1"); err != nil || !strings.Contains(out, last) {
				t.Errorf("walk of enterprises: %v; the table's last object (%s) is missing", err, last)
			}
		})
	}
}

func TestRestart(t *testing.T) {
	t.Parallel()
	p := startPDU(t, Options{Family: "teltronix", Outlets: 4, User: "admin", AuthKey: "auth-pass-1", PrivKey: "priv-pass-1"})
	ctx := testContext(t)
	if err := p.SetOutlet(ctx, 3, false); err != nil {
		t.Fatal(err)
	}

	if err := p.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Snmpget(ctx, append(fast, "."+p.OutletOID(3))...); err == nil || !strings.Contains(err.Error(), "Timeout") {
		t.Errorf("GET while stopped: %v, want a timeout", err)
	}
	if on, err := p.State(3); err != nil || on {
		t.Errorf("State(3) while stopped = %v, %v; want off", on, err)
	}
	if err := p.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := p.Start(ctx); err == nil {
		t.Error("Start of a running agent succeeded")
	}

	for _, restart := range []bool{false, true} {
		if restart {
			if err := p.Restart(ctx); err != nil {
				t.Fatal(err)
			}
		}
		for n, wantOn := range []bool{true, true, false, true} {
			if on, err := p.Outlet(ctx, n+1); err != nil || on != wantOn {
				t.Errorf("restart %v: Outlet(%d) = %v, %v; want %v", restart, n+1, on, err, wantOn)
			}
		}
		// The SNMPv3 user, kept in snmpd's persistent directory, survives.
		if out := get(t, p, append(p.V3Args(), "-Oqv", "."+p.OutletOID(3))...); out != "1" {
			t.Errorf("restart %v: v3 GET of outlet 3: %q, want 1 (off)", restart, out)
		}
		// snmpd's counters start again; pdu.pl's log does not.
		if n, err := p.SetRequests(ctx); err != nil || n != 0 {
			t.Errorf("restart %v: SetRequests() = %d, %v; want 0", restart, n, err)
		}
		if n := p.Writes(); n != 1 {
			t.Errorf("restart %v: Writes() = %d, want 1", restart, n)
		}
	}

	p.Close()
	if err := p.Start(ctx); err == nil {
		t.Error("Start after Close succeeded")
	}
}

func TestSwitchDelay(t *testing.T) {
	t.Parallel()
	const delay = 700 * time.Millisecond
	tests := []struct {
		family string
		// What outlet 1 reads while switching off, once off, while
		// switching on, and once on.
		pendingOff, off, pendingOn, on int
	}{
		{"eatonpower", 2, 0, 3, 1},
		{"apc_masterswitchplus", 1, 3, 3, 1},
	}
	for _, tc := range tests {
		t.Run(tc.family, func(t *testing.T) {
			t.Parallel()
			p := startPDU(t, Options{Family: tc.family, Outlets: 2, SwitchDelay: delay})
			ctx := testContext(t)
			status := func() int {
				t.Helper()
				v, err := p.Status(ctx, 1)
				if err != nil {
					t.Fatal(err)
				}
				return v
			}
			// waitFor polls until outlet 1 reads v, as Ironic's
			// _snmp_wait_for_state does, and returns how long it took.
			waitFor := func(v int) time.Duration {
				t.Helper()
				start := time.Now()
				for status() != v {
					if time.Since(start) > 5*time.Second {
						t.Fatalf("outlet 1 still reads %d, want %d", status(), v)
					}
					time.Sleep(20 * time.Millisecond)
				}
				return time.Since(start)
			}

			start := time.Now()
			if err := p.SetOutlet(ctx, 1, false); err != nil {
				t.Fatal(err)
			}
			if got := status(); got != tc.pendingOff && time.Since(start) < delay {
				t.Errorf("right after switching off: reads %d, want %d", got, tc.pendingOff)
			}
			if on, err := p.Outlet(ctx, 1); err != nil || (!on && time.Since(start) < delay) {
				t.Errorf("Outlet(1) while switching off = %v, %v; want still on", on, err)
			}
			waitFor(tc.off)
			if elapsed := time.Since(start); elapsed < delay {
				t.Errorf("switched off after %v, want %v or more", elapsed, delay)
			}
			if on, err := p.State(1); err != nil || on {
				t.Errorf("State(1) = %v, %v; want off", on, err)
			}

			// The last command wins: switching on and, before that is
			// done, off again leaves the outlet off throughout.
			if err := p.SetOutlet(ctx, 1, true); err != nil {
				t.Fatal(err)
			}
			if got := status(); got != tc.pendingOn && got != tc.on {
				t.Errorf("while switching on: reads %d", got)
			}
			if err := p.SetOutlet(ctx, 1, false); err != nil {
				t.Fatal(err)
			}
			time.Sleep(delay + 100*time.Millisecond)
			if got := status(); got != tc.off {
				t.Errorf("after a cancelled switch on: reads %d, want %d", got, tc.off)
			}
		})
	}
}

func TestEatonCommands(t *testing.T) {
	t.Parallel()
	p := startPDU(t, Options{Family: "eatonpower", Outlets: 1})
	const (
		status = ".1.3.6.1.4.1.534.6.6.7.6.6.1.2.1"
		offCmd = ".1.3.6.1.4.1.534.6.6.7.6.6.1.3.1"
		onCmd  = ".1.3.6.1.4.1.534.6.6.7.6.6.1.4.1"
	)
	read := func() string {
		t.Helper()
		return strings.ReplaceAll(get(t, p, "-Oqv", status, offCmd, onCmd), "\n", " ")
	}
	if got := read(); got != "1 -1 -1" {
		t.Errorf("at rest: %q, want on and no command pending", got)
	}
	// Off in 30 s: pending off, counting down.
	set(t, p, offCmd, "i", "30")
	if got := read(); !regexp.MustCompile(`^2 (30|29|28) -1$`).MatchString(got) {
		t.Errorf("after off in 30 s: %q, want pending off", got)
	}
	// -1 cancels it.
	set(t, p, "--", offCmd, "i", "-1")
	if got := read(); got != "1 -1 -1" {
		t.Errorf("after cancelling: %q, want on again", got)
	}
	// On while on changes nothing.
	set(t, p, onCmd, "i", "0")
	if got := read(); got != "1 -1 -1" {
		t.Errorf("after on while on: %q", got)
	}
	set(t, p, offCmd, "i", "0")
	if got := read(); got != "0 -1 -1" {
		t.Errorf("after off now: %q", got)
	}
}

func TestSysObjectIDOverride(t *testing.T) {
	t.Parallel()
	// A real APC rack PDU reports a model below Ironic's system_id, which
	// family detection must match by prefix.
	p := startPDU(t, Options{Family: "apc_rackpdu", Outlets: 1, SysObjectID: ".1.3.6.1.4.1.318.1.1.12.7"})
	if got := get(t, p, "-Oqv", ".1.3.6.1.2.1.1.2.0"); got != ".1.3.6.1.4.1.318.1.1.12.7" {
		t.Errorf("sysObjectID = %q", got)
	}
}

func TestStartErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		opts Options
		want string
	}{
		{"no family", Options{}, "unknown family"},
		{"auto", Options{Family: "auto"}, "unknown family"},
		{"too many outlets", Options{Family: "apc", Outlets: 5000}, "Outlets"},
		{"initial mismatch", Options{Family: "apc", Outlets: 2, Initial: []bool{true}}, "Initial"},
		{"bad sysObjectID", Options{Family: "apc", SysObjectID: "1.3.x"}, "SysObjectID"},
		{"blank community", Options{Family: "apc", Community: "a b"}, "communities"},
		{"same communities", Options{Family: "apc", Community: "c", ReadCommunity: "c"}, "ReadCommunity"},
		{"key without user", Options{Family: "apc", AuthKey: "12345678"}, "without a User"},
		{"short key", Options{Family: "apc", User: "u", AuthKey: "1234567"}, "at least 8"},
		{"priv without auth", Options{Family: "apc", User: "u", PrivKey: "12345678"}, "needs authentication"},
		{"unknown auth", Options{Family: "apc", User: "u", AuthProtocol: "SHA1", AuthKey: "12345678"}, "AuthProtocol"},
		{"unknown priv", Options{Family: "apc", User: "u", AuthKey: "12345678", PrivProtocol: "AES-256", PrivKey: "12345678"}, "PrivProtocol"},
		{"blank dir", Options{Family: "apc", Dir: t.TempDir() + "/a b"}, "not supported"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := Start(testContext(t), tc.opts)
			if err == nil {
				p.Close()
				t.Fatalf("Start succeeded, want an error about %s", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Start: %v, want an error about %s", err, tc.want)
			}
		})
	}
}
