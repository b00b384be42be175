package stream

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"time"
)

// maxRequestIDLen bounds an X-Request-Id taken from a request.
const maxRequestIDLen = 128

// exchangeKey is the context key of the exchange a model's context belongs
// to, behind RequestID and firstDeltaBy.
type exchangeKey struct{}

// RequestID returns the id the Handler gave the request whose context ctx
// is (or derives from), or "" when there is none. Models use it to tie their
// own log lines to the handler's.
func RequestID(ctx context.Context) string {
	if x, _ := ctx.Value(exchangeKey{}).(*exchange); x != nil {
		return x.id
	}
	return ""
}

// firstDeltaBy returns the time by which the Handler that made ctx wants the
// model's first delta: the end of its idle bound on the first delta, or of
// ctx's deadline (Options.Timeout), whichever comes first. It reports false
// when there is neither.
func firstDeltaBy(ctx context.Context) (time.Time, bool) {
	by, ok := ctx.Deadline()
	if x, _ := ctx.Value(exchangeKey{}).(*exchange); x != nil && !x.firstDeltaBy.IsZero() &&
		(!ok || x.firstDeltaBy.Before(by)) {
		by, ok = x.firstDeltaBy, true
	}
	return by, ok
}

// requestID returns the X-Request-Id the client (or a proxy in front) sent
// when it is a reasonable id, or a new random one.
func requestID(header string) string {
	if validRequestID(header) {
		return header
	}
	return newRequestID()
}

// validRequestID accepts 1 to 128 letters, digits and - _ . : characters,
// which covers the ids the Handler makes, UUIDs, Azure's ids and most
// proxies' formats, and keeps anything odd out of logs and headers.
func validRequestID(s string) bool {
	if s == "" || len(s) > maxRequestIDLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case c == '-', c == '_', c == '.', c == ':':
		default:
			return false
		}
	}
	return true
}

// newRequestID returns a new id: 128 random bits as 32 lowercase
// hexadecimal digits, the form the example app's middleware gives the ids it
// makes, so that ids look alike wherever they were made.
func newRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	return hex.EncodeToString(b[:])
}
