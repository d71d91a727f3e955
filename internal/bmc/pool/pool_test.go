package pool

import (
	"errors"
	"testing"
	"time"

	"github.com/metalpower/metalpower/internal/bmc"
	"github.com/metalpower/metalpower/internal/bmc/ipmi"
	"github.com/metalpower/metalpower/internal/bmc/redfish"
	"github.com/metalpower/metalpower/internal/node"
)

func TestPoolReusesClientsPerBMC(t *testing.T) {
	p := New(Options{})
	defer p.Close()
	a := node.New("", "a", ipmi.Name, node.DriverInfo{"ipmi_address": "10.0.0.1", "ipmi_username": "u", "ipmi_password": "p1"})
	b := a.Clone()
	b.UUID = "2d7cd6a4-4b0e-4b7d-9e7a-2b1c9d7c3f10"
	c1, err := p.For(a)
	if err != nil {
		t.Fatal(err)
	}
	c2, _ := p.For(b)
	if c1 != c2 {
		t.Fatal("two nodes on one BMC got two clients")
	}
	b.DriverInfo["ipmi_password"] = "p2"
	if c3, _ := p.For(b); c3 == c1 {
		t.Fatal("a changed password reused the old client")
	}
	r := node.New("", "r", redfish.Name, node.DriverInfo{"redfish_address": "https://10.0.0.2"})
	if _, err := p.For(r); err != nil {
		t.Fatal(err)
	}
	if p.Len() != 3 {
		t.Fatalf("Len() = %d, want 3", p.Len())
	}
}

func TestPoolRejectsBadNodesAsConfigErrors(t *testing.T) {
	p := New(Options{})
	defer p.Close()
	for _, n := range []*node.Node{
		node.New("", "x", "ilo", nil),
		node.New("", "y", ipmi.Name, node.DriverInfo{}),
		node.New("", "z", redfish.Name, node.DriverInfo{"redfish_address": "ftp://x"}),
	} {
		_, err := p.For(n)
		if k, ok := bmc.KindOf(err); !ok || k != bmc.Config {
			t.Errorf("%s: err = %v, want a configuration error", n.Name, err)
		}
	}
	_, err := p.For(node.New("", "x", "ilo", nil))
	if !errors.Is(err, bmc.ErrUnknownDriver) {
		t.Errorf("err = %v, want ErrUnknownDriver", err)
	}
}

func TestPoolClosesIdleClients(t *testing.T) {
	p := New(Options{IdleTimeout: 40 * time.Millisecond})
	defer p.Close()
	if _, err := p.For(node.New("", "a", ipmi.Name, node.DriverInfo{"ipmi_address": "10.0.0.1"})); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(2 * time.Second)
	for p.Len() != 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if p.Len() != 0 {
		t.Fatal("idle client was not closed")
	}
}
