package stream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"net"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/openai/openai-go/v3"

	"github.com/aoaiblocks/securechat/aoaitest"
	"github.com/aoaiblocks/securechat/chatproto"
)

// apiError is an error as openai-go returns it for an HTTP error status.
func apiError(status int, code string, header ...string) *openai.Error {
	h := http.Header{}
	for i := 0; i+1 < len(header); i += 2 {
		h.Set(header[i], header[i+1])
	}
	return &openai.Error{
		StatusCode: status,
		Code:       code,
		Message:    "upstream says: secret internals",
		Response:   &http.Response{StatusCode: status, Header: h},
	}
}

func TestModelErrorsAreMapped(t *testing.T) {
	aoaitest.Guard(t)
	tests := []struct {
		name       string
		err        error
		status     int
		code       string
		retryAfter string
		message    string // "" means the code's generic message
	}{
		{"prompt filtered", apiError(400, "content_filter"), 400, CodeContentFilter, "", ""},
		{"other 400", apiError(400, "context_length_exceeded"), 502, CodeUpstreamError, "", ""},
		{"401", apiError(401, "401"), 502, CodeUpstreamAuth, "", ""},
		{"403", apiError(403, "PermissionDenied"), 502, CodeUpstreamAuth, "", ""},
		{"429 retry-after-ms", apiError(429, "429", "retry-after-ms", "1500",
			"Retry-After", "2"), 429, CodeRateLimited, "2", ""},
		{"429 Retry-After", apiError(429, "429", "Retry-After", "7"), 429, CodeRateLimited,
			"7", ""},
		{"429 no header", apiError(429, "429"), 429, CodeRateLimited, "", ""},
		{"500", apiError(500, "InternalServerError"), 502, CodeUpstreamError, "", ""},
		{"503", apiError(503, "ServiceUnavailable", "Retry-After", "3"), 502,
			CodeUpstreamError, "", ""},
		{"408", apiError(408, "Timeout"), 504, CodeUpstreamTimeout, "", ""},
		{"504", apiError(504, "GatewayTimeout"), 504, CodeUpstreamTimeout, "", ""},
		{"deadline", fmt.Errorf("reading: %w", context.DeadlineExceeded), 504,
			CodeUpstreamTimeout, "", ""},
		{"stream Error", &Error{Code: CodeCredentialUnavailable, Err: errors.New("x")}, 503,
			CodeCredentialUnavailable, "", ""},
		{"stream Error with status", &Error{Code: CodeRateLimited, Status: 503,
			RetryAfter: 2500 * time.Millisecond}, 503, CodeRateLimited, "", ""},
		{"stream Error 429 with RetryAfter", &Error{Code: CodeRateLimited,
			RetryAfter: 2500 * time.Millisecond}, 429, CodeRateLimited, "3", ""},
		{"chatproto Error", &chatproto.Error{Status: 422, Code: "no_answer",
			Message: "nothing to say"}, 422, "no_answer", "", "nothing to say"},
		{"anything else", errors.New("dial tcp: secret internals"), 502,
			CodeUpstreamError, "", ""},
	}
	for _, tt := range tests {
		message := tt.message
		if message == "" {
			message = clientMessages[tt.code]
		}
		t.Run(tt.name+" before the first byte", func(t *testing.T) {
			for _, path := range []string{"/chat", "/chat/stream"} {
				m := &fakeModel{deltas: []Delta{}, err: tt.err}
				log, logs := newLogger()
				srv := testServer(t, NewHandler(m, &Options{Logger: log}))

				resp, body := post(t, srv.URL+path, hello)

				e := errorOf(t, body)
				got := fmt.Sprintf("%d %s %q Retry-After=%q", resp.StatusCode, e.Code,
					e.Message, resp.Header.Get("Retry-After"))
				want := fmt.Sprintf("%d %s %q Retry-After=%q", tt.status, tt.code, message,
					tt.retryAfter)
				if got != want {
					t.Errorf("%s: got %s, want %s", path, got, want)
				}
				if strings.Contains(body, "secret") {
					t.Errorf("%s: the body shows upstream internals: %s", path, body)
				}
				if tt.err.Error() != "" && !strings.Contains(logs.String(), "error") {
					t.Errorf("%s: the log has no cause: %s", path, logs)
				}
			}
		})
		t.Run(tt.name+" after the first byte", func(t *testing.T) {
			m := &fakeModel{deltas: []Delta{{Content: "par"}}, err: tt.err}
			log, _ := newLogger()
			srv := testServer(t, NewHandler(m, &Options{Logger: log}))

			resp, body := post(t, srv.URL+"/chat/stream", hello)

			want := `{"delta":{"role":"assistant"}}` + "\n" +
				`{"delta":{"content":"par"}}` + "\n" +
				fmt.Sprintf(`{"error":{"code":%q,"message":%q}}`, tt.code, message) + "\n"
			if diff := cmp.Diff(want, body); diff != "" {
				t.Errorf("body (-want +got):\n%s", diff)
			}
			if resp.StatusCode != 200 {
				t.Errorf("status %d, want 200", resp.StatusCode)
			}
		})
	}
}

func TestAnswerFilteredBecomesContentFilterError(t *testing.T) {
	aoaitest.Guard(t)
	filtered := Delta{FinishReason: "content_filter", Usage: &Usage{TotalTokens: 5}}
	tests := []struct {
		name   string
		path   string
		deltas []Delta
		status int
		want   string
	}{
		{"complete", "/chat", []Delta{{Content: "bad"}, filtered}, 400,
			`{"error":{"code":"content_filter","message":"` +
				clientMessages[CodeContentFilter] + `"}}` + "\n"},
		{"stream before any content", "/chat/stream", []Delta{filtered}, 400,
			`{"error":{"code":"content_filter","message":"` +
				clientMessages[CodeContentFilter] + `"}}` + "\n"},
		{"stream after content", "/chat/stream",
			[]Delta{{Content: "fine "}, {Content: "bad", FinishReason: "content_filter"}}, 200,
			`{"delta":{"role":"assistant"}}` + "\n" +
				`{"delta":{"content":"fine "}}` + "\n" +
				`{"error":{"code":"content_filter","message":"` +
				clientMessages[CodeContentFilter] + `"}}` + "\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			log, _ := newLogger()
			srv := testServer(t, NewHandler(&fakeModel{deltas: tt.deltas},
				&Options{Logger: log}))

			resp, body := post(t, srv.URL+tt.path, hello)

			if resp.StatusCode != tt.status {
				t.Errorf("status %d, want %d", resp.StatusCode, tt.status)
			}
			if diff := cmp.Diff(tt.want, body); diff != "" {
				t.Errorf("body (-want +got):\n%s", diff)
			}
		})
	}
}

func TestModelEndingWithoutFinishIsUpstreamError(t *testing.T) {
	aoaitest.Guard(t)
	log, _ := newLogger()
	m := &fakeModel{deltas: []Delta{{Content: "cut"}}}
	srv := testServer(t, NewHandler(m, &Options{Logger: log}))

	_, body := post(t, srv.URL+"/chat/stream", hello)

	lines := strings.Split(strings.TrimSpace(body), "\n")
	if e := errorOf(t, lines[len(lines)-1]); e.Code != CodeUpstreamError {
		t.Errorf("last line %s, want an upstream_error line", lines[len(lines)-1])
	}
}

func TestTimeoutsEndTheRequestWithUpstreamTimeout(t *testing.T) {
	aoaitest.Guard(t)
	tests := []struct {
		name   string
		opts   Options
		model  *fakeModel
		status int
		last   string
	}{
		{"overall, before the first delta",
			Options{Timeout: 50 * time.Millisecond, IdleTimeout: -1},
			&fakeModel{block: true}, 504, ""},
		{"idle, before the first delta",
			Options{IdleTimeout: 50 * time.Millisecond},
			&fakeModel{block: true}, 504, ""},
		{"idle, between deltas",
			Options{IdleTimeout: 50 * time.Millisecond},
			&fakeModel{block: true, blockAfter: 1, deltas: []Delta{{Content: "a"},
				{FinishReason: "stop"}}},
			200, `{"error":{"code":"upstream_timeout","message":"` +
				clientMessages[CodeUpstreamTimeout] + `"}}`},
		{"overall, while streaming",
			Options{Timeout: 80 * time.Millisecond},
			&fakeModel{gap: 30 * time.Millisecond, deltas: []Delta{{Content: "a"},
				{Content: "b"}, {Content: "c"}, {Content: "d"}, {Content: "e"},
				{FinishReason: "stop"}}},
			200, `{"error":{"code":"upstream_timeout","message":"` +
				clientMessages[CodeUpstreamTimeout] + `"}}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			log, logs := newLogger()
			tt.opts.Logger = log
			srv := testServer(t, NewHandler(tt.model, &tt.opts))

			start := time.Now()
			resp, body := post(t, srv.URL+"/chat/stream", hello)

			if time.Since(start) > 5*time.Second {
				t.Errorf("took %v", time.Since(start))
			}
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tt.status, body)
			}
			lines := strings.Split(strings.TrimSpace(body), "\n")
			last := lines[len(lines)-1]
			if tt.last != "" && last != tt.last {
				t.Errorf("last line %s, want %s", last, tt.last)
			}
			if tt.last == "" && errorOf(t, body).Code != CodeUpstreamTimeout {
				t.Errorf("body %s, want upstream_timeout", body)
			}
			if !strings.Contains(logs.String(), "timeout") {
				t.Errorf("the log does not say which timeout: %s", logs)
			}
		})
	}
}

func TestClientLeavingCancelsTheModel(t *testing.T) {
	aoaitest.Guard(t)
	log, logs := newLogger()
	deltas := make([]Delta, 1000)
	for i := range deltas {
		deltas[i] = Delta{Content: "x"}
	}
	m := &fakeModel{deltas: deltas, gap: 10 * time.Millisecond}
	done := make(chan *Outcome, 1)
	srv := testServer(t, NewHandler(m, &Options{Logger: log,
		OnDone: func(o *Outcome) { done <- o }}))

	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL+"/chat/stream",
		strings.NewReader(hello))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	if _, err := io.ReadAtLeast(resp.Body, buf, 40); err != nil {
		t.Fatal(err)
	}
	left := time.Now()
	cancel()
	resp.Body.Close()

	var o *Outcome
	select {
	case o = <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the handler did not return within 5s of the client leaving")
	}
	if d := time.Since(left); d > time.Second {
		t.Errorf("the handler returned %v after the client left", d)
	}
	m.mu.Lock()
	ctxErrs := append([]error(nil), m.ctxErrs...)
	m.mu.Unlock()
	if len(ctxErrs) != 1 || !errors.Is(ctxErrs[0], context.Canceled) {
		t.Errorf("the model's context ended with %v, want [context canceled]", ctxErrs)
	}
	if o.Status != 499 || o.Code != "client_closed" {
		t.Errorf("outcome %d %q, want 499 client_closed", o.Status, o.Code)
	}
	if !strings.Contains(logs.String(), `"status":499`) {
		t.Errorf("log %s, want status 499", logs)
	}
}

// newIDPattern is the form of the ids the Handler makes, the form the
// package documentation gives, and the example app's.
var newIDPattern = regexp.MustCompile(`^[0-9a-f]{32}$`)

func TestRequestIDIsTakenOrMadeAs32HexDigitsAndReturned(t *testing.T) {
	aoaitest.Guard(t)
	tests := []struct {
		name string
		in   string
		keep bool
	}{
		{"none", "", false},
		{"plain", "req-42.a_b:c", true},
		{"uuid", "0f8fad5b-d9cb-469f-a165-70867728950e", true},
		{"spaces", "bad id", false},
		{"markup", "id<script>", false},
		{"too long", strings.Repeat("a", 129), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := &fakeModel{}
			log, logs := newLogger()
			srv := testServer(t, NewHandler(m, &Options{Logger: log}))

			var hdr []string
			if tt.in != "" {
				hdr = []string{"X-Request-Id", tt.in}
			}
			resp, _ := post(t, srv.URL+"/chat", hello, hdr...)

			got := resp.Header.Get("X-Request-Id")
			if tt.keep && got != tt.in {
				t.Errorf("X-Request-Id %q, want %q", got, tt.in)
			}
			if !tt.keep && !newIDPattern.MatchString(got) {
				t.Errorf("X-Request-Id %q, want a new id of 32 hex digits", got)
			}
			if m.ids[0] != got {
				t.Errorf("RequestID in the model %q, want %q", m.ids[0], got)
			}
			if l := logs.lines(t); len(l) != 1 || l[0]["request_id"] != got {
				t.Errorf("log %v, want one line with request_id %q", l, got)
			}
		})
	}
}

func TestLogLineHasTheFieldsButNoTextOrToken(t *testing.T) {
	aoaitest.Guard(t)
	m := &fakeModel{deltas: []Delta{{Content: "the secret answer"},
		{FinishReason: "stop", Usage: &Usage{PromptTokens: 7, CompletionTokens: 3,
			TotalTokens: 10}}}}
	log, logs := newLogger()
	srv := testServer(t, NewHandler(m, &Options{Logger: log, MaxHistory: 1}))
	body := `{"messages":[{"role":"user","content":"my secret question"},` +
		`{"role":"assistant","content":"an old answer"},` +
		`{"role":"user","content":"my secret follow-up"}]}`

	post(t, srv.URL+"/chat/stream", body, "X-Request-Id", "r-1",
		"Authorization", "Bearer secret-token")

	lines := logs.lines(t)
	if len(lines) != 1 {
		t.Fatalf("got %d log lines, want 1:\n%s", len(lines), logs)
	}
	got := lines[0]
	delete(got, "time")
	if d, ok := got["duration"].(float64); !ok || d <= 0 {
		t.Errorf("duration %v, want > 0", got["duration"])
	}
	delete(got, "duration")
	want := map[string]any{
		"level": "INFO", "msg": "chat request", "request_id": "r-1", "route": "stream",
		"method": "POST", "status": 200.0, "messages": 2.0, "dropped_messages": 2.0,
		"finish_reason": "stop", "prompt_tokens": 7.0, "completion_tokens": 3.0,
		"total_tokens": 10.0,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("log line (-want +got):\n%s", diff)
	}
	if s := logs.String(); strings.Contains(s, "secret") {
		t.Errorf("the log holds user text or a token: %s", s)
	}
}

func TestLogLevelFollowsTheOutcome(t *testing.T) {
	aoaitest.Guard(t)
	tests := []struct {
		name  string
		err   error
		level string
	}{
		{"success", nil, "INFO"},
		{"client error", apiError(400, "content_filter"), "WARN"},
		{"upstream error", apiError(500, "x"), "ERROR"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := &fakeModel{}
			if tt.err != nil {
				m = &fakeModel{deltas: []Delta{}, err: tt.err}
			}
			log, logs := newLogger()
			srv := testServer(t, NewHandler(m, &Options{Logger: log}))

			post(t, srv.URL+"/chat", hello)

			if l := logs.lines(t); len(l) != 1 || l[0]["level"] != tt.level {
				t.Errorf("log %v, want one line at %s", l, tt.level)
			}
		})
	}
}

func TestOnDoneReportsTheOutcome(t *testing.T) {
	aoaitest.Guard(t)
	var got []Outcome
	log, _ := newLogger()
	u := &Usage{PromptTokens: 1, CompletionTokens: 1, TotalTokens: 2}
	m := &fakeModel{deltas: []Delta{{Content: "a"}, {FinishReason: "stop", Usage: u}}}
	h := NewHandler(m, &Options{Logger: log, OnDone: func(o *Outcome) {
		got = append(got, *o)
	}})
	srv := testServer(t, h)

	post(t, srv.URL+"/chat/stream", hello, "X-Request-Id", "one")
	post(t, srv.URL+"/chat", `{"messages":[]}`, "X-Request-Id", "two")

	want := []Outcome{
		{RequestID: "one", Stream: true, Status: 200, FinishReason: "stop", Usage: u},
		{RequestID: "two", Status: 400, Code: chatproto.CodeInvalidRequest},
	}
	opts := cmp.Options{
		cmp.FilterPath(func(p cmp.Path) bool {
			s := p.String()
			return s == "Duration" || s == "Err"
		}, cmp.Ignore()),
	}
	if diff := cmp.Diff(want, got, opts); diff != "" {
		t.Errorf("outcomes (-want +got):\n%s", diff)
	}
	if len(got) == 2 && got[1].Err == nil {
		t.Error("the failed request's outcome has no Err")
	}
}

func TestRetryAfterParsing(t *testing.T) {
	date := time.Now().Add(90 * time.Second).UTC().Format(http.TimeFormat)
	tests := []struct {
		header []string
		min    time.Duration
		max    time.Duration
	}{
		{[]string{"retry-after-ms", "250"}, 250 * time.Millisecond, 250 * time.Millisecond},
		{[]string{"retry-after-ms", "x", "Retry-After", "4"}, 4 * time.Second, 4 * time.Second},
		{[]string{"Retry-After", date}, 80 * time.Second, 91 * time.Second},
		{[]string{"Retry-After", "-3"}, 0, 0},
		{[]string{"Retry-After", "soon"}, 0, 0},
		{nil, 0, 0},
	}
	for _, tt := range tests {
		h := http.Header{}
		for i := 0; i+1 < len(tt.header); i += 2 {
			h.Set(tt.header[i], tt.header[i+1])
		}
		if got := retryAfter(h); got < tt.min || got > tt.max {
			t.Errorf("retryAfter(%v) = %v, want %v to %v", tt.header, got, tt.min, tt.max)
		}
	}
}

func TestPanickingModelGetsInternalErrorAndALogLine(t *testing.T) {
	aoaitest.Guard(t)
	tests := []struct {
		name   string
		path   string
		deltas int // before the panic
		status int
		body   string
	}{
		{"complete", "/chat", 1, 500,
			`{"error":{"code":"internal_error","message":"internal server error"}}` + "\n"},
		{"stream before the first byte", "/chat/stream", 0, 500,
			`{"error":{"code":"internal_error","message":"internal server error"}}` + "\n"},
		{"stream after the first byte", "/chat/stream", 1, 200,
			`{"delta":{"role":"assistant"}}` + "\n" + `{"delta":{"content":"a"}}` + "\n" +
				`{"error":{"code":"internal_error","message":"internal server error"}}` + "\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			model := ModelFunc(func(context.Context, *Request) iter.Seq2[Delta, error] {
				return func(yield func(Delta, error) bool) {
					for range tt.deltas {
						yield(Delta{Content: "a"}, nil)
					}
					panic("model bug")
				}
			})
			log, logs := newLogger()
			srv := testServer(t, NewHandler(model, &Options{Logger: log}))

			resp, body := post(t, srv.URL+tt.path, hello)

			if resp.StatusCode != tt.status {
				t.Errorf("status %d, want %d", resp.StatusCode, tt.status)
			}
			if diff := cmp.Diff(tt.body, body); diff != "" {
				t.Errorf("body (-want +got):\n%s", diff)
			}
			l := logs.lines(t)
			if len(l) != 1 || l[0]["level"] != "ERROR" ||
				!strings.Contains(fmt.Sprint(l[0]["error"]), "model bug") ||
				!strings.Contains(fmt.Sprint(l[0]["stack"]), "stream.") {
				t.Errorf("log %v, want one ERROR line with the panic and its stack", l)
			}
		})
	}
}

func TestClientThatStopsReadingIsDroppedAfterWriteTimeout(t *testing.T) {
	aoaitest.Guard(t)
	big := strings.Repeat("x", 64<<10)
	model := ModelFunc(func(ctx context.Context, _ *Request) iter.Seq2[Delta, error] {
		return func(yield func(Delta, error) bool) {
			for range 2000 { // 128 MiB: far more than socket buffers hold
				if ctx.Err() != nil || !yield(Delta{Content: big}, nil) {
					return
				}
			}
			yield(Delta{FinishReason: "stop"}, nil)
		}
	})
	done := make(chan *Outcome, 1)
	log, _ := newLogger()
	srv := testServer(t, NewHandler(model, &Options{Logger: log,
		WriteTimeout: 200 * time.Millisecond, OnDone: func(o *Outcome) { done <- o }}))

	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST /chat/stream HTTP/1.1\r\nHost: x\r\n"+
		"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(hello), hello)
	// ... and never read.

	select {
	case o := <-done:
		if o.Status != 499 || o.Code != "client_closed" {
			t.Errorf("outcome %d %q, want 499 client_closed", o.Status, o.Code)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the handler still writes to a client that reads nothing, 10s on")
	}
}

func TestNewHandlerPanicsWithoutModel(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("NewHandler(nil, nil) did not panic")
		}
	}()
	NewHandler(nil, nil)
}
