//go:build linux

package demo

import "syscall"

// sysProcAttr puts a child in its own process group, so the demo can stop
// it and anything it spawned with one signal, and asks the kernel to send
// it SIGTERM should the demo die without cleaning up (kill -9).
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
}
