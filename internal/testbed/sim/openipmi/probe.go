package openipmi

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"time"
)

// readyTimeout bounds how long a process may take to answer on all its
// ports; ipmi_sim normally does in a few milliseconds.
const readyTimeout = 15 * time.Second

// waitReady sends every BMC of p an unauthenticated Get System GUID until
// each answers with its own GUID: proof that ipmi_sim is up and that the
// answers come from this fleet's BMCs, not from another ipmi_sim bound to
// the same port.
func (f *Fleet) waitReady(ctx context.Context, p *process) error {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	conn, err := net.ListenUDP("udp4", nil)
	if err != nil {
		return err
	}
	defer conn.Close()

	pending := map[netip.AddrPort]int{}
	for k, j := range p.bmcs {
		pending[p.ports[k]] = j
	}
	req := guidRequest()
	buf := make([]byte, 512)
	// ipmi_sim binds its ports some milliseconds after it starts; asking
	// again soon finds it up without flooding a slow one.
	wait := 5 * time.Millisecond
	for len(pending) > 0 {
		select {
		case <-p.done:
			return fmt.Errorf("ipmi_sim exited: %v", p.err)
		case <-ctx.Done():
			return fmt.Errorf("%d of %d BMCs did not answer (e.g. %v): %w", len(pending), len(p.bmcs), anyKey(pending), ctx.Err())
		default:
		}
		for ap := range pending {
			if _, err := conn.WriteToUDPAddrPort(req, ap); err != nil {
				return err
			}
		}
		conn.SetReadDeadline(time.Now().Add(wait))
		wait = min(2*wait, 200*time.Millisecond)
		for len(pending) > 0 {
			n, from, err := conn.ReadFromUDPAddrPort(buf)
			if err != nil {
				break // the deadline: send again to those still pending
			}
			from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
			j, ok := pending[from]
			if !ok {
				continue
			}
			guid, ok := parseGUIDResponse(buf[:n])
			if !ok {
				continue
			}
			if guid != f.guids[j] {
				return fmt.Errorf("%v answers as another BMC (GUID %x, want %x): the port is taken by another ipmi_sim", from, guid, f.guids[j])
			}
			delete(pending, from)
		}
	}
	return nil
}

// guidRequest is an IPMI 1.5 Get System GUID request outside any session,
// which ipmi_sim answers without authentication.
func guidRequest() []byte {
	const (
		rsAddr = 0x20
		netFn  = 0x06 // App
		rqAddr = 0x81
		rqSeq  = 1
		cmd    = 0x37 // Get System GUID
	)
	msg := []byte{rsAddr, netFn << 2, 0, rqAddr, rqSeq << 2, cmd, 0}
	msg[2] = checksum(msg[:2])
	msg[6] = checksum(msg[3:6])
	pkt := []byte{
		0x06, 0x00, 0xff, 0x07, // RMCP: version 1.0, no ACK, class IPMI
		0x00,       // auth type none
		0, 0, 0, 0, // session sequence
		0, 0, 0, 0, // session ID
		byte(len(msg)),
	}
	return append(pkt, msg...)
}

// parseGUIDResponse returns the GUID of a Get System GUID response.
func parseGUIDResponse(b []byte) ([16]byte, bool) {
	var g [16]byte
	// RMCP (4), session header (10), IPMI header (6), completion code,
	// GUID (16), checksum.
	if len(b) < 38 || b[3] != 0x07 || b[4] != 0x00 || b[19] != 0x37 || b[20] != 0x00 {
		return g, false
	}
	copy(g[:], b[21:37])
	return g, true
}

func checksum(b []byte) byte {
	var s byte
	for _, c := range b {
		s += c
	}
	return -s
}
