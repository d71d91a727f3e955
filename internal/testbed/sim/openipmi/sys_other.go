//go:build !linux

package openipmi

import (
	"errors"
	"net"
	"syscall"
	"time"
)

// ipmi_sim is Debian's, and the fleet relies on Linux's socket and process
// semantics; elsewhere it fails to start with this error.
var errNotLinux = errors.New("openipmi: ipmi_sim fleets run on Linux only")

func procAttr() *syscall.SysProcAttr { return nil }

func waitGroup(int) {}

func setReuseAddr(*net.UDPConn) error { return errNotLinux }

// CPUTime is not measured outside Linux.
func (f *Fleet) CPUTime() (time.Duration, error) { return 0, errNotLinux }
