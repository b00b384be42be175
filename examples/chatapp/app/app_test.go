package app

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/aoaiblocks/securechat/aoaitest"
	"github.com/aoaiblocks/securechat/chatproto"
	"github.com/aoaiblocks/securechat/internal/testlog"
	"github.com/aoaiblocks/securechat/keyless"
	"github.com/aoaiblocks/securechat/stream"
)

// syncBuffer collects the app's log lines.
type syncBuffer = testlog.Buffer

func newRequest(method, target string) *http.Request {
	return httptest.NewRequest(method, target, nil)
}

var testWeb = fstest.MapFS{
	"index.html":        {Data: []byte("<!doctype html><title>t</title>")},
	"app.js":            {Data: []byte("export {}")},
	"vendor/purify.mjs": {Data: []byte("export {}")},
}

// wordsModel answers every request with the given words and usage.
func wordsModel(words ...string) stream.Model {
	return stream.ModelFunc(func(ctx context.Context, req *stream.Request) iter.Seq2[
		stream.Delta, error] {
		return func(yield func(stream.Delta, error) bool) {
			for _, w := range words {
				if !yield(stream.Delta{Content: w}, nil) {
					return
				}
			}
			yield(stream.Delta{FinishReason: "stop", Usage: &stream.Usage{
				PromptTokens: 7, CompletionTokens: int64(len(words)),
				TotalTokens: 7 + int64(len(words)),
			}}, nil)
		}
	})
}

// newTestApp returns the app with a scripted model, serving testWeb, and the
// buffer its JSON log goes to.
func newTestApp(t *testing.T, opts Options) (*App, *syncBuffer) {
	t.Helper()
	var logs syncBuffer
	if opts.Model == nil && opts.Config.Endpoint == "" {
		opts.Model = wordsModel("Hello", " there")
	}
	if opts.Web == nil {
		opts.Web = testWeb
	}
	opts.Logger = NewLogger(&logs, true, slog.LevelInfo)
	a, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return a, &logs
}

func chatBody(text string) io.Reader {
	b, _ := json.Marshal(chatproto.Request{Messages: []chatproto.Message{
		{Role: chatproto.RoleUser, Content: text},
	}})
	return bytes.NewReader(b)
}

func serve(h http.Handler, r *http.Request) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

func TestSecurityHeadersOnEveryResponse(t *testing.T) {
	a, _ := newTestApp(t, Options{})
	post := func(target, ctype string, body io.Reader) *http.Request {
		r := httptest.NewRequest("POST", target, body)
		r.Header.Set("Content-Type", ctype)
		return r
	}
	requests := map[string]*http.Request{
		"page":           newRequest("GET", "/"),
		"script":         newRequest("GET", "/app.js"),
		"vendored":       newRequest("GET", "/vendor/purify.mjs"),
		"config":         newRequest("GET", "/config.json"),
		"healthz":        newRequest("GET", "/healthz"),
		"readyz":         newRequest("GET", "/readyz"),
		"not found":      newRequest("GET", "/nope"),
		"directory":      newRequest("GET", "/vendor/"),
		"redirect":       newRequest("GET", "/index.html"),
		"wrong method":   newRequest("GET", "/chat"),
		"chat":           post("/chat", "application/json", chatBody("hi")),
		"stream":         post("/chat/stream", "application/json", chatBody("hi")),
		"bad JSON":       post("/chat", "application/json", strings.NewReader("{")),
		"bad media type": post("/chat", "text/plain", strings.NewReader("hi")),
	}
	want := map[string]string{
		"Content-Security-Policy": ContentSecurityPolicy,
		"X-Content-Type-Options":  "nosniff",
		"Referrer-Policy":         "no-referrer",
	}
	for name, r := range requests {
		t.Run(name, func(t *testing.T) {
			w := serve(a, r)
			got := map[string]string{}
			for k := range want {
				got[k] = w.Header().Get(k)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("%s %s: status %d, headers (-want +got):\n%s",
					r.Method, r.URL, w.Code, diff)
			}
			if w.Header().Get(requestIDHeader) == "" {
				t.Errorf("%s %s: no %s", r.Method, r.URL, requestIDHeader)
			}
		})
	}
}

func TestRoutesAnswerWithTheirStatus(t *testing.T) {
	a, _ := newTestApp(t, Options{})
	tests := []struct {
		method, target string
		want           int
		wantType       string
	}{
		{"GET", "/", 200, "text/html; charset=utf-8"},
		{"GET", "/app.js", 200, "text/javascript; charset=utf-8"},
		{"GET", "/config.json", 200, "application/json"},
		{"GET", "/healthz", 200, "application/json"},
		{"GET", "/readyz", 200, "application/json"},
		{"GET", "/nope", 404, ""},
		{"GET", "/vendor/", 404, ""},
		{"POST", "/", 405, ""},
	}
	for _, tt := range tests {
		w := serve(a, newRequest(tt.method, tt.target))
		if w.Code != tt.want {
			t.Errorf("%s %s: status %d, want %d", tt.method, tt.target, w.Code, tt.want)
		}
		if got := w.Header().Get("Content-Type"); tt.wantType != "" && got != tt.wantType {
			t.Errorf("%s %s: Content-Type %q, want %q", tt.method, tt.target, got, tt.wantType)
		}
	}
}

func TestConfigTellsThePageAboutDemoMode(t *testing.T) {
	for _, demo := range []bool{false, true} {
		a, _ := newTestApp(t, Options{Demo: demo})
		w := serve(a, newRequest("GET", "/config.json"))
		var got pageConfig
		if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil {
			t.Fatalf("config.json: %v: %s", err, w.Body)
		}
		if diff := cmp.Diff(pageConfig{Demo: demo}, got); diff != "" {
			t.Errorf("config.json (-want +got):\n%s", diff)
		}
		if cc := w.Header().Get("Cache-Control"); cc != "no-store" {
			t.Errorf("config.json Cache-Control = %q, want no-store", cc)
		}
	}
}

func TestRequireSignInRejectsRequestsWithoutPrincipal(t *testing.T) {
	a, _ := newTestApp(t, Options{RequireSignIn: true})
	signedIn := principal(`{"auth_typ":"aad","claims":[{"typ":"name","val":"Ada"}]}`)

	tests := []struct {
		method, target, principal string
		want                      int
	}{
		{"GET", "/", "", 401},
		{"GET", "/config.json", "", 401},
		{"POST", "/chat", "", 401},
		{"POST", "/chat/stream", "", 401},
		{"GET", "/", "not a principal", 401},
		{"GET", "/healthz", "", 200},
		{"GET", "/readyz", "", 200},
		{"GET", "/", signedIn, 200},
		{"GET", "/config.json", signedIn, 200},
	}
	for _, tt := range tests {
		r := newRequest(tt.method, tt.target)
		if tt.principal != "" {
			r.Header.Set(principalHeader, tt.principal)
		}
		w := serve(a, r)
		if w.Code != tt.want {
			t.Errorf("%s %s (principal %q): status %d, want %d",
				tt.method, tt.target, tt.principal, w.Code, tt.want)
		}
		if w.Code != 401 {
			continue
		}
		var body chatproto.ErrorResponse
		if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil || body.Error == nil {
			t.Fatalf("401 body %q is not a protocol error: %v", w.Body, err)
		}
		if body.Error.Code != "unauthenticated" {
			t.Errorf("401 code = %q, want unauthenticated", body.Error.Code)
		}
		if ct := w.Header().Get("Content-Type"); ct != "application/json" {
			t.Errorf("401 Content-Type = %q, want application/json", ct)
		}
	}

	r := newRequest("GET", "/config.json")
	r.Header.Set(principalHeader, signedIn)
	var got pageConfig
	_ = json.Unmarshal(serve(a, r).Body.Bytes(), &got)
	if diff := cmp.Diff(pageConfig{User: "Ada"}, got); diff != "" {
		t.Errorf("config.json of a signed-in user (-want +got):\n%s", diff)
	}
}

// logLines parses the JSON log lines and returns those whose msg is msg.
func logLines(t *testing.T, logs, msg string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for line := range strings.Lines(logs) {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line %q is not JSON: %v", line, err)
		}
		if m["msg"] == msg {
			out = append(out, m)
		}
	}
	return out
}

func TestOneLogLinePerRequestWithItsID(t *testing.T) {
	a, logs := newTestApp(t, Options{})
	tests := []struct {
		method, target string
		want           map[string]any
	}{
		{"GET", "/config.json", map[string]any{
			"msg": "request", "route": "GET /config.json", "method": "GET",
			"status": float64(200),
		}},
		{"GET", "/wp-admin/<script>", map[string]any{
			"msg": "request", "route": "/", "method": "GET", "status": float64(404),
		}},
		{"DELETE", "/", map[string]any{
			"msg": "request", "route": "/", "method": "DELETE", "status": float64(405),
		}},
		{"GET", "/readyz?probe=1", map[string]any{
			"msg": "request", "route": "GET /readyz", "method": "GET", "status": float64(200),
		}},
	}
	for i, tt := range tests {
		id := fmt.Sprintf("req-%d", i)
		r := newRequest(tt.method, tt.target)
		r.Header.Set(requestIDHeader, id)
		serve(a, r)
		tt.want["request_id"] = id
	}

	var got []map[string]any
	for line := range strings.Lines(logs.String()) {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line %q is not JSON: %v", line, err)
		}
		for _, k := range []string{"time", "level", "duration", "bytes"} {
			delete(m, k)
		}
		got = append(got, m)
	}
	var want []map[string]any
	for _, tt := range tests {
		if tt.want["route"] != "GET /readyz" { // successful probes log at debug level
			want = append(want, tt.want)
		}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("log lines (-want +got):\n%s", diff)
	}
	for _, leak := range []string{"wp-admin", "probe=1"} {
		if strings.Contains(logs.String(), leak) {
			t.Errorf("the log holds %q:\n%s", leak, logs)
		}
	}
}

func TestChatRequestsLogOneLineWithUsageButNoUserText(t *testing.T) {
	a, logs := newTestApp(t, Options{})
	secret := "my secret question about payroll"
	r := httptest.NewRequest("POST", "/chat/stream", chatBody(secret))
	r.Header.Set("Content-Type", "application/json")
	r.Header.Set(requestIDHeader, "req-42")
	r.Header.Set("Authorization", "Bearer not-a-real-token")
	w := serve(a, r)
	if w.Code != 200 {
		t.Fatalf("status %d: %s", w.Code, w.Body)
	}

	lines := logLines(t, logs.String(), "chat request")
	if n := strings.Count(logs.String(), "\n"); len(lines) != 1 || n != 1 {
		t.Fatalf("got %d log lines, %d of the chat handler; want just its one:\n%s",
			n, len(lines), logs)
	}
	got := lines[0]
	want := map[string]any{
		"request_id":        "req-42",
		"status":            float64(200),
		"prompt_tokens":     float64(7),
		"completion_tokens": float64(2),
		"total_tokens":      float64(9),
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("chat log line %s = %v, want %v", k, got[k], v)
		}
	}
	for _, leak := range []string{"payroll", "not-a-real-token", "Bearer"} {
		if strings.Contains(logs.String(), leak) {
			t.Errorf("the log holds %q:\n%s", leak, logs)
		}
	}
	if id := w.Header().Get(requestIDHeader); id != "req-42" {
		t.Errorf("response %s = %q, want req-42", requestIDHeader, id)
	}
}

func TestStreamFlushesEachLineThroughTheMiddleware(t *testing.T) {
	release := make(chan struct{})
	model := stream.ModelFunc(func(ctx context.Context, req *stream.Request) iter.Seq2[
		stream.Delta, error] {
		return func(yield func(stream.Delta, error) bool) {
			if !yield(stream.Delta{Content: "first"}, nil) {
				return
			}
			select {
			case <-release:
			case <-ctx.Done():
				yield(stream.Delta{}, ctx.Err())
				return
			}
			yield(stream.Delta{Content: " second", FinishReason: "stop"}, nil)
		}
	})
	a, _ := newTestApp(t, Options{Model: model})
	srv := httptest.NewServer(a)
	defer srv.Close()
	defer close(release)

	client := chatproto.NewClient(srv.URL+"/chat", &chatproto.ClientOptions{
		HTTPClient: srv.Client(),
	})
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	for d, err := range client.Stream(ctx, &chatproto.Request{Messages: []chatproto.Message{
		{Role: chatproto.RoleUser, Content: "hi"},
	}}) {
		if err != nil {
			t.Fatalf("stream: %v", err)
		}
		if d.Delta.Content == "first" {
			return // arrived while the model still holds the rest back
		}
	}
	t.Fatal("the stream ended without the first delta")
}

// startDemo starts the demo's stand-ins behind the loopback guard, with the
// managed identity variables in the test's environment.
func startDemo(t *testing.T) *Demo {
	t.Helper()
	aoaitest.Guard(t)
	demo, err := StartDemo(time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(demo.Close)
	demo.Identity.Setenv(t)
	return demo
}

func TestReadyzGetsATokenOnceAndThenUsesTheCache(t *testing.T) {
	demo := startDemo(t)
	a, _ := newTestApp(t, demo.Options(Options{}))

	for i := range 5 {
		w := serve(a, newRequest("GET", "/readyz"))
		if w.Code != 200 {
			t.Fatalf("probe %d: status %d: %s", i, w.Code, w.Body)
		}
	}
	if n := demo.Identity.Calls(); n != 1 {
		t.Errorf("5 readiness probes made %d token requests, want 1", n)
	}
}

func TestReadyzIsUnavailableWhileTheCredentialFails(t *testing.T) {
	demo := startDemo(t)
	a, logs := newTestApp(t, demo.Options(Options{}))

	demo.Identity.FailNext(100, http.StatusBadRequest) // 5xx would be retried for seconds
	w := serve(a, newRequest("GET", "/readyz"))
	if w.Code != http.StatusServiceUnavailable {
		t.Fatalf("status %d, want 503: %s", w.Code, w.Body)
	}
	var body chatproto.ErrorResponse
	if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil || body.Error == nil ||
		body.Error.Code != "not_ready" {
		t.Errorf("body %s, want the not_ready protocol error", w.Body)
	}
	if !strings.Contains(logs.String(), "not ready") {
		t.Errorf("the log does not say why:\n%s", logs)
	}
}

func TestDemoAnswersThroughTheKeylessChain(t *testing.T) {
	demo := startDemo(t)
	a, logs := newTestApp(t, demo.Options(Options{}))
	srv := httptest.NewServer(a)
	defer srv.Close()

	client := chatproto.NewClient(srv.URL+"/chat", &chatproto.ClientOptions{
		HTTPClient: srv.Client(),
	})
	req := &chatproto.Request{Messages: []chatproto.Message{
		{Role: chatproto.RoleUser, Content: "Why is managed identity better than keys?"},
	}}
	var streamed strings.Builder
	for d, err := range client.Stream(t.Context(), req) {
		if err != nil {
			t.Fatalf("stream: %v", err)
		}
		streamed.WriteString(d.Delta.Content)
	}
	for _, want := range []string{
		"> Why is managed identity better than keys?",
		"simulated", "managed identity endpoint", "JSON Lines", "1 user turn",
	} {
		if !strings.Contains(streamed.String(), want) {
			t.Errorf("the demo answer lacks %q:\n%s", want, streamed.String())
		}
	}

	complete, err := client.Complete(t.Context(), req)
	if err != nil {
		t.Fatalf("complete: %v", err)
	}
	if diff := cmp.Diff(streamed.String(), complete.Message.Content); diff != "" {
		t.Errorf("complete answer differs from the streamed one (-stream +complete):\n%s",
			diff)
	}

	reqs := demo.AzureOpenAI.Requests()
	if len(reqs) != 2 {
		t.Fatalf("Azure OpenAI stand-in saw %d requests, want 2", len(reqs))
	}
	for _, r := range reqs {
		if r.Principal != demo.Identity.PrincipalID {
			t.Errorf("request authorized as %q, want the user-assigned identity %q",
				r.Principal, demo.Identity.PrincipalID)
		}
		if r.Header.Get("Api-Key") != "" {
			t.Error("a request carried an api-key header")
		}
	}
	if n := demo.Identity.Calls(); n != 1 {
		t.Errorf("two answers made %d token requests, want 1", n)
	}
	if !strings.Contains(logs.String(), `"total_tokens"`) {
		t.Errorf("no token usage in the log:\n%s", logs)
	}
}

func TestCheckCredentialLogsWhetherATokenCame(t *testing.T) {
	demo := startDemo(t)
	a, logs := newTestApp(t, demo.Options(Options{}))
	a.CheckCredential(t.Context())
	if !strings.Contains(logs.String(), "the credential got a token") {
		t.Errorf("no success line:\n%s", logs)
	}

	demo = startDemo(t)
	demo.Identity.FailNext(100, http.StatusBadRequest)
	a, logs = newTestApp(t, demo.Options(Options{}))
	a.CheckCredential(t.Context())
	lines := logLines(t, logs.String(),
		"the credential could not get a token yet; chat requests will fail until it can")
	if len(lines) != 1 || lines[0]["level"] != "WARN" {
		t.Errorf("want one warning:\n%s", logs)
	}
}

func TestDemoNeverRunsTheDevelopersAzd(t *testing.T) {
	demo := startDemo(t)
	azd := aoaitest.NewAzd(t) // a signed-in azd on PATH
	demo.Identity.FailNext(100, http.StatusBadRequest)
	a, _ := newTestApp(t, demo.Options(Options{}))

	if err := a.Ready(t.Context()); err == nil {
		t.Error("ready although the managed identity fails")
	}
	if n := azd.Calls(); n != 0 {
		t.Errorf("the demo ran azd %d times, want 0", n)
	}
}

func TestReadinessAndAnswersShareOneTokenFromAzd(t *testing.T) {
	aoaitest.Guard(t)
	azd := aoaitest.NewAzd(t) // a laptop: no managed identity, azd signed in
	aoai := aoaitest.NewAzureOpenAI()
	t.Cleanup(aoai.Close)
	a, _ := newTestApp(t, Options{
		Config:     keyless.Config{Endpoint: aoai.URL, Deployment: "chat"},
		HTTPClient: aoai.Client(),
	})

	if w := serve(a, newRequest("GET", "/readyz")); w.Code != http.StatusOK {
		t.Fatalf("readyz: status %d: %s", w.Code, w.Body)
	}
	body := `{"messages":[{"role":"user","content":"hi"}]}`
	r := httptest.NewRequest("POST", "/chat", strings.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	if w := serve(a, r); w.Code != http.StatusOK {
		t.Fatalf("chat: status %d: %s", w.Code, w.Body)
	}

	// azd caches nothing itself, so each keyless cache would cost one azd run.
	if n := azd.Calls(); n != 1 {
		t.Errorf("a readiness probe and an answer ran azd %d times, want 1", n)
	}
}

func TestNewReportsSettingsThatCannotWorkAsConfigError(t *testing.T) {
	aoaitest.Guard(t)
	cfg := keyless.Config{Endpoint: "https://127.0.0.1:9/", Deployment: "chat"}
	tests := []struct {
		name string
		opts Options
	}{
		{"invalid config", Options{Config: keyless.Config{Endpoint: "not a URL"}}},
		{"unknown AZURE_TOKEN_CREDENTIALS", Options{Config: cfg,
			Getenv: func(k string) string {
				return map[string]string{"AZURE_TOKEN_CREDENTIALS": "bogus"}[k]
			}}},
		{"no source left", Options{Config: cfg, Getenv: func(k string) string {
			return map[string]string{"AZURE_TOKEN_CREDENTIALS": "prod"}[k]
		}}},
	}
	for _, tt := range tests {
		_, err := New(tt.opts)
		if _, ok := errors.AsType[*ConfigError](err); !ok {
			t.Errorf("%s: New returned %v (%T), want a *ConfigError", tt.name, err, err)
		}
	}
}

func TestDemoAnswerIsTrueWhicheverRouteAsked(t *testing.T) {
	// The stand-in sees the upstream request only, which is the same for both
	// routes, so the answer must describe both rather than guess.
	demo := startDemo(t)
	a, _ := newTestApp(t, demo.Options(Options{}))
	srv := httptest.NewServer(a)
	defer srv.Close()

	client := chatproto.NewClient(srv.URL+"/chat", &chatproto.ClientOptions{
		HTTPClient: srv.Client(),
	})
	complete, err := client.Complete(t.Context(), &chatproto.Request{
		Messages: []chatproto.Message{{Role: chatproto.RoleUser, Content: "hi"}},
	})
	if err != nil {
		t.Fatalf("complete: %v", err)
	}
	answer := complete.Message.Content
	for _, want := range []string{"`/chat`", "`/chat/stream`"} {
		if !strings.Contains(answer, want) {
			t.Errorf("the answer does not name %s:\n%s", want, answer)
		}
	}
	if strings.Contains(answer, "posted the conversation to `/chat/stream`") {
		t.Errorf("the answer to POST /chat says it was posted to /chat/stream:\n%s", answer)
	}
}

func TestReadyzLogsOnlyWhenReadinessChanges(t *testing.T) {
	demo := startDemo(t)
	a, logs := newTestApp(t, demo.Options(Options{}))

	// The first token request fails; the token cache gives its error to the
	// probes of the next 2 seconds, then asks again and gets a token.
	demo.Identity.FailNext(1, http.StatusBadRequest)
	failed := 0
	for deadline := time.Now().Add(10 * time.Second); ; {
		code := serve(a, newRequest("GET", "/readyz")).Code
		if code == http.StatusOK {
			break
		}
		if code != http.StatusServiceUnavailable || time.Now().After(deadline) {
			t.Fatalf("probe %d: status %d, want 503 until a token comes, then 200",
				failed+1, code)
		}
		failed++
		time.Sleep(50 * time.Millisecond)
	}
	if code := serve(a, newRequest("GET", "/readyz")).Code; code != http.StatusOK {
		t.Fatalf("probe after the first 200: status %d", code)
	}
	if failed < 2 {
		t.Fatalf("only %d failed probes; the test needs several", failed)
	}

	var got []string
	for line := range strings.Lines(logs.String()) {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line %q is not JSON: %v", line, err)
		}
		got = append(got, fmt.Sprint(m["level"], " ", m["msg"]))
	}
	want := []string{"WARN not ready", "INFO ready"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("log lines of %d failed probes and 2 good ones (-want +got):\n%s\n%s",
			failed, diff, logs)
	}
}

func TestAzureOptionsSetTheUpstreamRetries(t *testing.T) {
	aoaitest.Guard(t)
	aoaitest.NewAzd(t)
	aoai := aoaitest.NewAzureOpenAI()
	t.Cleanup(aoai.Close)
	aoai.Script = func(*aoaitest.ChatRequest) aoaitest.Reply {
		return aoaitest.Reply{Status: http.StatusInternalServerError}
	}
	a, _ := newTestApp(t, Options{
		Config:     keyless.Config{Endpoint: aoai.URL, Deployment: "chat"},
		HTTPClient: aoai.Client(),
		Azure:      &stream.AzureOptions{MaxRetries: -1},
	})

	r := httptest.NewRequest("POST", "/chat",
		strings.NewReader(`{"messages":[{"role":"user","content":"hi"}]}`))
	r.Header.Set("Content-Type", "application/json")
	if w := serve(a, r); w.Code != http.StatusBadGateway {
		t.Fatalf("status %d, want 502: %s", w.Code, w.Body)
	}
	if n := len(aoai.Requests()); n != 1 {
		t.Errorf("Azure OpenAI saw %d attempts with retries off, want 1", n)
	}
}
