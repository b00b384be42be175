package app

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/aoaiblocks/securechat/chatproto"
)

// ContentSecurityPolicy is the Content-Security-Policy header the app sends
// with every response. Scripts, styles and connections may only come from the
// app itself; nothing may frame the page.
const ContentSecurityPolicy = "default-src 'self'; script-src 'self'; style-src 'self'; " +
	"img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; " +
	"base-uri 'none'; form-action 'self'"

// securityHeaders sets the headers every response carries, before the
// wrapped handler writes anything, so error answers and redirects get them
// too.
func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", ContentSecurityPolicy)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cross-Origin-Opener-Policy", "same-origin")
		h.Set("X-Frame-Options", "DENY")
		next.ServeHTTP(w, r)
	})
}

// limitBodyTime gives the body of each request d to arrive: it sets the
// connection's read deadline, so that a read past it fails (DecodeRequest
// then answers 408 request_timeout). net/http clears the deadline when the
// body has been read to its end, before it watches the connection for the
// client leaving, so the deadline neither cuts nor cancels a long answer; a
// server-wide http.Server.ReadTimeout would behave the same, but this bound
// travels with the handler into any server that mounts it. Requests without
// a body, and writers that cannot set deadlines (httptest.ResponseRecorder),
// are left as they are.
func limitBodyTime(d time.Duration, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength != 0 && r.Body != nil && r.Body != http.NoBody {
			_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(d))
		}
		next.ServeHTTP(w, r)
	})
}

// requestIDHeader names the header that carries a request's id. The chat
// handler reads it, so the access log, the handler's log line and the
// response all show one id per request.
const requestIDHeader = "X-Request-Id"

// requestID returns the id the client (or a proxy) sent when it is 1 to 128
// letters, digits and - _ . : characters, the rule the chat handler follows
// too, and a new random id otherwise.
func requestID(r *http.Request) string {
	id := r.Header.Get(requestIDHeader)
	if id != "" && len(id) <= 128 && strings.IndexFunc(id, unsafeIDRune) < 0 {
		return id
	}
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never returns an error
	return hex.EncodeToString(b[:])
}

func unsafeIDRune(c rune) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return false
	case c == '-', c == '_', c == '.', c == ':':
		return false
	}
	return true
}

// requestInfo is what the access log learns from inside the middleware
// chain: the pattern that matched. It travels in the request's context.
type requestInfo struct {
	mu    sync.Mutex
	route string
}

type requestInfoKey struct{}

// Routes served by the chat handler, which writes its own log line.
const (
	routeChat       = "/chat"
	routeChatStream = "/chat/stream"
)

// accessLog gives every request an id and writes one log line per request:
// its id, method, route pattern, status, bytes written and duration. The
// chat routes are left to the chat handler, whose line has the same id and
// adds the outcome and the token usage. Successful health probes, and every
// readiness probe, are logged at debug level only: the readiness probe logs
// its changes itself (see App.noteReadiness). No line carries the request's
// body, query string or any header that may hold a secret.
func accessLog(log *slog.Logger, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		id := requestID(r)
		info := &requestInfo{}

		r = r.WithContext(context.WithValue(r.Context(), requestInfoKey{}, info))
		r.Header.Set(requestIDHeader, id)
		w.Header().Set(requestIDHeader, id)
		rec := &statusRecorder{ResponseWriter: w}
		next.ServeHTTP(rec, r)

		route := info.routeName()
		if route == routeChat || route == routeChatStream {
			return
		}
		level := slog.LevelInfo
		if route == routeReady || (route == routeHealth && rec.status() < 300) {
			level = slog.LevelDebug
		}
		log.LogAttrs(context.WithoutCancel(r.Context()), level, "request",
			slog.String("request_id", id),
			slog.String("route", route),
			slog.String("method", r.Method),
			slog.Int("status", rec.status()),
			slog.Int64("bytes", rec.bytes),
			slog.Duration("duration", time.Since(start)),
		)
	})
}

// recordRoute serves r with mux and notes the pattern that matched: the
// ServeMux sets it on the request it was given.
func recordRoute(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mux.ServeHTTP(w, r)
		if info, _ := r.Context().Value(requestInfoKey{}).(*requestInfo); info != nil {
			info.mu.Lock()
			info.route = r.Pattern
			info.mu.Unlock()
		}
	})
}

// routeName returns the pattern that served the request. Requests no pattern
// matched, or that middleware answered first, are reported as "unmatched", so
// a scan of random paths cannot fill the log with attacker-chosen text.
func (info *requestInfo) routeName() string {
	info.mu.Lock()
	defer info.mu.Unlock()
	if info.route == "" {
		return "unmatched"
	}
	return info.route
}

// statusRecorder remembers the status and size of a response. It passes
// Flush through, so the stream handler's lines still leave at once, and
// unwraps for http.ResponseController.
type statusRecorder struct {
	http.ResponseWriter
	code  int
	bytes int64
}

func (s *statusRecorder) WriteHeader(code int) {
	if s.code == 0 && code >= 200 {
		s.code = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(p []byte) (int, error) {
	if s.code == 0 {
		s.code = http.StatusOK
	}
	n, err := s.ResponseWriter.Write(p)
	s.bytes += int64(n)
	return n, err
}

// Flush sends buffered data to the client.
func (s *statusRecorder) Flush() {
	if s.code == 0 {
		s.code = http.StatusOK
	}
	_ = http.NewResponseController(s.ResponseWriter).Flush()
}

// Unwrap returns the wrapped writer, for http.ResponseController.
func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

func (s *statusRecorder) status() int {
	if s.code == 0 {
		return http.StatusOK
	}
	return s.code
}

// principalHeader is the header Container Apps built-in authentication sets
// on every request it lets through: base64 of a JSON document with the
// signed-in user's claims.
const principalHeader = "X-MS-CLIENT-PRINCIPAL"

// clientPrincipal is the JSON inside principalHeader.
type clientPrincipal struct {
	AuthType string `json:"auth_typ"`
	NameType string `json:"name_typ"`
	Claims   []struct {
		Type  string `json:"typ"`
		Value string `json:"val"`
	} `json:"claims"`
}

// principalName returns the user's name from the principal header's value:
// the claim named by name_typ, else "name", else "preferred_username". It
// reports false when the value is not a principal document.
func principalName(v string) (string, bool) {
	raw, err := base64.StdEncoding.DecodeString(v)
	if err != nil {
		raw, err = base64.RawStdEncoding.DecodeString(v)
	}
	if err != nil {
		return "", false
	}
	var p clientPrincipal
	if err := json.Unmarshal(raw, &p); err != nil || p.Claims == nil {
		return "", false
	}
	for _, want := range []string{p.NameType, "name", "preferred_username"} {
		if want == "" {
			continue
		}
		for _, c := range p.Claims {
			if c.Type == want && c.Value != "" {
				return c.Value, true
			}
		}
	}
	return "", true
}

type userKey struct{}

// userFrom returns the signed-in user's name that requireSignIn found, or "".
func userFrom(ctx context.Context) string {
	u, _ := ctx.Value(userKey{}).(string)
	return u
}

// errUnauthenticated is the protocol error a request without a principal
// gets when sign-in is required.
var errUnauthenticated = &chatproto.Error{
	Status:  http.StatusUnauthorized,
	Code:    "unauthenticated",
	Message: "sign in to use this app",
}

// requireSignIn admits a request only when it carries a valid principal
// header, and puts the user's name in its context. Health probes are exempt:
// the platform sends them straight to the container.
func requireSignIn(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" || r.URL.Path == "/readyz" {
			next.ServeHTTP(w, r)
			return
		}
		name, ok := principalName(r.Header.Get(principalHeader))
		if !ok {
			chatproto.WriteError(w, errUnauthenticated)
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), userKey{}, name)))
	})
}
