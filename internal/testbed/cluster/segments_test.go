package cluster_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/metalpower/metalpower/internal/bmc/ipmi"
	"github.com/metalpower/metalpower/internal/bmc/redfish"
	"github.com/metalpower/metalpower/internal/node"
	"github.com/metalpower/metalpower/internal/testbed"
	"github.com/metalpower/metalpower/internal/testbed/cluster"
	"github.com/metalpower/metalpower/internal/testbed/devserver"
	"github.com/metalpower/metalpower/internal/testbed/itest"
	"github.com/metalpower/metalpower/internal/testbed/sim/ipmisim"
	"github.com/metalpower/metalpower/internal/testbed/sim/redfishsim"
)

// The group IDs the test's processes run under: the firewall
// (cluster.Confine) tells a segment's workers from everyone else by them.
// Unusual values, so no account of the machine shares them.
const (
	gidDefault  = 42001 // workers of the default conductor group
	gidSegmentB = 42002 // workers of segment-b
	gidSegmentC = 42003 // workers of segment-c
	// The APIs, the starter, tctl, temporal, baremetal: none of them
	// may ever reach a BMC.
	gidControl = 42009
	// noGID: the process keeps this one's group.
	noGID = -1
)

// noValidHost is Ironic's refusal for a group no worker serves, as
// operators read it (docs/operating.md, "Conductor groups"), spelled out
// here rather than taken from internal/dispatch: the test pins the
// contract that package implements.
func noValidHost(driver, group string) string {
	return fmt.Sprintf("No valid host was found. Reason: No conductor service registered which supports driver %s for conductor group %q.", driver, group)
}

// bmcSegment is one conductor group's network segment: a Redfish service
// of its own (one system) and, when asked, one IPMI BMC, on loopback
// ports only the group's workers may reach.
type bmcSegment struct {
	group       string
	gid         int
	redfish     *redfishsim.Sim
	redfishURL  string
	redfishPort int
	ipmi        *ipmisim.Fleet
}

// startSegment starts a segment's simulated BMCs until the test ends.
func startSegment(t *testing.T, group string, gid int, withIPMI bool, delay time.Duration) *bmcSegment {
	t.Helper()
	seg := &bmcSegment{group: group, gid: gid}
	// A port below the ephemeral range (devserver.FreePort): no client
	// socket's own port is ever one of the BMCs' ports.
	port, err := devserver.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
	if err != nil {
		t.Fatal(err)
	}
	seg.redfish = redfishsim.New(redfishsim.Options{Systems: 1, Username: testbed.BMCUser, Password: testbed.RedfishPassword, TransitionDelay: delay})
	if seg.redfishURL, err = seg.redfish.StartOn(ln); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(seg.redfish.Close)
	seg.redfishPort = port
	if withIPMI {
		if seg.ipmi, err = ipmisim.Start(ipmisim.Options{BMCs: 1, Username: testbed.BMCUser, Password: testbed.IPMIPassword, TransitionDelay: delay}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(seg.ipmi.Close)
	}
	return seg
}

// name is the group as the test reports it.
func (seg *bmcSegment) name() string {
	if seg.group == "" {
		return "default"
	}
	return seg.group
}

// segment is what the firewall confines.
func (seg *bmcSegment) segment() cluster.Segment {
	s := cluster.Segment{Group: seg.group, GID: seg.gid, TCP: []int{seg.redfishPort}}
	if seg.ipmi != nil {
		for _, b := range seg.ipmi.BMCs() {
			s.UDP = append(s.UDP, b.Port)
		}
	}
	return s
}

// confine adds the firewall for segs until the test ends, even when it
// fails: every other GID the test uses is refused at each segment's
// ports.
func confine(t *testing.T, chain string, segs ...*bmcSegment) *cluster.Firewall {
	t.Helper()
	var all []cluster.Segment
	for _, seg := range segs {
		all = append(all, seg.segment())
	}
	fw, err := cluster.Confine(chain, all, gidControl)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := fw.Close(); err != nil {
			t.Errorf("remove the firewall: %v", err)
		}
	})
	return fw
}

// probeConfinement shows the firewall works before anything relies on
// it: from another group's GID, segment to's Redfish port refuses the
// connection and its IPMI port (if any) the datagram; from its own GID
// both get through. The counters are zeroed afterwards.
func probeConfinement(t *testing.T, fw *cluster.Firewall, from, to *bmcSegment) {
	t.Helper()
	type probe struct {
		gid    int
		script string
		want   string // "" when it must get through
	}
	tcp := "exec 3<>/dev/tcp/127.0.0.1/" + strconv.Itoa(to.redfishPort)
	probes := []probe{{from.gid, tcp, "Connection refused"}, {gidControl, tcp, "Connection refused"}, {to.gid, tcp, ""}}
	if to.ipmi != nil {
		udp := "echo probe >/dev/udp/127.0.0.1/" + strconv.Itoa(to.ipmi.BMCs()[0].Port)
		probes = append(probes, probe{from.gid, udp, "Operation not permitted"}, probe{to.gid, udp, ""})
	}
	for _, c := range probes {
		out, err := runAs(c.gid, nil, "bash", "-c", c.script)
		if c.want == "" && err != nil {
			t.Fatalf("the firewall stops group ID %d on its own segment (%s): %v\n%s", c.gid, c.script, err, out)
		}
		if c.want != "" && (err == nil || !strings.Contains(out, c.want)) {
			t.Fatalf("the firewall lets group ID %d through to %s's BMCs (%s): %v %s; want %q", c.gid, to.name(), c.script, err, out, c.want)
		}
	}
	if err := fw.Zero(); err != nil {
		t.Fatal(err)
	}
}

// testNode is a node enrolled on one segment's BMC, with what the test
// expects of it.
type testNode struct {
	*node.Node
	seg  *bmcSegment
	ipmi *ipmisim.BMC // nil: the segment's Redfish system "1"
	// changes counts the power changes the BMC carried out for the test.
	changes int
}

func addRedfishNode(t *testing.T, s *itest.Stack, seg *bmcSegment, name string) *testNode {
	t.Helper()
	n := node.New("", name, redfish.Name, testbed.RedfishInfo(seg.redfish, seg.redfishURL, "1"))
	n.ConductorGroup = seg.group
	return &testNode{Node: s.AddNode(t, n, ""), seg: seg}
}

func addIPMINode(t *testing.T, s *itest.Stack, seg *bmcSegment, name string) *testNode {
	t.Helper()
	b := seg.ipmi.BMCs()[0]
	n := node.New("", name, ipmi.Name, node.DriverInfo{"ipmi_address": b.Host, "ipmi_port": float64(b.Port),
		"ipmi_username": testbed.BMCUser, "ipmi_password": testbed.IPMIPassword})
	n.ConductorGroup = seg.group
	return &testNode{Node: s.AddNode(t, n, ""), seg: seg, ipmi: b}
}

// hardware is the BMC's real power state, in Ironic's words.
func (n *testNode) hardware() string {
	on := n.seg.redfish.PowerState("1") == "On"
	if n.ipmi != nil {
		on = n.ipmi.PowerOn()
	}
	if on {
		return node.PowerOn
	}
	return node.PowerOff
}

// setHardware switches the server behind metalpower's back.
func (n *testNode) setHardware(state string) {
	if n.ipmi != nil {
		n.ipmi.SetPowerOn(state == node.PowerOn)
		return
	}
	n.seg.redfish.SetPowerState("1", map[bool]string{true: "On", false: "Off"}[state == node.PowerOn])
}

// actions are the power commands the BMC carried out.
func (n *testNode) actions() []string {
	if n.ipmi != nil {
		return n.ipmi.Actions()
	}
	return n.seg.redfish.Resets("1")
}

// endpoint is the BMC's port as the firewall counts it.
func (n *testNode) endpoint() (proto string, port int) {
	if n.ipmi != nil {
		return "udp", n.ipmi.Port
	}
	return "tcp", n.seg.redfishPort
}

// startAs runs a process under group ID gid until the test ends, as start
// does; its output goes to the test log when the test fails.
func startAs(t *testing.T, gid int, bin string, env []string, args ...string) *exec.Cmd {
	t.Helper()
	out, err := os.CreateTemp(t.TempDir(), "proc-*.log")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Env, cmd.Stdout, cmd.Stderr = env, out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if gid != noGID {
		cmd.SysProcAttr.Credential = credential(gid)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(40 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			b, _ := os.ReadFile(out.Name())
			t.Logf("%s %v (gid %d):\n%s", bin, args, gid, tail(string(b), 3000))
		}
	})
	return cmd
}

// runAs runs a command to its end (at most 2 minutes) under group ID
// gid, with env (nil: this process's), and returns its combined output.
func runAs(gid int, env []string, bin string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = env
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Credential: credential(gid)}
	err := cmd.Run()
	return out.String(), err
}

// credential keeps this process's user (root: the firewall needs it) and
// sets the group, with no supplementary groups.
func credential(gid int) *syscall.Credential {
	return &syscall.Credential{Uid: uint32(os.Getuid()), Gid: uint32(gid), Groups: []uint32{}}
}

// toolEnv is the environment of the command-line clients: none of the
// machine's OpenStack or Temporal settings, an empty HOME (no
// clouds.yaml, no temporal.toml), no proxy for the loopback services.
func toolEnv(t *testing.T) []string {
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		upper := strings.ToUpper(name)
		if strings.HasPrefix(upper, "OS_") || strings.HasPrefix(upper, "TEMPORAL_") || strings.HasSuffix(upper, "_PROXY") ||
			upper == "HOME" || upper == "XDG_CONFIG_HOME" || strings.HasPrefix(upper, "METALPOWER_") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, "HOME="+t.TempDir(), "NO_PROXY=127.0.0.1,localhost", "no_proxy=127.0.0.1,localhost", "TEMPORAL_CLI_SHOW_STACKS=0")
}

// within polls cond until it holds (true) or timeout passes (false).
func within(timeout time.Duration, cond func() bool) bool {
	for deadline := time.Now().Add(timeout); !cond(); {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(200 * time.Millisecond)
	}
	return true
}
