package stream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/aoaiblocks/securechat/chatproto"
)

// Defaults of the Options fields.
const (
	// DefaultSystemPrompt is the system prompt sent first in every request
	// unless Options says otherwise.
	DefaultSystemPrompt = "You are a helpful assistant."
	// DefaultMaxHistory bounds the number of client messages sent upstream.
	DefaultMaxHistory = 32
	// DefaultMaxHistoryBytes bounds the content of the client messages sent
	// upstream, in bytes of UTF-8 (very roughly four per token).
	DefaultMaxHistoryBytes = 128 << 10
	// DefaultMaxTokensLimit is the largest context.overrides.max_tokens a
	// client may ask for.
	DefaultMaxTokensLimit = 16384
	// DefaultTimeout bounds a whole exchange with the model.
	DefaultTimeout = 5 * time.Minute
	// DefaultIdleTimeout bounds the wait for the model's first delta and
	// between two deltas.
	DefaultIdleTimeout = 90 * time.Second
	// DefaultWriteTimeout bounds each write to the client.
	DefaultWriteTimeout = 30 * time.Second
)

// Options configures a Handler. A nil *Options means the defaults, and so
// does the zero value of each field.
type Options struct {
	// SystemPrompt is sent upstream as the first message of every
	// conversation. Empty means DefaultSystemPrompt.
	SystemPrompt string
	// NoSystemPrompt sends no system prompt of the service's own, for models
	// that bring their own instructions.
	NoSystemPrompt bool
	// AllowSystemMessages passes system messages from clients upstream (after
	// the service's system prompt, in their place in the conversation).
	// By default a request holding one is rejected with 400
	// system_message_not_allowed: a client that may write system messages
	// can override the service's instructions.
	AllowSystemMessages bool

	// MaxHistory bounds the number of messages from the client sent upstream,
	// MaxHistoryBytes the total bytes of their content. Over either bound, the
	// oldest turns (a user message and the answers after it) are dropped,
	// whole, until both hold; system messages and the last user message are
	// never dropped. Zero means DefaultMaxHistory and
	// DefaultMaxHistoryBytes; negative means no bound.
	MaxHistory      int
	MaxHistoryBytes int
	// MaxTokensLimit is the largest context.overrides.max_tokens accepted;
	// larger values are rejected with 400. Zero means DefaultMaxTokensLimit.
	MaxTokensLimit int

	// Timeout bounds a whole exchange with the model, and IdleTimeout the
	// wait for its first delta and between two deltas; either firing ends
	// the request with upstream_timeout. Zero means DefaultTimeout and
	// DefaultIdleTimeout; negative means no bound. Retries the model's client
	// makes before its first delta count against both; AzureModel begins no
	// retry wait that would end after the first delta is due. The idle bound
	// is checked a few times per period rather than reset on every delta, so
	// it fires between IdleTimeout and 1.25 times IdleTimeout after the last
	// delta (or after the request was sent to the model).
	Timeout     time.Duration
	IdleTimeout time.Duration
	// WriteTimeout bounds each write to the client (a line, or the complete
	// answer), so that a client that stops reading cannot hold the request
	// open; the request then ends as if the client had gone. Zero means
	// DefaultWriteTimeout, negative no bound. It replaces the server's
	// http.Server.WriteTimeout for these responses, which would otherwise cut
	// long answers. The deadline is moved forward a few times per period, not
	// before every line, so a write starts with between WriteTimeout and 1.25
	// times WriteTimeout ahead: a client that stops reading is dropped within
	// that.
	WriteTimeout time.Duration

	// Limits bounds the requests accepted (see chatproto.DecodeRequest). Nil
	// means chatproto's defaults.
	Limits *chatproto.Limits

	// Logger gets one line per request (see the package documentation). Nil
	// means slog.Default().
	Logger *slog.Logger
	// OnDone, when set, is called once at the end of every request with how
	// it went, after the log line, in the goroutine that served it. Use it
	// for metrics or an access log of your own.
	OnDone func(*Outcome)
}

// Outcome is how one request ended, for Options.OnDone.
type Outcome struct {
	// RequestID is the request's id, also sent as X-Request-Id.
	RequestID string
	// Stream reports whether the request was for the streaming endpoint.
	Stream bool
	// Status is the HTTP status answered, or 499 when the client went away
	// before the answer was complete.
	Status int
	// Code is the error code sent to the client (in the body or as the
	// stream's error line), "client_closed" when the client went away, or ""
	// when the answer was complete.
	Code string
	// FinishReason and Usage are the model's, when it finished.
	FinishReason string
	Usage        *Usage
	// Duration is the time from the request's arrival to its end.
	Duration time.Duration
	// Err is the full cause of a failure, for logs only.
	Err error
}

// codeClientClosed is the Outcome.Code of a request whose client went away.
const codeClientClosed = "client_closed"

// Handler serves the chat endpoints: POST <base> answers with a complete
// message, POST <base>/stream with JSON Lines. See the package documentation
// for the wire format, the errors and how to mount it. A Handler is safe for
// concurrent use.
type Handler struct {
	model Model
	opts  Options
	log   *slog.Logger
}

// NewHandler returns a Handler that asks model for its answers. opts may be
// nil for the defaults; NewHandler copies it. It panics if model is nil.
func NewHandler(model Model, opts *Options) *Handler {
	if model == nil {
		panic("stream: NewHandler needs a Model")
	}
	h := &Handler{model: model}
	if opts != nil {
		h.opts = *opts
	}
	o := &h.opts
	switch {
	case o.NoSystemPrompt:
		o.SystemPrompt = ""
	case o.SystemPrompt == "":
		o.SystemPrompt = DefaultSystemPrompt
	}
	o.MaxHistory = orDefault(o.MaxHistory, DefaultMaxHistory)
	o.MaxHistoryBytes = orDefault(o.MaxHistoryBytes, DefaultMaxHistoryBytes)
	if o.MaxTokensLimit <= 0 {
		o.MaxTokensLimit = DefaultMaxTokensLimit
	}
	o.Timeout = orDefault(o.Timeout, DefaultTimeout)
	o.IdleTimeout = orDefault(o.IdleTimeout, DefaultIdleTimeout)
	o.WriteTimeout = orDefault(o.WriteTimeout, DefaultWriteTimeout)
	h.log = o.Logger
	if h.log == nil {
		h.log = slog.Default()
	}
	return h
}

// orDefault resolves a bound: zero means def, negative means none (0).
func orDefault[T int | time.Duration](v, def T) T {
	switch {
	case v == 0:
		return def
	case v < 0:
		return 0
	}
	return v
}

// isStreamPath reports whether a request's path is the streaming endpoint:
// it ends with the segment "stream". This works whatever base the handler is
// mounted under, with or without http.StripPrefix.
func isStreamPath(p string) bool {
	return p == "stream" || strings.HasSuffix(p, "/stream")
}

// buffers recycles the line buffers of finished requests.
var buffers = sync.Pool{New: func() any {
	b := make([]byte, 0, 1024)
	return &b
}}

// maxPooledBuffer keeps buffers grown by huge answers out of the pool.
const maxPooledBuffer = 64 << 10

// ServeHTTP answers one request.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	x := &exchange{
		h:      h,
		w:      w,
		r:      r,
		start:  time.Now(),
		stream: isStreamPath(r.URL.Path),
		id:     requestID(r.Header.Get("X-Request-Id")),
		status: http.StatusOK,
	}
	bp := buffers.Get().(*[]byte)
	x.buf = (*bp)[:0]
	defer func() {
		if cap(x.buf) <= maxPooledBuffer {
			*bp = x.buf[:0]
			buffers.Put(bp)
		}
	}()

	w.Header().Set("X-Request-Id", x.id)
	x.rc = http.NewResponseController(w)
	x.flushErr, x.flusher = flusherOf(w)
	defer x.recoverPanic()
	x.serve()
	x.done()
}

// recoverPanic turns a panic while serving (in the model, most likely) into
// an internal_error answer and a log line with the stack, instead of a
// connection cut with nothing logged by the handler. http.ErrAbortHandler is
// passed on: it asks net/http to cut the connection.
func (x *exchange) recoverPanic() {
	v := recover()
	if v == nil {
		return
	}
	if v == http.ErrAbortHandler {
		panic(v)
	}
	x.fail = &failure{
		status:  http.StatusInternalServerError,
		code:    chatproto.CodeInternal,
		message: "internal server error",
		cause:   fmt.Errorf("stream: panic: %v", v),
		attrs:   []slog.Attr{slog.String("stack", string(debug.Stack()))},
	}
	if !x.gone {
		x.writeFailure()
	}
	x.done()
}

// exchange is the state of one request.
type exchange struct {
	h  *Handler
	w  http.ResponseWriter
	r  *http.Request
	rc *http.ResponseController
	// flushErr or else flusher flushes w; neither when nothing can.
	flushErr interface{ FlushError() error }
	flusher  http.Flusher
	watch    watch // the idle bound and the write deadline, while relaying
	watching bool  // watch was started
	start    time.Time
	stream   bool
	id       string
	buf      []byte

	firstDeltaBy time.Time // the idle bound on the first delta, or zero
	sessionState []byte    // compact, or nil
	sent         int       // messages sent upstream
	dropped      int       // messages the history bound dropped

	noDeadlines bool // the ResponseWriter cannot set write deadlines
	started     bool // the status and a first byte are on their way
	status      int
	fail        *failure
	gone        bool // the client went away
	finish      string
	usage       *Usage
}

func (x *exchange) serve() {
	if x.r.Method != http.MethodPost {
		x.w.Header().Set("Allow", http.MethodPost)
		x.fail = &failure{
			status:  http.StatusMethodNotAllowed,
			code:    CodeMethodNotAllowed,
			message: "use POST",
		}
		x.writeFailure()
		return
	}

	req, err := chatproto.DecodeRequest(x.r, x.h.opts.Limits)
	if err != nil {
		x.fail = classify(err)
		x.writeFailure()
		return
	}
	mreq, dropped, err := x.h.prepare(req)
	if err != nil {
		x.fail = classify(err)
		x.writeFailure()
		return
	}
	x.sent, x.dropped = len(mreq.Messages), dropped
	if req.SessionState != nil {
		if x.sessionState, err = appendRaw(nil, req.SessionState); err != nil {
			x.fail = &failure{
				status:  http.StatusBadRequest,
				code:    chatproto.CodeInvalidRequest,
				message: "sessionState: must be valid JSON",
				cause:   err,
			}
			x.writeFailure()
			return
		}
	}

	x.relay(mreq)
}

// relay asks the model and passes its answer on.
func (x *exchange) relay(req *Request) {
	opts := &x.h.opts
	ctx, cancel := context.WithCancelCause(x.r.Context())
	defer cancel(nil)
	if opts.IdleTimeout > 0 {
		x.firstDeltaBy = time.Now().Add(opts.IdleTimeout)
	}
	ctx = context.WithValue(ctx, exchangeKey{}, x)
	if opts.Timeout > 0 {
		var stop context.CancelFunc
		ctx, stop = context.WithTimeoutCause(ctx, opts.Timeout, errDeadline)
		defer stop()
	}
	if x.watching = x.watch.start(opts.IdleTimeout, opts.WriteTimeout, cancel); x.watching {
		defer x.watch.stop()
	}
	var content strings.Builder // the complete answer's content
	finished := false
	for d, err := range x.h.model.Stream(ctx, req) {
		if err != nil {
			x.upstreamFailed(ctx, err)
			break
		}
		if x.watching {
			x.watch.progress()
		}
		if d.FinishReason == "content_filter" {
			x.fail = newFailure(CodeContentFilter, errAnswerFiltered)
			x.finish = d.FinishReason
			x.usage = d.Usage
			break
		}

		if x.stream {
			if !x.started {
				x.startStream()
			}
			if d.Content != "" {
				x.buf = appendContentLine(x.buf, d.Content)
			}
			if !x.flush() {
				break
			}
		} else {
			content.WriteString(d.Content)
		}

		if d.FinishReason != "" {
			x.finish, x.usage, finished = d.FinishReason, d.Usage, true
			break
		}
	}

	if !x.gone && x.fail == nil && !finished {
		// The model stopped without an error or a finish reason.
		if ctx.Err() != nil {
			x.upstreamFailed(ctx, context.Cause(ctx))
		} else {
			x.fail = newFailure(CodeUpstreamError, errTruncated)
		}
	}
	if x.gone {
		return
	}
	if x.fail != nil {
		x.writeFailure()
		return
	}

	if x.stream {
		if !x.started {
			x.startStream()
		}
		x.buf = appendFinalLine(x.buf, x.finish, x.usage)
		x.flush()
		return
	}
	x.writeCompletion(content.String())
}

// upstreamFailed records the model's error err, telling apart a server
// shutting down, a client that left, a timeout of the handler's own, and a
// failure of the model.
func (x *exchange) upstreamFailed(ctx context.Context, err error) {
	if rctx := x.r.Context(); rctx.Err() != nil {
		// Whatever the model returned is a consequence of the cancellation
		// (a cut stream, an answer without a finish reason): its cause says
		// what happened.
		if cause := context.Cause(rctx); errors.Is(cause, ErrShuttingDown) {
			x.fail = newFailure(CodeUnavailable, cause)
			return
		}
		x.clientClosed(err)
		return
	}
	if cause := context.Cause(ctx); cause == errDeadline || cause == errIdle {
		x.fail = newFailure(CodeUpstreamTimeout, errors.Join(cause, err))
		return
	}
	x.fail = classify(err)
}

// startStream sets the streaming headers and puts the first line in the
// buffer.
func (x *exchange) startStream() {
	x.extendWriteDeadline()
	h := x.w.Header()
	h.Set("Content-Type", "application/jsonl")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	h.Set("X-Content-Type-Options", "nosniff")
	x.w.WriteHeader(http.StatusOK)
	x.started = true
	x.buf = appendFirstLine(x.buf, x.sessionState)
}

// flush writes the buffered lines and flushes them to the client. It reports
// false, and marks the client gone, when the client can no longer be
// written to.
func (x *exchange) flush() bool {
	if len(x.buf) == 0 {
		return true
	}
	if !x.watching || x.watch.deadlineDue() {
		x.extendWriteDeadline()
	}
	_, err := x.w.Write(x.buf)
	x.buf = x.buf[:0]
	switch {
	case err != nil:
	case x.flushErr != nil:
		err = x.flushErr.FlushError()
	case x.flusher != nil:
		x.flusher.Flush()
	}
	if err != nil {
		x.clientClosed(err)
		return false
	}
	return true
}

// clientClosed records that the client went away, as err (a failed write,
// say) showed. When the request's context is done, its cause, the
// cancellation, is what the log line gives, whatever err says.
func (x *exchange) clientClosed(err error) {
	if ctx := x.r.Context(); ctx.Err() != nil {
		if cause := context.Cause(ctx); !errors.Is(cause, ErrShuttingDown) {
			err = cause
		}
	}
	x.gone = true
	x.fail = &failure{code: codeClientClosed, cause: err}
}

// extendWriteDeadline gives the writes to come WriteTimeout to complete, and,
// while the watch runs, a step more, since it is not moved again until the
// watch's next look: so every write starts with at least WriteTimeout ahead.
// With no bound, it lifts the server's deadline. A ResponseWriter that
// cannot set deadlines keeps its own.
func (x *exchange) extendWriteDeadline() {
	if x.noDeadlines {
		return
	}
	var d time.Time
	if t := x.h.opts.WriteTimeout; t > 0 {
		if x.watching {
			t += x.watch.step
		}
		d = time.Now().Add(t)
	}
	if err := x.rc.SetWriteDeadline(d); err != nil {
		x.noDeadlines = true // do not ask again: the error allocates
	}
}

// writeFailure answers x.fail: an HTTP error before the first byte, an error
// line after it.
func (x *exchange) writeFailure() {
	f := x.fail
	if x.started {
		x.buf = appendErrorLine(x.buf, f.code, f.message)
		x.flush()
		return
	}
	h := x.w.Header()
	if f.status == http.StatusTooManyRequests && f.retryAfter > 0 {
		h.Set("Retry-After", retryAfterSeconds(f.retryAfter))
	}
	h.Set("Cache-Control", "no-store")
	x.status = f.status
	x.extendWriteDeadline()
	chatproto.WriteError(x.w, f.protoError())
	if x.status < 400 || x.status > 599 {
		x.status = http.StatusInternalServerError // as WriteError answered
	}
}

// writeCompletion answers the complete endpoint.
func (x *exchange) writeCompletion(content string) {
	x.buf = appendCompletion(x.buf, content, x.finish, x.usage, x.sessionState)
	h := x.w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	x.extendWriteDeadline()
	x.w.WriteHeader(http.StatusOK)
	if _, err := x.w.Write(x.buf); err != nil {
		x.clientClosed(err)
	}
	x.buf = x.buf[:0]
}

// done writes the request's log line and calls OnDone.
func (x *exchange) done() {
	o := Outcome{
		RequestID:    x.id,
		Stream:       x.stream,
		Status:       x.status,
		FinishReason: x.finish,
		Usage:        x.usage,
		Duration:     time.Since(x.start),
	}
	level := slog.LevelInfo
	if f := x.fail; f != nil {
		o.Code, o.Err = f.code, f.cause
		switch {
		case x.gone:
			o.Status = statusClientClosed
		case f.code == CodeUnavailable:
			level = slog.LevelWarn // the server's own doing, not a fault
		case f.status >= 500:
			level = slog.LevelError
		case f.status >= 400:
			level = slog.LevelWarn
		}
	}

	route := "complete"
	if x.stream {
		route = "stream"
	}
	attrs := make([]slog.Attr, 0, 16)
	attrs = append(attrs,
		slog.String("request_id", o.RequestID),
		slog.String("route", route),
		slog.String("method", x.r.Method),
		slog.Int("status", o.Status),
		slog.Duration("duration", o.Duration),
	)
	if o.Code != "" {
		attrs = append(attrs, slog.String("code", o.Code))
	}
	if x.sent > 0 {
		attrs = append(attrs, slog.Int("messages", x.sent))
	}
	if x.dropped > 0 {
		attrs = append(attrs, slog.Int("dropped_messages", x.dropped))
	}
	if o.FinishReason != "" {
		attrs = append(attrs, slog.String("finish_reason", o.FinishReason))
	}
	if u := o.Usage; u != nil {
		attrs = append(attrs,
			slog.Int64("prompt_tokens", u.PromptTokens),
			slog.Int64("completion_tokens", u.CompletionTokens),
			slog.Int64("total_tokens", u.TotalTokens),
		)
	}
	if o.Err != nil {
		attrs = append(attrs, slog.String("error", o.Err.Error()))
	}
	if x.fail != nil {
		attrs = append(attrs, x.fail.attrs...)
	}
	x.h.log.LogAttrs(context.WithoutCancel(x.r.Context()), level, "chat request", attrs...)

	if x.h.opts.OnDone != nil {
		x.h.opts.OnDone(&o)
	}
}

// flusherOf returns what flushes w, found once per request (through Unwrap,
// as http.ResponseController finds it on every call, which costs as much as
// the rest of the work on a line): a FlushError method, else an
// http.Flusher, else neither.
func flusherOf(w http.ResponseWriter) (interface{ FlushError() error }, http.Flusher) {
	for {
		switch t := w.(type) {
		case interface{ FlushError() error }:
			return t, nil
		case http.Flusher:
			return nil, t
		case interface{ Unwrap() http.ResponseWriter }:
			w = t.Unwrap()
		default:
			return nil, nil
		}
	}
}
