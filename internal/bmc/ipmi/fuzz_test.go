package ipmi

import (
	"context"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/metalpower/metalpower/internal/bmc"
	"github.com/metalpower/metalpower/internal/node"
	"github.com/metalpower/metalpower/internal/testbed/sim/ipmisim"
)

// answerProxy stands between a client and a simulated BMC. It forwards
// both ways until armed; then it answers every request with the fuzz
// input, twice, instead of the BMC's own answer: a BMC that answers
// garbage, short packets, stale session packets. Requests still reach the
// BMC, so the client's Close Session frees its session table.
type answerProxy struct {
	conn   *net.UDPConn
	bmc    *net.UDPAddr
	client atomic.Pointer[net.UDPAddr]
	armed  atomic.Bool
	answer []byte
}

func (p *answerProxy) serve() {
	buf := make([]byte, 2048)
	for {
		n, from, err := p.conn.ReadFromUDP(buf)
		if err != nil {
			return
		}
		switch {
		case from.Port == p.bmc.Port && from.IP.Equal(p.bmc.IP):
			if c := p.client.Load(); c != nil && !p.armed.Load() {
				p.conn.WriteToUDP(buf[:n], c)
			}
		default:
			p.client.Store(from)
			p.conn.WriteToUDP(buf[:n], p.bmc)
			if p.armed.Load() {
				p.conn.WriteToUDP(p.answer, from)
				p.conn.WriteToUDP(p.answer, from)
			}
		}
	}
}

// FuzzBMCAnswers: whatever a BMC sends back, in session set-up or in an
// established session, the process never panics (a panic in go-ipmi's
// exchange goroutine would end the fuzzer) and the call ends with a
// classified BMC error or a reading.
func FuzzBMCAnswers(f *testing.F) {
	f.Add([]byte{}, false)
	f.Add([]byte{0x06, 0x00, 0xff, 0x07}, true)                                     // RMCP header, nothing after
	f.Add([]byte{0x06, 0x00, 0xff, 0x07, 0x06, 0x00, 0x01, 0x02, 0x03, 0x04}, true) // RMCP+ header cut short
	f.Add([]byte{0x06, 0x00, 0xff, 0x07, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10}, false)
	fleet, err := ipmisim.Start(ipmisim.Options{})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(fleet.Close)
	sim := fleet.BMCs()[0]
	f.Fuzz(func(t *testing.T, answer []byte, inSession bool) {
		conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		p := &answerProxy{conn: conn, bmc: &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: sim.Port}, answer: answer}
		go p.serve()
		c := New(Info{Address: "127.0.0.1", Port: conn.LocalAddr().(*net.UDPAddr).Port, Username: "admin", Password: "password", CipherSuite: 3},
			Options{AttemptTimeout: 30 * time.Millisecond, Retries: 1})
		defer c.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if inSession {
			if _, err := c.PowerState(ctx); err != nil {
				t.Fatalf("set-up through the proxy: %v", err)
			}
		}
		p.armed.Store(true)
		state, err := c.PowerState(ctx)
		if err == nil && state != node.PowerOn && state != node.PowerOff {
			t.Fatalf("read %q from garbage", state)
		}
		if _, ok := bmc.KindOf(err); err != nil && !ok {
			t.Fatalf("err = %v (%T), want a classified BMC error", err, err)
		}
	})
}
