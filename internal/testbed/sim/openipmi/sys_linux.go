package openipmi

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
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
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", cmd.Process.Pid))
		if err != nil {
			return 0, fmt.Errorf("openipmi: %w", err)
		}
		// Fields after the command name, which is in parentheses and may
		// hold blanks: utime, stime, cutime, cstime are fields 14 to 17.
		rest := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
		if len(rest) < 15 {
			return 0, fmt.Errorf("openipmi: /proc/%d/stat: short", cmd.Process.Pid)
		}
		for _, s := range rest[11:15] {
			ticks, err := strconv.ParseInt(s, 10, 64)
			if err != nil {
				return 0, fmt.Errorf("openipmi: /proc/%d/stat: %w", cmd.Process.Pid, err)
			}
			total += time.Duration(ticks) * time.Second / clockTicks
		}
	}
	return total, nil
}

// clockTicks is USER_HZ, 100 on every Linux architecture Go supports.
const clockTicks = 100
