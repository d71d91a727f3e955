package openipmi

import (
	"errors"
	"fmt"
	"net"
	"syscall"
	"time"

	"github.com/metalpower/metalpower/internal/testbed/proc"
)

func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{
		// Its own group, for kill to wait for the chassis.sh it started.
		Setpgid: true,
		// Die with the test or benchmark, even if that is killed with -9.
		Pdeathsig: syscall.SIGKILL,
	}
}

// waitGroup waits (up to a second) for the rest of process group pgid, then
// kills what is left.
func waitGroup(pgid int) {
	for i := 0; syscall.Kill(-pgid, 0) == nil; i++ {
		if i == 200 {
			syscall.Kill(-pgid, syscall.SIGKILL)
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func setReuseAddr(c *net.UDPConn) error {
	raw, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	err = raw.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1)
	})
	return errors.Join(err, serr)
}

// CPUTime is the processor time the fleet's running ipmi_sim processes
// have used so far, with the chassis.sh runs they waited for: what a
// benchmark subtracts to tell the simulator's cost from the client's.
func (f *Fleet) CPUTime() (time.Duration, error) {
	var total time.Duration
	for _, p := range f.procs {
		p.mu.Lock()
		cmd := p.cmd
		p.mu.Unlock()
		if cmd == nil {
			continue
		}
		cpu, err := proc.CPU(cmd.Process.Pid)
		if err != nil {
			return 0, fmt.Errorf("openipmi: %w", err)
		}
		total += cpu
	}
	return total, nil
}
