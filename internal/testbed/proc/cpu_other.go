//go:build !linux

package proc

import (
	"errors"
	"time"
)

// CPU is not measured outside Linux.
func CPU(int) (time.Duration, error) { return 0, errors.New("process CPU time is read on Linux only") }
