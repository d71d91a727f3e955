package pdusim

// The files snmpd and pdu.pl read, written from Options.

import (
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
)

// checkUser fills in the SNMPv3 defaults and checks the user's settings.
func checkUser(opts *Options) error {
	if opts.User == "" {
		if opts.AuthKey != "" || opts.PrivKey != "" || opts.AuthProtocol != "" || opts.PrivProtocol != "" {
			return errors.New("SNMPv3 keys or protocols given without a User")
		}
		return nil
	}
	if !word(opts.User) || len(opts.User) > 32 {
		return errors.New("User must be up to 32 printable ASCII characters without blanks, quotes, backslashes or '#'")
	}
	if opts.AuthKey == "" && opts.AuthProtocol != "" || opts.PrivKey == "" && opts.PrivProtocol != "" {
		return errors.New("an SNMPv3 protocol is given without its key")
	}
	if opts.PrivKey != "" && opts.AuthKey == "" {
		return errors.New("SNMPv3 privacy needs authentication: PrivKey without AuthKey")
	}
	for _, k := range []string{opts.AuthKey, opts.PrivKey} {
		// snmpd refuses to derive a key from a shorter passphrase.
		if k != "" && (len(k) < 8 || !word(k)) {
			return errors.New("SNMPv3 keys must be at least 8 printable ASCII characters without blanks, quotes, backslashes or '#'")
		}
	}
	if opts.AuthKey != "" {
		if opts.AuthProtocol == "" {
			opts.AuthProtocol = "SHA"
		}
		switch opts.AuthProtocol {
		case "MD5", "SHA", "SHA-224", "SHA-256", "SHA-384", "SHA-512":
		default:
			return fmt.Errorf("AuthProtocol %q, want MD5, SHA, SHA-224, SHA-256, SHA-384 or SHA-512", opts.AuthProtocol)
		}
	}
	if opts.PrivKey != "" {
		if opts.PrivProtocol == "" {
			opts.PrivProtocol = "AES"
		}
		if opts.PrivProtocol != "DES" && opts.PrivProtocol != "AES" {
			return fmt.Errorf("PrivProtocol %q, want DES or AES", opts.PrivProtocol)
		}
	}
	return nil
}

// word reports whether s can go into snmpd.conf as one token.
func word(s string) bool {
	if s == "" || s[0] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c > '~' || c == '"' || c == '\'' || c == '\\' || c == '#' {
			return false
		}
	}
	return true
}

func numericOID(s string) bool {
	parts := strings.Split(s, ".")
	for _, part := range parts {
		if _, err := strconv.ParseUint(part, 10, 32); err != nil {
			return false
		}
	}
	return len(parts) >= 2
}

func (p *PDU) snmpdConf() []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "# pdusim, family %s. snmpd reads this and %s only (-C -c).\n", p.opts.Family, filepath.Join(p.persistDir, "snmpd.conf"))
	fmt.Fprintf(&b, "agentaddress udp:%s\n", p.Addr())
	fmt.Fprintf(&b, "sysobjectid .%s\n", p.sysOID)
	fmt.Fprintf(&b, "sysdescr pdusim %s PDU with %d outlets\n", p.opts.Family, p.opts.Outlets)
	fmt.Fprintf(&b, "sysname pdusim-%s\n", p.opts.Family)
	fmt.Fprintf(&b, "rwcommunity %s default\n", p.opts.Community)
	if p.opts.ReadCommunity != "" {
		fmt.Fprintf(&b, "rocommunity %s default\n", p.opts.ReadCommunity)
	}
	if p.opts.User != "" {
		fmt.Fprintf(&b, "rwuser %s %s\n", p.opts.User, map[string]string{
			"noAuthNoPriv": "noauth", "authNoPriv": "auth", "authPriv": "priv",
		}[p.securityLevel()])
	}
	fmt.Fprintf(&b, "pass_persist .%s %s %s %s\n", p.fam.subtree, perl,
		filepath.Join(p.dir, "pdu.pl"), filepath.Join(p.dir, "pdu.conf"))
	return []byte(b.String())
}

// persistConf is the first content of snmpd's persistent snmpd.conf, where
// createUser belongs: snmpd replaces it with the user's localized keys
// (usmUser) as soon as it saves its persistent data, so the user survives
// restarts without being created again. With -C snmpd does not read that
// file by itself, so -c names it.
func (p *PDU) persistConf() []byte {
	if p.opts.User == "" {
		return nil
	}
	line := "createUser " + p.opts.User
	if p.opts.AuthKey != "" {
		line += " " + p.opts.AuthProtocol + " " + p.opts.AuthKey
	}
	if p.opts.PrivKey != "" {
		line += " " + p.opts.PrivProtocol + " " + p.opts.PrivKey
	}
	return []byte(line + "\n")
}

func (p *PDU) pduConf() []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "outlets %d\nstate %s\nsets %s\ndelay %.6f\n", p.opts.Outlets, p.state, p.sets, p.opts.SwitchDelay.Seconds())
	for _, c := range p.fam.columns {
		suffix := c.suffix
		if suffix == "" {
			suffix = "-"
		}
		fmt.Fprintf(&b, "column %s %s %s %d %d\n", c.prefix, suffix, c.kind, c.on, c.off)
	}
	return []byte(b.String())
}

func (p *PDU) initialState() []byte {
	var b strings.Builder
	for n := 1; n <= p.opts.Outlets; n++ {
		on := 1
		if p.opts.Initial != nil && !p.opts.Initial[n-1] {
			on = 0
		}
		fmt.Fprintf(&b, "%d %d - 0\n", n, on)
	}
	return []byte(b.String())
}

func (p *PDU) securityLevel() string {
	switch {
	case p.opts.PrivKey != "":
		return "authPriv"
	case p.opts.AuthKey != "":
		return "authNoPriv"
	default:
		return "noAuthNoPriv"
	}
}
