//go:build linux

// Package proc reads what a benchmark needs to know about the processes it
// started: the processor time a simulator used, to tell its cost from the
// client's.
package proc

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// CPU is the processor time process pid has used so far, with that of the
// children it waited for (ipmi_sim's chassis.sh runs).
func CPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// Fields after the command name, which is in parentheses and may hold
	// blanks: utime, stime, cutime, cstime are fields 14 to 17.
	rest := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	if len(rest) < 15 {
		return 0, fmt.Errorf("/proc/%d/stat: short", pid)
	}
	var total time.Duration
	for _, s := range rest[11:15] {
		ticks, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/%d/stat: %w", pid, err)
		}
		total += time.Duration(ticks) * time.Second / clockTicks
	}
	return total, nil
}

// clockTicks is USER_HZ, 100 on every Linux architecture Go supports.
const clockTicks = 100
