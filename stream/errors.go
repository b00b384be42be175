package stream

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/openai/openai-go/v3"

	"github.com/aoaiblocks/securechat/chatproto"
	"github.com/aoaiblocks/securechat/keyless"
)

// Codes of the errors the Handler answers besides those of
// chatproto.DecodeRequest. They are stable: clients may switch on them. The
// package documentation has the full table with statuses.
const (
	// CodeMethodNotAllowed: a method other than POST. Status 405, with
	// Allow: POST.
	CodeMethodNotAllowed = "method_not_allowed"
	// CodeSystemMessageNotAllowed: the client sent a system message and
	// Options.AllowSystemMessages is false. Status 400.
	CodeSystemMessageNotAllowed = "system_message_not_allowed"
	// CodeContentFilter: Azure's content filter blocked the prompt (status
	// 400) or the answer (status 400 before the first byte, an error line
	// after it).
	CodeContentFilter = "content_filter"
	// CodeRateLimited: the model's deployment is throttling the service, even
	// after the client library's retries. Status 429, with Retry-After when
	// the upstream said how long to wait.
	CodeRateLimited = "rate_limited"
	// CodeUpstreamAuth: the model refused the service's token (401 or 403),
	// usually because its identity lacks the Cognitive Services OpenAI User
	// role. Status 502. The log names the principal and the fix.
	CodeUpstreamAuth = "upstream_auth"
	// CodeCredentialUnavailable: no credential source could get a token.
	// Status 503. The log carries every source's reason.
	CodeCredentialUnavailable = "credential_unavailable"
	// CodeUpstreamTimeout: the model did not answer within Options.Timeout,
	// or went silent for longer than Options.IdleTimeout, or said it timed
	// out. Status 504.
	CodeUpstreamTimeout = "upstream_timeout"
	// CodeUpstreamError: any other failure of the model or of the way to it
	// (5xx, a cut connection, a malformed chunk, a rejected request). Status
	// 502.
	CodeUpstreamError = "upstream_error"
	// CodeUnavailable: the server stopped the request because it is shutting
	// down (see ErrShuttingDown). Status 503 before the first byte, an error
	// line after it. Asking again, a moment later, reaches a server that
	// runs.
	CodeUnavailable = "unavailable"
)

// ErrShuttingDown is the cause with which a server cancels the requests it
// stops because it is shutting down. When the context of a request ends
// with this cause (context.Cause), the Handler tells the client so, with
// code unavailable (an error line if the answer has begun), instead of
// treating the request as one the client left.
//
// An app that cancels the requests still running at the end of its
// graceful shutdown, through the base context of its http.Server, makes
// that context with context.WithCancelCause and cancels it with
// ErrShuttingDown:
//
//	base, cancel := context.WithCancelCause(context.Background())
//	srv := &http.Server{BaseContext: func(net.Listener) context.Context {
//		return base
//	}}
//	...
//	if srv.Shutdown(drain) != nil {
//		cancel(stream.ErrShuttingDown)
//	}
var ErrShuttingDown = errors.New("stream: the server is shutting down")

// RoleOpenAIUser is the Azure built-in role that lets a principal call Azure
// OpenAI inference with an Entra ID token.
const RoleOpenAIUser = "Cognitive Services OpenAI User"

// Error is a failure a Model reports with its answer already decided: the
// code the client gets (one of the Code constants), the status that goes with
// it before the first byte, and what the log line should add. The message the
// client sees is the code's generic message; Err is only logged.
//
// Models built on openai-go need not return Error: the Handler maps
// openai-go's errors itself (see the package documentation).
type Error struct {
	// Status is the HTTP status answered when the failure comes before the
	// first byte. Zero means the code's usual status.
	Status int
	// Code is the stable code sent to the client.
	Code string
	// RetryAfter, when positive, is sent as the Retry-After header (in whole
	// seconds, rounded up) with a 429.
	RetryAfter time.Duration
	// Attrs are added to the request's log line, for example the principal
	// that lacks a role. They must not hold tokens or user text.
	Attrs []slog.Attr
	// Err is the cause, for the log and errors.Is/As.
	Err error
}

// Error returns "stream: " followed by the code and the cause.
func (e *Error) Error() string {
	if e.Err == nil {
		return "stream: " + e.Code
	}
	return "stream: " + e.Code + ": " + e.Err.Error()
}

// Unwrap returns the cause, Err.
func (e *Error) Unwrap() error { return e.Err }

// clientMessages are the messages clients see for the handler's own codes.
// They say what happened and what the user can do, and nothing more.
var clientMessages = map[string]string{
	CodeContentFilter:         "the content filter blocked the message or the answer",
	CodeRateLimited:           "the model is busy; try again shortly",
	CodeUpstreamAuth:          "the service is not authorized to use the model",
	CodeCredentialUnavailable: "the service could not sign in to the model",
	CodeUpstreamTimeout:       "the model did not answer in time",
	CodeUpstreamError:         "the model failed to answer",
	CodeUnavailable:           "the server is restarting; please try again",
}

// codeStatus is the usual status of each of the handler's codes.
var codeStatus = map[string]int{
	CodeContentFilter:         http.StatusBadRequest,
	CodeRateLimited:           http.StatusTooManyRequests,
	CodeUpstreamAuth:          http.StatusBadGateway,
	CodeCredentialUnavailable: http.StatusServiceUnavailable,
	CodeUpstreamTimeout:       http.StatusGatewayTimeout,
	CodeUpstreamError:         http.StatusBadGateway,
	CodeUnavailable:           http.StatusServiceUnavailable,
}

// failure is how a request failed: what the client is told and what the log
// line says.
type failure struct {
	status     int
	code       string
	message    string
	retryAfter time.Duration
	attrs      []slog.Attr
	cause      error
}

// newFailure returns the failure for one of the handler's own codes.
func newFailure(code string, cause error) *failure {
	return &failure{
		status:  codeStatus[code],
		code:    code,
		message: clientMessages[code],
		cause:   cause,
	}
}

// protoError is the error body the client gets for f.
func (f *failure) protoError() *chatproto.Error {
	return &chatproto.Error{Status: f.status, Code: f.code, Message: f.message}
}

// classify decides how a model's error is answered. It never copies text from
// the error into the client's message, except from a *chatproto.Error, whose
// Message is client-facing by definition.
func classify(err error) *failure {
	var se *Error
	if errors.As(err, &se) {
		f := newFailure(se.Code, err)
		if f.message == "" {
			f.message = clientMessages[CodeUpstreamError]
		}
		if se.Status != 0 {
			f.status = se.Status
		}
		if f.status == 0 {
			f.status = http.StatusBadGateway
		}
		f.retryAfter = se.RetryAfter
		f.attrs = se.Attrs
		return f
	}

	var pe *chatproto.Error
	if errors.As(err, &pe) {
		return &failure{status: pe.Status, code: pe.Code, message: pe.Message, cause: err}
	}

	var ce *keyless.CredentialError
	if errors.As(err, &ce) {
		return newFailure(CodeCredentialUnavailable, err)
	}

	var oe *openai.Error
	if errors.As(err, &oe) {
		return classifyAPIError(oe, err)
	}

	if isTimeout(err) {
		return newFailure(CodeUpstreamTimeout, err)
	}
	return newFailure(CodeUpstreamError, err)
}

// classifyAPIError maps an error status from Azure OpenAI.
func classifyAPIError(oe *openai.Error, err error) *failure {
	var f *failure
	switch {
	case oe.StatusCode == http.StatusBadRequest && oe.Code == "content_filter":
		f = newFailure(CodeContentFilter, err)
	case oe.StatusCode == http.StatusUnauthorized || oe.StatusCode == http.StatusForbidden:
		f = newFailure(CodeUpstreamAuth, err)
	case oe.StatusCode == http.StatusTooManyRequests:
		f = newFailure(CodeRateLimited, err)
		if oe.Response != nil {
			f.retryAfter = retryAfter(oe.Response.Header)
		}
	case oe.StatusCode == http.StatusRequestTimeout ||
		oe.StatusCode == http.StatusGatewayTimeout:
		f = newFailure(CodeUpstreamTimeout, err)
	default:
		f = newFailure(CodeUpstreamError, err)
	}

	f.attrs = append(f.attrs, slog.Int("upstream_status", oe.StatusCode))
	if oe.Code != "" {
		f.attrs = append(f.attrs, slog.String("upstream_code", oe.Code))
	}
	if oe.Response != nil {
		if id := upstreamRequestID(oe.Response.Header); id != "" {
			f.attrs = append(f.attrs, slog.String("upstream_request_id", id))
		}
	}
	return f
}

// upstreamRequestID is the id Azure gave a request, for support cases.
func upstreamRequestID(h http.Header) string {
	for _, k := range []string{"apim-request-id", "x-request-id", "x-ms-request-id"} {
		if v := h.Get(k); v != "" && len(v) <= 128 {
			return v
		}
	}
	return ""
}

// retryAfter reads how long the upstream asked to wait: retry-after-ms (as
// Azure sends it) first, then Retry-After in seconds or as an HTTP date. It
// returns 0 when neither says.
func retryAfter(h http.Header) time.Duration {
	if v := h.Get("retry-after-ms"); v != "" {
		if ms, err := strconv.ParseFloat(v, 64); err == nil && ms > 0 && ms < 1e9 {
			return time.Duration(ms * float64(time.Millisecond))
		}
	}
	v := h.Get("Retry-After")
	if v == "" {
		return 0
	}
	if s, err := strconv.ParseFloat(v, 64); err == nil {
		if s > 0 && s < 1e6 {
			return time.Duration(s * float64(time.Second))
		}
		return 0
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := time.Until(t); d > 0 {
			return d
		}
	}
	return 0
}

// retryAfterSeconds formats d for the Retry-After header: whole seconds,
// rounded up, at least 1.
func retryAfterSeconds(d time.Duration) string {
	s := int64((d + time.Second - 1) / time.Second)
	return strconv.FormatInt(max(s, 1), 10)
}

// isTimeout reports whether err says that something took too long.
func isTimeout(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// errIdle and errDeadline are the causes the handler gives its upstream
// context when one of its timeouts fires.
var (
	errDeadline = errors.New("stream: the model did not finish within the timeout")
	errIdle     = errors.New("stream: the model sent nothing within the idle timeout")
)

// errTruncated reports a model whose answer ended without a finish reason.
var errTruncated = errors.New("stream: the model's answer ended without a finish reason")

// errAnswerFiltered is the cause logged when the answer ends with the
// finish reason content_filter.
var errAnswerFiltered = errors.New("stream: the content filter blocked the answer")

// statusClientClosed is logged (never sent) when the client went away first,
// after the convention of some proxies.
const statusClientClosed = 499
