package bench

import (
	"os"
	"runtime/pprof"
)

// cpuProfile writes a CPU profile of what runs until stop to path (go
// tool pprof path); an empty path profiles nothing.
func cpuProfile(path string) (stop func(), err error) {
	if path == "" {
		return func() {}, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}
