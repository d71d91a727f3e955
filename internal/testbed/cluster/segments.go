package cluster

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
)

// A Segment is one conductor group's BMC network on this machine: the
// loopback ports its simulated BMCs listen on, and the group ID its
// workers run under. Confine gives each segment the production
// topology's reachability: only its own workers get through.
type Segment struct {
	// Group is the conductor group ("" for the default group).
	Group string
	// GID is the group ID the group's worker processes run under.
	GID int
	// TCP and UDP are the BMCs' ports on 127.0.0.1 (Redfish, IPMI).
	TCP, UDP []int
}

// Firewall holds the iptables rules that confine segments: a chain of
// its own, jumped to from OUTPUT, removed by Close.
type Firewall struct {
	chain string
	rules []Rule
}

// Rule is one counted rule of the firewall: packets to a BMC's port from
// the processes of one group ID, or (Anyone) the connection attempts and
// datagrams of any other process. Anyone counts TCP SYNs only: once a
// connection is closed, the kernel's TIME_WAIT socket answers for it, and
// its packets have no owner to match.
type Rule struct {
	Segment string // the segment's group, "default" for ""
	Proto   string // "tcp" or "udp"
	Port    int
	GID     int
	Anyone  bool // counts what else tries the port (GID unused)
	Allowed bool // the segment's own workers; the others are refused
	Packets int64
}

// String names the rule as its comment in iptables -L does.
func (r Rule) String() string {
	from, verdict := "gid="+strconv.Itoa(r.GID), "refuse"
	if r.Anyone {
		from, verdict = "anyone-else", "count-new"
	} else if r.Allowed {
		verdict = "accept"
	}
	return fmt.Sprintf("%s %s/%d %s %s", r.Segment, r.Proto, r.Port, from, verdict)
}

// Confine adds, in a new chain named chain, for each segment's ports: the
// segment's GID accepted; every other GID in segments and in others
// refused (TCP with a reset: connect answers "connection refused"; UDP
// dropped: sendto answers "operation not permitted"); then a rule that
// only counts any other process's connection attempts and datagrams.
// Every rule counts its packets (Counters). It needs iptables and root.
func Confine(chain string, segments []Segment, others ...int) (*Firewall, error) {
	if _, err := exec.LookPath("iptables"); err != nil {
		return nil, fmt.Errorf("iptables is missing: install Debian's iptables package (apt-get install iptables); the conductor-group tests confine each group's workers to its BMCs with it: %w", err)
	}
	if len(chain) > 28 {
		return nil, fmt.Errorf("iptables chain name %q is longer than 28 characters", chain)
	}
	if err := iptables("-N", chain); err != nil {
		return nil, fmt.Errorf("%w (the conductor-group tests run as root: they add iptables rules)", err)
	}
	f := &Firewall{chain: chain}
	if err := iptables("-I", "OUTPUT", "1", "-j", chain); err != nil {
		iptables("-X", chain)
		return nil, err
	}
	gids := append([]int(nil), others...)
	for _, s := range segments {
		gids = append(gids, s.GID)
	}
	for _, s := range segments {
		name := s.Group
		if name == "" {
			name = "default"
		}
		for _, ep := range []struct {
			proto string
			ports []int
		}{{"tcp", s.TCP}, {"udp", s.UDP}} {
			for _, port := range ep.ports {
				f.rules = append(f.rules, Rule{Segment: name, Proto: ep.proto, Port: port, GID: s.GID, Allowed: true})
				for _, g := range gids {
					if g != s.GID {
						f.rules = append(f.rules, Rule{Segment: name, Proto: ep.proto, Port: port, GID: g})
					}
				}
				f.rules = append(f.rules, Rule{Segment: name, Proto: ep.proto, Port: port, Anyone: true})
			}
		}
	}
	for _, r := range f.rules {
		args := []string{"-A", chain, "-p", r.Proto, "-d", "127.0.0.1", "--dport", strconv.Itoa(r.Port)}
		if !r.Anyone {
			args = append(args, "-m", "owner", "--gid-owner", strconv.Itoa(r.GID))
		} else if r.Proto == "tcp" {
			args = append(args, "--syn")
		}
		args = append(args, "-m", "comment", "--comment", r.String())
		switch {
		case r.Anyone: // no target: the rule only counts
		case r.Allowed:
			args = append(args, "-j", "ACCEPT")
		case r.Proto == "tcp":
			args = append(args, "-j", "REJECT", "--reject-with", "tcp-reset")
		default:
			args = append(args, "-j", "DROP")
		}
		if err := iptables(args...); err != nil {
			f.Close()
			return nil, err
		}
	}
	return f, nil
}

// Chain is the firewall's chain.
func (f *Firewall) Chain() string { return f.chain }

// Counters reads every rule's packet count.
func (f *Firewall) Counters() ([]Rule, error) {
	out, err := exec.Command("iptables", "-w", "-L", f.chain, "-v", "-x", "-n").CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("iptables -L %s: %w\n%s", f.chain, err, out)
	}
	packets := map[string]int64{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		start, end := strings.Index(line, "/* "), strings.LastIndex(line, " */")
		fields := strings.Fields(line)
		if start < 0 || end < start || len(fields) == 0 {
			continue
		}
		n, err := strconv.ParseInt(fields[0], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("iptables -L %s: unexpected line %q", f.chain, line)
		}
		packets[line[start+3:end]] = n
	}
	rules := append([]Rule(nil), f.rules...)
	for i := range rules {
		n, ok := packets[rules[i].String()]
		if !ok {
			return nil, fmt.Errorf("iptables -L %s does not show the rule %q:\n%s", f.chain, rules[i], out)
		}
		rules[i].Packets = n
	}
	return rules, nil
}

// Zero resets every rule's counters.
func (f *Firewall) Zero() error { return iptables("-Z", f.chain) }

// Close removes the chain and the jump to it.
func (f *Firewall) Close() error {
	return errors.Join(iptables("-D", "OUTPUT", "-j", f.chain), iptables("-F", f.chain), iptables("-X", f.chain))
}

func iptables(args ...string) error {
	// -w: wait for the xtables lock another run may hold.
	if out, err := exec.Command("iptables", append([]string{"-w"}, args...)...).CombinedOutput(); err != nil {
		return fmt.Errorf("iptables %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return nil
}
