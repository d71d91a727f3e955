//go:build !linux

package openipmi

import (
	"errors"
	"net"
	"syscall"
)

// ipmi_sim is Debian's, and the fleet relies on Linux's socket and process
// semantics; elsewhere it fails to start with this error.
var errNotLinux = errors.New("openipmi: ipmi_sim fleets run on Linux only")

func procAttr() *syscall.SysProcAttr { return nil }

func waitGroup(int) {}

func setReuseAddr(*net.UDPConn) error { return errNotLinux }
