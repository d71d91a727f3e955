//go:build !linux

package pdusim

import "syscall"

// Elsewhere only snmpd is killed; pdu.pl exits when snmpd's end of its
// pipe closes.
func procAttr() *syscall.SysProcAttr { return nil }

func killGroup(int) {}
