// Package poll watches a condition in the background for tests that must
// prove something never happened while an action ran (a server that
// never read off during a reboot, say).
package poll

import (
	"sync/atomic"
	"time"
)

// Watch checks cond every millisecond until the returned function is
// called; that function stops the watch and reports whether cond held at
// any check.
func Watch(cond func() bool) (stop func() bool) {
	var saw atomic.Bool
	done, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		for {
			if cond() {
				saw.Store(true)
			}
			select {
			case <-done:
				return
			case <-time.After(time.Millisecond):
			}
		}
	}()
	return func() bool {
		close(done)
		<-stopped
		return saw.Load()
	}
}
