package cli

import (
	"log/slog"
	"net/http"
	"net/http/pprof"
)

// servePprof serves Go's profiling endpoints on a separate listener that
// operators bind to loopback: they are not part of the API.
func servePprof(addr string, log *slog.Logger) {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Addr: addr, Handler: mux}
	if err := srv.ListenAndServe(); err != nil {
		log.Warn("pprof server stopped", "err", err)
	}
}
