//go:build unix && !linux

package demo

import "syscall"

// sysProcAttr puts a child in its own process group, so the demo can stop
// it and anything it spawned with one signal. (No parent-death signal
// outside Linux.)
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
