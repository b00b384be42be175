package chatproto

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var hi = &Request{Messages: []Message{{Role: RoleUser, Content: "hi"}}}

// lines answers 200 with a JSON Lines body and writes each of ls as it is,
// flushing after each.
func lines(ls ...string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/jsonl")
		for _, l := range ls {
			_, _ = io.WriteString(w, l)
			http.NewResponseController(w).Flush()
		}
	}
}

// cutAfter writes like lines, then drops the connection before the response
// is complete, as a crashing server or a broken network does.
func cutAfter(ls ...string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		lines(ls...)(w, r)
		panic(http.ErrAbortHandler)
	}
}

// status answers code with the given Content-Type and body.
func status(code int, ct, body string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if ct != "" {
			w.Header().Set("Content-Type", ct)
		}
		w.WriteHeader(code)
		_, _ = io.WriteString(w, body)
	}
}

// unframed answers a body with no length and no chunking, so that closing
// the connection ends the body cleanly wherever it is.
func unframed(body string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		conn, buf, err := http.NewResponseController(w).Hijack()
		if err != nil {
			panic(err)
		}
		defer conn.Close()
		_, _ = buf.WriteString("HTTP/1.1 200 OK\r\nContent-Type: application/jsonl\r\n" +
			"Connection: close\r\n\r\n" + body)
		_ = buf.Flush()
	}
}

// collect ranges over seq and returns the deltas and the error that ended
// it, failing the test if a pair after an error arrives.
func collect(t *testing.T, seq func(func(CompletionDelta, error) bool)) (
	[]CompletionDelta, error) {
	t.Helper()
	var ds []CompletionDelta
	var last error
	for d, err := range seq {
		if last != nil {
			t.Fatalf("a pair after the error %v", last)
		}
		if err != nil {
			last = err
			continue
		}
		ds = append(ds, d)
	}
	return ds, last
}

// serve starts a loopback server with h mounted at /chat and /chat/stream.
func serve(t *testing.T, h http.Handler) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

func TestClientStream(t *testing.T) {
	const (
		first   = `{"delta":{"role":"assistant"},"context":{"data_points":{"text":["d1"]}}}` + "\n"
		hel     = `{"delta":{"content":"Hel"}}` + "\n"
		lo      = `{"delta":{"content":"lo"}}` + "\n"
		final   = `{"delta":{},"context":{"finish_reason":"stop"}}` + "\n"
		errLine = `{"error":{"code":"upstream_error","message":"the model failed"}}` + "\n"
	)
	dFirst := CompletionDelta{Delta: MessageDelta{Role: RoleAssistant},
		Context: json.RawMessage(`{"data_points":{"text":["d1"]}}`)}
	dHel := CompletionDelta{Delta: MessageDelta{Content: "Hel"}}
	dLo := CompletionDelta{Delta: MessageDelta{Content: "lo"}}
	dFinal := CompletionDelta{Context: json.RawMessage(`{"finish_reason":"stop"}`)}

	tests := []struct {
		name    string
		h       http.HandlerFunc
		opts    *ClientOptions
		want    []CompletionDelta
		wantErr *Error // nil: the stream ends without an error
	}{
		{
			name: "streams every delta",
			h:    lines(first, hel, lo, final),
			want: []CompletionDelta{dFirst, dHel, dLo, dFinal},
		},
		{
			name: "CRLF, blank lines and a last line without LF",
			h: lines("\r\n", strings.TrimSuffix(first, "\n")+"\r\n", "\n", "  \r\n",
				hel, "\r\n\r\n", strings.TrimSuffix(lo, "\n")),
			want: []CompletionDelta{dFirst, dHel, dLo},
		},
		{
			name: "a line written in pieces",
			h:    lines(`{"delta":`, `{"content":`, `"Hel"}}`+"\n", lo),
			want: []CompletionDelta{dHel, dLo},
		},
		{
			name: "session state and unknown members",
			h: lines(`{"delta":{"role":"assistant"},"sessionState":{"n":1},` +
				`"extra":true}` + "\n"),
			want: []CompletionDelta{{Delta: MessageDelta{Role: RoleAssistant},
				SessionState: json.RawMessage(`{"n":1}`)}},
		},
		{
			name: "fails before the stream",
			h: status(429, "application/json",
				`{"error":{"code":"rate_limited","message":"slow down"}}`),
			wantErr: &Error{Status: 429, Code: "rate_limited", Message: "slow down"},
		},
		{
			name:    "fails before the stream, older error shape",
			h:       status(500, "application/json", `{"error":"boom"}`),
			wantErr: &Error{Status: 500, Code: CodeUnknown, Message: "boom"},
		},
		{
			name: "fails before the stream without a body",
			h:    status(502, "", ""),
			wantErr: &Error{Status: 502, Code: CodeHTTPError,
				Message: "the server answered 502 Bad Gateway"},
		},
		{
			name: "fails before the stream with an HTML page",
			h:    status(503, "text/html", "<html><body>Service Unavailable</body></html>"),
			wantErr: &Error{Status: 503, Code: CodeHTTPError,
				Message: "the server answered 503 Service Unavailable"},
		},
		{
			name: "fails before the stream with a JSON body that is not an error",
			h:    status(404, "application/json", `{"error":null,"detail":"no"}`),
			wantErr: &Error{Status: 404, Code: CodeHTTPError,
				Message: "the server answered 404 Not Found"},
		},
		{
			name:    "fails mid-stream",
			h:       lines(first, hel, errLine),
			want:    []CompletionDelta{dFirst, dHel},
			wantErr: &Error{Code: "upstream_error", Message: "the model failed"},
		},
		{
			name:    "fails mid-stream, older error shape",
			h:       lines(first, `{"error":"overloaded"}`+"\n"),
			want:    []CompletionDelta{dFirst},
			wantErr: &Error{Code: CodeUnknown, Message: "overloaded"},
		},
		{
			name:    "an error line ends the stream even when more lines follow",
			h:       lines(first, errLine, hel, final),
			want:    []CompletionDelta{dFirst},
			wantErr: &Error{Code: "upstream_error", Message: "the model failed"},
		},
		{
			name: "cut mid-line",
			h:    cutAfter(first, hel, `{"delta":{"cont`),
			want: []CompletionDelta{dFirst, dHel},
			wantErr: &Error{Code: CodeTruncated,
				Message: "the stream was cut off inside line 3"},
		},
		{
			name: "cut between lines",
			h:    cutAfter(first, hel),
			want: []CompletionDelta{dFirst, dHel},
			wantErr: &Error{Code: CodeTruncated,
				Message: "the stream was cut off after line 2"},
		},
		{
			name: "ends cleanly inside a line",
			h:    unframed(first + hel + `{"delta":{"cont`),
			want: []CompletionDelta{dFirst, dHel},
			wantErr: &Error{Code: CodeTruncated,
				Message: "the stream ended inside line 3"},
		},
		{
			name: "ends before its first line",
			h:    lines(),
			wantErr: &Error{Code: CodeTruncated,
				Message: "the stream ended before its first line"},
		},
		{
			name: "only blank lines",
			h:    lines("\n\r\n"),
			wantErr: &Error{Code: CodeTruncated,
				Message: "the stream ended before its first line"},
		},
		{
			name:    "a line that is not JSON",
			h:       lines(first, "data: {\"delta\":{}}\n", final),
			want:    []CompletionDelta{dFirst},
			wantErr: &Error{Code: CodeInvalidResponse, Message: "line 2: not a JSON object"},
		},
		{
			name:    "a line that is JSON but not an object",
			h:       lines(first, "\n", `[{"delta":{}}]`+"\n"),
			want:    []CompletionDelta{dFirst},
			wantErr: &Error{Code: CodeInvalidResponse, Message: "line 3: not a JSON object"},
		},
		{
			name:    "a line that is null",
			h:       lines("null\n"),
			wantErr: &Error{Code: CodeInvalidResponse, Message: "line 1: not a JSON object"},
		},
		{
			name:    "a line that is not a delta",
			h:       lines(`{"delta":"Hel"}` + "\n"),
			wantErr: &Error{Code: CodeInvalidResponse, Message: "line 1: not a delta"},
		},
		{
			name: "an error line holding a number",
			h:    lines(`{"error":500}` + "\n"),
			wantErr: &Error{Code: CodeInvalidResponse,
				Message: "the error is a number, not an object or a string"},
		},
		{
			name: "a line over the limit",
			h: lines(first, `{"delta":{"content":"`+strings.Repeat("a", maxLineBytes)+
				`"}}`+"\n"),
			want: []CompletionDelta{dFirst},
			wantErr: &Error{Code: CodeInvalidResponse,
				Message: fmt.Sprintf("line 2: longer than %d bytes", maxLineBytes)},
		},
		{
			name: "finish reason required and present",
			h:    lines(first, hel, final),
			opts: &ClientOptions{RequireFinishReason: true},
			want: []CompletionDelta{dFirst, dHel, dFinal},
		},
		{
			name: "finish reason required and missing",
			h:    lines(first, hel, lo),
			opts: &ClientOptions{RequireFinishReason: true},
			want: []CompletionDelta{dFirst, dHel, dLo},
			wantErr: &Error{Code: CodeTruncated,
				Message: "the stream ended after line 3, which has no finish_reason"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var path string
			srv := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				path = r.URL.Path
				tt.h(w, r)
			}))
			c := NewClient(srv.URL+"/chat", tt.opts)

			got, err := collect(t, c.Stream(t.Context(), hi))

			if path != "/chat/stream" {
				t.Errorf("posted to %q, want /chat/stream", path)
			}
			if diff := cmp.Diff(tt.want, got, compactRaw); diff != "" {
				t.Errorf("deltas (-want +got):\n%s", diff)
			}
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("error %v, want none", err)
				}
				return
			}
			checkProtocolError(t, err, tt.wantErr)
		})
	}
}

func TestClientSendsRequestsTheServerDecodes(t *testing.T) {
	type seen struct {
		method, path, ct, accept, auth string
		req                            *Request
	}
	got := make(chan seen, 1)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		req, err := DecodeRequest(r, nil)
		if err != nil {
			WriteError(w, err)
			return
		}
		got <- seen{r.Method, r.URL.Path, r.Header.Get("Content-Type"),
			r.Header.Get("Accept"), r.Header.Get("Authorization"), req}
		if strings.HasSuffix(r.URL.Path, "/stream") {
			lines(`{"delta":{"role":"assistant"}}`+"\n")(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(Completion{
			Message:      Message{Role: RoleAssistant, Content: "ok"},
			SessionState: req.SessionState,
		})
	})
	srv := serve(t, h)
	c := NewClient(srv.URL+"/api/chat/", &ClientOptions{
		HTTPClient: srv.Client(),
		Header:     http.Header{"Authorization": {"Bearer id-token"}},
	})

	withFiles := &Request{
		Messages: []Message{
			{Role: RoleUser, Content: "look", Context: json.RawMessage(`{"a":"<&>"}`),
				Files: []File{
					{Name: `q"uote.png`, ContentType: "image/png", Data: []byte{0, 1, 2}},
					{Data: []byte("no type")},
				}},
			{Role: RoleAssistant, Content: "seen"},
			{Role: RoleUser, Content: "and", Files: []File{{ContentType: "text/plain",
				Data: []byte("b")}}},
		},
		Context:      json.RawMessage(`{"overrides":{"temperature":0}}`),
		SessionState: json.RawMessage(`"s1"`),
	}
	wantFiles := *withFiles
	wantFiles.Messages = append([]Message(nil), withFiles.Messages...)
	wantFiles.Messages[0].Files = []File{
		{Name: `q"uote.png`, ContentType: "image/png", Data: []byte{0, 1, 2}},
		{ContentType: "application/octet-stream", Data: []byte("no type")},
	}

	tests := []struct {
		name     string
		req      *Request
		stream   bool
		wantPath string
		wantCT   string
		wantAcc  string
		want     *Request
	}{
		{"complete, json", hi, false, "/api/chat/", "application/json", "application/json", hi},
		{"stream, json", hi, true, "/api/chat/stream", "application/json",
			"application/jsonl", hi},
		{"complete, files", withFiles, false, "/api/chat/", "multipart/form-data",
			"application/json", &wantFiles},
		{"stream, files", withFiles, true, "/api/chat/stream", "multipart/form-data",
			"application/jsonl", &wantFiles},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.stream {
				if _, err := collect(t, c.Stream(t.Context(), tt.req)); err != nil {
					t.Fatal(err)
				}
			} else {
				comp, err := c.Complete(t.Context(), tt.req)
				if err != nil {
					t.Fatal(err)
				}
				if string(comp.SessionState) != string(tt.req.SessionState) {
					t.Errorf("session state %s, want %s", comp.SessionState,
						tt.req.SessionState)
				}
			}

			s := <-got
			if s.method != http.MethodPost || s.path != tt.wantPath {
				t.Errorf("%s %s, want POST %s", s.method, s.path, tt.wantPath)
			}
			if !strings.HasPrefix(s.ct, tt.wantCT) {
				t.Errorf("Content-Type %q, want %s", s.ct, tt.wantCT)
			}
			if s.accept != tt.wantAcc {
				t.Errorf("Accept %q, want %s", s.accept, tt.wantAcc)
			}
			if s.auth != "Bearer id-token" {
				t.Errorf("Authorization %q", s.auth)
			}
			if diff := cmp.Diff(tt.want, s.req, compactRaw); diff != "" {
				t.Errorf("decoded request (-want +got):\n%s", diff)
			}
		})
	}
}

func TestClientComplete(t *testing.T) {
	tests := []struct {
		name    string
		h       http.HandlerFunc
		want    *Completion
		wantErr *Error
	}{
		{
			name: "answers",
			h: status(200, "application/json", `{"message":{"role":"assistant",`+
				`"content":"Rome"},"context":{"k":[1, 2]},"sessionState":null}`),
			want: &Completion{Message: Message{Role: RoleAssistant, Content: "Rome"},
				Context: json.RawMessage(`{"k":[1, 2]}`), SessionState: json.RawMessage("null")},
		},
		{
			name: "fails",
			h: status(400, "application/json",
				`{"error":{"code":"invalid_request","message":"messages: missing"}}`),
			wantErr: &Error{Status: 400, Code: CodeInvalidRequest, Message: "messages: missing"},
		},
		{
			name:    "fails, older error shape",
			h:       status(401, "application/json", `{"error":"sign in first"}`),
			wantErr: &Error{Status: 401, Code: CodeUnknown, Message: "sign in first"},
		},
		{
			name: "fails without a body",
			h:    status(504, "", ""),
			wantErr: &Error{Status: 504, Code: CodeHTTPError,
				Message: "the server answered 504 Gateway Timeout"},
		},
		{
			name:    "an error in a 200 answer",
			h:       status(200, "application/json", `{"error":{"code":"x","message":"y"}}`),
			wantErr: &Error{Code: "x", Message: "y"},
		},
		{
			name:    "not JSON",
			h:       status(200, "text/plain", "Rome"),
			wantErr: &Error{Code: CodeInvalidResponse, Message: "the answer is not a JSON object"},
		},
		{
			name:    "not a completion",
			h:       status(200, "application/json", `{"message":"Rome"}`),
			wantErr: &Error{Code: CodeInvalidResponse, Message: "the answer is not a completion"},
		},
		{
			name: "cut",
			h: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Length", "100")
				_, _ = io.WriteString(w, `{"message":`)
			},
			wantErr: &Error{Code: CodeTruncated, Message: "the answer was cut off"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := serve(t, tt.h)
			got, err := NewClient(srv.URL, nil).Complete(t.Context(), hi)
			if tt.wantErr == nil {
				if err != nil {
					t.Fatal(err)
				}
				if diff := cmp.Diff(tt.want, got); diff != "" {
					t.Errorf("(-want +got):\n%s", diff)
				}
				return
			}
			checkProtocolError(t, err, tt.wantErr)
		})
	}
}

func TestClientStreamLeavingEarlyClosesTheResponse(t *testing.T) {
	gone := make(chan struct{})
	srv := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer close(gone)
		w.Header().Set("Content-Type", "application/jsonl")
		for i := range 500 { // bounded: 500 lines, 5 s at most
			_, _ = fmt.Fprintf(w, `{"delta":{"content":"%d "}}`+"\n", i)
			http.NewResponseController(w).Flush()
			select {
			case <-r.Context().Done():
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
		t.Error("the handler wrote every line: the client never went away")
	}))

	n := 0
	for _, err := range NewClient(srv.URL, nil).Stream(t.Context(), hi) {
		if err != nil {
			t.Fatal(err)
		}
		if n++; n == 2 {
			break
		}
	}

	select {
	case <-gone:
	case <-time.After(5 * time.Second):
		t.Fatal("the server did not see the client go away")
	}
}

func TestClientStreamStopsWhenTheContextEnds(t *testing.T) {
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	srv := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		lines(`{"delta":{"role":"assistant"}}`+"\n")(w, r)
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var errs []error
	for _, err := range NewClient(srv.URL, nil).Stream(ctx, hi) {
		if err != nil {
			errs = append(errs, err)
			continue
		}
		cancel()
	}
	if len(errs) != 1 || !errors.Is(errs[0], context.Canceled) {
		t.Errorf("errors %v, want one that is context.Canceled", errs)
	}
}

func TestClientReportsABadEndpointAndANilRequest(t *testing.T) {
	c := NewClient("http://127.0.0.1:1/\x7f", nil)
	if _, err := c.Complete(t.Context(), hi); err == nil {
		t.Error("Complete: no error for a malformed endpoint")
	}
	if _, err := collect(t, c.Stream(t.Context(), hi)); err == nil {
		t.Error("Stream: no error for a malformed endpoint")
	}
	if _, err := collect(t, NewClient("http://127.0.0.1:1", nil).Stream(t.Context(),
		nil)); err == nil {
		t.Error("Stream: no error for a nil request")
	}
}

func TestLineReaderSplitsLines(t *testing.T) {
	in := "\r\n{\"a\":1}\r\n\n  {\"b\":2}  \n\t\r\n{\"c\":3}"
	lr := &lineReader{br: bufio.NewReaderSize(strings.NewReader(in), 16), max: 64}
	var got []string
	var nums []int
	for {
		l, err := lr.next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, string(l))
		nums = append(nums, lr.n)
	}
	if diff := cmp.Diff([]string{`{"a":1}`, `{"b":2}`, `{"c":3}`}, got); diff != "" {
		t.Errorf("lines (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]int{2, 4, 6}, nums); diff != "" {
		t.Errorf("line numbers (-want +got):\n%s", diff)
	}
}

// checkProtocolError fails t unless err holds an *Error equal to want, its
// private cause aside.
func checkProtocolError(t *testing.T, err error, want *Error) {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v (%T), want an *Error", err, err)
	}
	got := *e
	got.Err = nil
	if diff := cmp.Diff(*want, got); diff != "" {
		t.Errorf("error (-want +got):\n%s", diff)
	}
}
