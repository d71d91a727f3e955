package metrics

import (
	"net/http"
	"net/http/pprof"
)

// Pprof serves Go's profiles under /debug/pprof/ ([debug] pprof): the
// index, cmdline, profile (CPU), symbol, trace, and every named profile
// (heap, goroutine, mutex, block, allocs, threadcreate).
func Pprof() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}
