package metrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	// Importing net/http/pprof also registers its handlers on http.DefaultServeMux (in the
	// package's init, beyond our control). dsh never serves DefaultServeMux; this server
	// mounts the handlers on its own mux, and only when asked to.
	"net/http/pprof"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// ServeOptions tunes Serve; the zero value serves /metrics only.
type ServeOptions struct {
	// Pprof adds the Go profiler under /debug/pprof/. It shows stacks and memory, so it is
	// off unless the operator turns it on for a diagnosis.
	Pprof bool
	// Logger receives scrape and server errors; nil means slog.Default().
	Logger *slog.Logger
}

// Limits of the endpoint. Scrapes come from one Prometheus on the loopback; these keep a
// stuck or hostile client from holding connections or piling up concurrent gathers.
const (
	readHeaderTimeout   = 5 * time.Second
	idleTimeout         = time.Minute
	maxRequestsInFlight = 4
)

// Server is a running metrics endpoint.
type Server struct {
	srv  *http.Server
	addr string
	done chan struct{}
}

// Serve listens on addr (host:port; port 0 picks a free one) and serves the metrics of g on
// /metrics in the background. It returns an error at once if it cannot listen.
func Serve(addr string, g prometheus.Gatherer, opts ServeOptions) (*Server, error) {
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics: listen on %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(g, promhttp.HandlerOpts{
		ErrorLog: scrapeLogger{log},
		// A collector that fails must not hide all the others from the scrape.
		ErrorHandling:       promhttp.ContinueOnError,
		MaxRequestsInFlight: maxRequestsInFlight,
	}))
	if opts.Pprof {
		mux.HandleFunc("GET /debug/pprof/", pprof.Index)
		mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("POST /debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	}
	s := &Server{
		srv: &http.Server{
			Handler:           mux,
			ReadHeaderTimeout: readHeaderTimeout,
			IdleTimeout:       idleTimeout,
			// No WriteTimeout: a CPU profile legitimately streams for its whole duration.
			ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		},
		addr: ln.Addr().String(),
		done: make(chan struct{}),
	}
	go func() {
		defer close(s.done)
		if err := s.srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics endpoint stopped", "addr", s.addr, "err", err)
		}
	}()
	return s, nil
}

// Addr returns the address the server listens on, with the port it was given.
func (s *Server) Addr() string { return s.addr }

// Shutdown stops accepting scrapes and waits, until ctx ends, for those in progress.
func (s *Server) Shutdown(ctx context.Context) error {
	if err := s.srv.Shutdown(ctx); err != nil {
		return fmt.Errorf("metrics: shutdown: %w", err)
	}
	<-s.done
	return nil
}

// Close stops the server at once, dropping scrapes in progress.
func (s *Server) Close() error {
	err := s.srv.Close()
	<-s.done
	if err != nil {
		return fmt.Errorf("metrics: close: %w", err)
	}
	return nil
}

// scrapeLogger gives promhttp's error log to slog.
type scrapeLogger struct{ log *slog.Logger }

func (l scrapeLogger) Println(v ...any) {
	l.log.Error("metrics scrape", "err", fmt.Sprint(v...))
}
