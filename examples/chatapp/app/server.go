package app

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/aoaiblocks/securechat/stream"
)

// DefaultShutdownTimeout is how long Serve lets requests in flight finish
// after it is told to stop, when no other timeout is given. It stays inside
// the 30 seconds Azure Container Apps waits between SIGTERM and SIGKILL.
const DefaultShutdownTimeout = 25 * time.Second

// cancelGrace is how long Serve waits, after cancelling the requests that
// outlived the shutdown timeout, for their handlers to notice and return
// before it closes their connections.
const cancelGrace = 2 * time.Second

// Production reports whether the environment that getenv reads looks like
// Azure: RUNNING_IN_PRODUCTION set to a true value, or any of the variables
// Azure Container Apps sets in every container (CONTAINER_APP_NAME).
func Production(getenv func(string) string) bool {
	if v := getenv("RUNNING_IN_PRODUCTION"); v != "" {
		b, err := strconv.ParseBool(v)
		return err != nil || b // any value but an explicit false counts
	}
	return getenv("CONTAINER_APP_NAME") != ""
}

// NewLogger returns the logger the app uses: JSON lines when production is
// true (Azure's log pipeline parses them), readable text otherwise.
func NewLogger(w io.Writer, production bool, level slog.Level) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	if production {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// Serve answers HTTP requests on ln with h until ctx is done, then shuts
// down gracefully: it stops accepting connections, lets requests in flight
// (streams included) finish for up to timeout, then cancels the context of
// those still running, so their upstream calls stop, and closes their
// connections shortly after. A timeout of zero means
// DefaultShutdownTimeout.
//
// Serve returns nil after a shutdown in which every request finished in
// time, context.DeadlineExceeded when some had to be cancelled, and the
// listener's error if serving failed.
func Serve(ctx context.Context, ln net.Listener, h http.Handler, log *slog.Logger,
	timeout time.Duration) error {
	if timeout <= 0 {
		timeout = DefaultShutdownTimeout
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}

	// Requests still in flight at the deadline are cancelled with ErrShuttingDown as
	// the cause, so the stream handler tells their clients the server is stopping
	// instead of ending the answer as if the client had left.
	base, cancel := context.WithCancelCause(context.WithoutCancel(ctx))
	defer cancel(nil)
	srv := &http.Server{
		Handler:           h,
		BaseContext:       func(net.Listener) context.Context { return base },
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()

	select {
	case err := <-served:
		return err
	case <-ctx.Done():
	}

	log.Info("shutting down", "timeout", timeout)
	start := time.Now()
	drain, stop := context.WithTimeout(context.WithoutCancel(ctx), timeout)
	defer stop()
	err := srv.Shutdown(drain)
	if err == nil {
		log.Info("shut down", "duration", time.Since(start))
		return nil
	}

	log.Warn("cancelling requests still in flight", "timeout", timeout)
	cancel(stream.ErrShuttingDown)
	grace, stopGrace := context.WithTimeout(context.WithoutCancel(ctx), cancelGrace)
	defer stopGrace()
	if srv.Shutdown(grace) != nil {
		_ = srv.Close()
	}
	log.Info("shut down", "duration", time.Since(start))
	return context.DeadlineExceeded
}

// URL returns the address to open in a browser for a listener bound to addr:
// a wildcard host becomes localhost.
func URL(addr net.Addr) string {
	host, port, err := net.SplitHostPort(addr.String())
	if err != nil {
		return "http://" + addr.String() + "/"
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "localhost"
	}
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	return "http://" + host + ":" + port + "/"
}
