package stream_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/google/go-cmp/cmp"
	"github.com/openai/openai-go/v3/option"

	"github.com/aoaiblocks/securechat/aoaitest"
	"github.com/aoaiblocks/securechat/chatproto"
	"github.com/aoaiblocks/securechat/internal/testlog"
	"github.com/aoaiblocks/securechat/keyless"
	"github.com/aoaiblocks/securechat/stream"
)

// These tests run the whole way: an HTTP client, the Handler, AzureModel, the
// real openai-go client built by keyless with the real credential chain,
// which gets its tokens from the aoaitest managed identity endpoint, and the
// aoaitest Azure OpenAI server. aoaitest.Guard keeps each on loopback and
// away from the machine's real Azure sign-in.

const datedVersion = "2024-10-21"

// apiStyles are the two API shapes keyless can build, by
// AZURE_OPENAI_API_VERSION.
var apiStyles = []struct{ name, version string }{
	{"v1", ""},
	{"dated", datedVersion},
}

// logBuffer collects log output for assertions.
type logBuffer struct{ testlog.Buffer }

// last returns the last log line, decoded.
func (l *logBuffer) last(t *testing.T) map[string]any {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(l.String()), "\n")
	var m map[string]any
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &m); err != nil {
		t.Fatalf("log line %q: %v", lines[len(lines)-1], err)
	}
	return m
}

// app is the service under test and the stand-ins behind it.
type app struct {
	url  string // base of the chat endpoints: POST url, POST url+"/stream"
	aoai *aoaitest.AzureOpenAI
	id   *aoaitest.Identity
	logs *logBuffer
}

// setup is what a test may change about an app before it starts.
type setup struct {
	version string // AZURE_OPENAI_API_VERSION
	script  func(*aoaitest.ChatRequest) aoaitest.Reply
	opts    stream.Options       // Logger is set by newApp
	retries *int                 // openai-go's retries; nil means none
	azure   *stream.AzureOptions // when set, the model's options instead (retries unused)
}

// newApp starts the stand-ins and the service: the handler mounted under
// /chat of a mux, as a service would.
func newApp(t *testing.T, s setup) *app {
	t.Helper()
	hc := aoaitest.Guard(t)
	id := aoaitest.NewIdentity()
	t.Cleanup(id.Close)
	id.Setenv(t)
	aoai := aoaitest.NewAzureOpenAI()
	aoai.Script = s.script
	t.Cleanup(aoai.Close)

	cfg := keyless.Config{Endpoint: aoai.URL, Deployment: "chat", APIVersion: s.version}
	client, err := keyless.NewClient(cfg, &keyless.ClientOptions{
		HTTPClient: aoai.Client(),
		CredentialOptions: &keyless.CredentialOptions{
			ClientOptions: azcore.ClientOptions{Transport: hc},
		},
	})
	if err != nil {
		t.Fatalf("keyless.NewClient: %v", err)
	}
	retries := 0
	if s.retries != nil {
		retries = *s.retries
	}
	aopts := &stream.AzureOptions{
		RequestOptions: []option.RequestOption{option.WithMaxRetries(retries)},
	}
	if s.azure != nil {
		aopts = s.azure
	}
	model := stream.NewAzureModel(client, cfg.Deployment, aopts)

	logs := &logBuffer{}
	opts := s.opts
	opts.Logger = slog.New(slog.NewJSONHandler(logs, nil))
	mux := http.NewServeMux()
	h := stream.NewHandler(model, &opts)
	mux.Handle("/chat", h)
	mux.Handle("/chat/stream", h)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return &app{url: srv.URL + "/chat", aoai: aoai, id: id, logs: logs}
}

// post sends req as JSON to url and returns the response with its body.
func post(t *testing.T, url string, req any) (*http.Response, string) {
	t.Helper()
	body, err := json.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Post(url, "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

// parseLines decodes a JSON Lines body.
func parseLines(t *testing.T, body string) []chatproto.CompletionDelta {
	t.Helper()
	var out []chatproto.CompletionDelta
	for _, line := range strings.Split(strings.TrimSuffix(body, "\n"), "\n") {
		var d chatproto.CompletionDelta
		if err := json.Unmarshal([]byte(line), &d); err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		out = append(out, d)
	}
	return out
}

// answers are the assistant's scripted answers, by turn.
var answers = []string{
	"Hello! How can I help?",
	"Azure OpenAI needs no key: \"managed identity\" <works>.",
	"You're welcome.",
}

// scriptByTurn answers the nth user message with answers[n-1].
func scriptByTurn(r *aoaitest.ChatRequest) aoaitest.Reply {
	n := 0
	for _, m := range r.Messages {
		if m.Role == "user" {
			n++
		}
	}
	return aoaitest.Text(answers[min(n, len(answers))-1])
}

func TestThreeTurnConversationStreamsExactJSONLines(t *testing.T) {
	for _, style := range apiStyles {
		t.Run(style.name, func(t *testing.T) {
			a := newApp(t, setup{version: style.version, script: scriptByTurn})
			questions := []string{"Hi", "How do I call Azure OpenAI without a key?", "Thanks!"}
			want := []string{
				`{"delta":{"role":"assistant"},"sessionState":{"conversation":"c-1","turn":1}}
{"delta":{"content":"Hello!"}}
{"delta":{"content":" How"}}
{"delta":{"content":" can"}}
{"delta":{"content":" I"}}
{"delta":{"content":" help?"}}
{"delta":{},"context":{"finish_reason":"stop",` +
					`"usage":{"prompt_tokens":14,"completion_tokens":5,"total_tokens":19}}}
`,
				`{"delta":{"role":"assistant"},"sessionState":{"conversation":"c-1","turn":2}}
{"delta":{"content":"Azure"}}
{"delta":{"content":" OpenAI"}}
{"delta":{"content":" needs"}}
{"delta":{"content":" no"}}
{"delta":{"content":" key:"}}
{"delta":{"content":" \"managed"}}
{"delta":{"content":" identity\""}}
{"delta":{"content":" \u003cworks\u003e."}}
{"delta":{},"context":{"finish_reason":"stop",` +
					`"usage":{"prompt_tokens":36,"completion_tokens":8,"total_tokens":44}}}
`,
				`{"delta":{"role":"assistant"},"sessionState":{"conversation":"c-1","turn":3}}
{"delta":{"content":"You're"}}
{"delta":{"content":" welcome."}}
{"delta":{},"context":{"finish_reason":"stop",` +
					`"usage":{"prompt_tokens":53,"completion_tokens":2,"total_tokens":55}}}
`,
			}

			var history []chatproto.Message
			for turn, q := range questions {
				history = append(history, chatproto.Message{Role: "user", Content: q})
				state := json.RawMessage(`{"conversation": "c-1", "turn": ` +
					string(rune('1'+turn)) + `}`)
				req := chatproto.Request{Messages: history, SessionState: state}

				resp, body := post(t, a.url+"/stream", req)

				if resp.StatusCode != 200 {
					t.Fatalf("turn %d: status %d: %s", turn+1, resp.StatusCode, body)
				}
				if diff := cmp.Diff(want[turn], body); diff != "" {
					t.Errorf("turn %d (-want +got):\n%s", turn+1, diff)
				}

				// The client keeps the answer, with its context, as history.
				lines := parseLines(t, body)
				var content strings.Builder
				for _, l := range lines {
					content.WriteString(l.Delta.Content)
				}
				history = append(history, chatproto.Message{Role: "assistant",
					Content: content.String(), Context: lines[len(lines)-1].Context})
			}

			// Azure OpenAI saw the system prompt and the whole conversation.
			reqs := a.aoai.Requests()
			if len(reqs) != 3 {
				t.Fatalf("%d upstream requests, want 3", len(reqs))
			}
			wantUp := []aoaitest.ChatMessage{
				{Role: "system", Content: stream.DefaultSystemPrompt},
				{Role: "user", Content: questions[0]},
				{Role: "assistant", Content: answers[0]},
				{Role: "user", Content: questions[1]},
				{Role: "assistant", Content: answers[1]},
				{Role: "user", Content: questions[2]},
			}
			if diff := cmp.Diff(wantUp, reqs[2].Messages); diff != "" {
				t.Errorf("last upstream messages (-want +got):\n%s", diff)
			}
			for i, r := range reqs {
				if !r.Stream || !r.IncludeUsage || r.Principal != a.id.PrincipalID ||
					r.Deployment != "chat" {
					t.Errorf("upstream request %d: stream %v, include_usage %v, "+
						"principal %q, deployment %q; want true, true, %q, chat", i,
						r.Stream, r.IncludeUsage, r.Principal, r.Deployment, a.id.PrincipalID)
				}
			}
		})
	}
}

func TestCompleteAnswerEqualsConcatenatedStream(t *testing.T) {
	a := newApp(t, setup{script: scriptByTurn})
	req := chatproto.Request{
		Messages: []chatproto.Message{
			{Role: "user", Content: "Hi"},
			{Role: "assistant", Content: answers[0]},
			{Role: "user", Content: "Keys?"},
		},
		SessionState: json.RawMessage(`["any", {"json": true}]`),
	}

	resp, body := post(t, a.url, req)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("complete: %d %s: %s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	var complete chatproto.Completion
	if err := json.Unmarshal([]byte(body), &complete); err != nil {
		t.Fatal(err)
	}
	_, streamed := post(t, a.url+"/stream", req)
	lines := parseLines(t, streamed)

	var content strings.Builder
	for _, l := range lines {
		content.WriteString(l.Delta.Content)
	}
	got := chatproto.Completion{
		Message:      chatproto.Message{Role: lines[0].Delta.Role, Content: content.String()},
		Context:      lines[len(lines)-1].Context,
		SessionState: lines[0].SessionState,
	}
	if diff := cmp.Diff(complete, got); diff != "" {
		t.Errorf("stream joined (-complete +stream):\n%s", diff)
	}
	if complete.Message.Content != answers[1] {
		t.Errorf("content %q, want %q", complete.Message.Content, answers[1])
	}
}

func TestSessionStateAndContextRoundTrip(t *testing.T) {
	a := newApp(t, setup{})
	state := `{"user":{"name":"Ada","prefs":["short","<plain>"]},"n":1.5e3,"ok":null}`
	body := `{"messages":[` +
		`{"role":"user","content":"one"},` +
		`{"role":"assistant","content":"two","context":{"finish_reason":"stop",` +
		`"data_points":{"text":["a"]}}},` +
		`{"role":"user","content":"three"}],` +
		`"context":{"overrides":{"temperature":0.25,"top_p":0.5,"max_tokens":64},` +
		`"app":{"theme":"dark"}},` +
		`"sessionState":` + state + `}`

	for _, path := range []string{"", "/stream"} {
		resp, err := http.Post(a.url+path, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("%q: status %d: %s", path, resp.StatusCode, got)
		}

		var v struct {
			SessionState json.RawMessage `json:"sessionState"`
		}
		first, _, _ := strings.Cut(string(got), "\n")
		if err := json.Unmarshal([]byte(first), &v); err != nil {
			t.Fatal(err)
		}
		if !jsonEqual(t, state, string(v.SessionState)) {
			t.Errorf("%q: sessionState %s, want %s", path, v.SessionState, state)
		}
	}

	for i, r := range a.aoai.Requests() {
		got := []any{*r.Temperature, *r.TopP, *r.MaxTokens, len(r.Messages)}
		if diff := cmp.Diff([]any{0.25, 0.5, 64, 4}, got); diff != "" {
			t.Errorf("upstream request %d: temperature, top_p, max_tokens, messages "+
				"(-want +got):\n%s", i, diff)
		}
		if strings.Contains(string(r.Body), "data_points") || strings.Contains(string(r.Body),
			"theme") {
			t.Errorf("upstream request %d carries client context: %s", i, r.Body)
		}
	}
}

// jsonEqual reports whether two JSON texts hold the same value.
func jsonEqual(t *testing.T, a, b string) bool {
	t.Helper()
	var va, vb any
	if err := json.Unmarshal([]byte(a), &va); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(b), &vb); err != nil {
		return false
	}
	return cmp.Equal(va, vb)
}

func TestStreamCancelsUpstreamWhenClientLeaves(t *testing.T) {
	long := make([]string, 500)
	for i := range long {
		long[i] = " word"
	}
	a := newApp(t, setup{script: func(r *aoaitest.ChatRequest) aoaitest.Reply {
		if r.Messages[len(r.Messages)-1].Content == "warm up" {
			return aoaitest.Text("ready")
		}
		return aoaitest.Reply{Deltas: long, ChunkDelay: 20 * time.Millisecond}
	}})
	hello := func(s string) string {
		return `{"messages":[{"role":"user","content":"` + s + `"}]}`
	}

	// A first request opens the connections a steady service keeps.
	resp, body := post(t, a.url+"/stream", json.RawMessage(hello("warm up")))
	if resp.StatusCode != 200 {
		t.Fatalf("warm-up: %d %s", resp.StatusCode, body)
	}
	http.DefaultClient.CloseIdleConnections()
	base := runtime.NumGoroutine()

	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, a.url+"/stream",
		strings.NewReader(hello("tell me a long story")))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(resp.Body)
	for range 3 { // the first line and two deltas
		if _, err := r.ReadString('\n'); err != nil {
			t.Fatal(err)
		}
	}
	left := time.Now()
	cancel()
	resp.Body.Close()

	reqs := a.aoai.Requests()
	upstream := reqs[len(reqs)-1]
	select {
	case <-upstream.Done:
	case <-time.After(5 * time.Second):
		t.Fatal("Azure OpenAI was still streaming 5s after the client left")
	}
	if d := time.Since(left); d > time.Second {
		t.Errorf("the upstream request ended %v after the client left, want under 1s", d)
	}
	reqs = a.aoai.Requests()
	if last := reqs[len(reqs)-1]; !last.Canceled {
		t.Errorf("aoaitest did not see the request cancelled (status %d)", last.Status)
	}

	// Every goroutine of the request ends: the handler's, the upstream
	// connection's, the client's.
	http.DefaultClient.CloseIdleConnections()
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(a.logs.String(), `"status":499`) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond) // the handler's last act is its log line
	}
	for runtime.NumGoroutine() > base && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > base {
		buf := make([]byte, 1<<20)
		t.Errorf("%d goroutines, %d before the request:\n%s", n, base,
			buf[:runtime.Stack(buf, true)])
	}
	for l := a.logs.last(t); l["status"] != 499.0 || l["code"] != "client_closed"; {
		if time.Now().After(deadline) {
			t.Fatalf("log line %v, want status 499, code client_closed", l)
		}
		time.Sleep(10 * time.Millisecond)
		l = a.logs.last(t)
	}
}

// jsonUnmarshal decodes the JSON text s into v.
func jsonUnmarshal(s string, v any) error { return json.Unmarshal([]byte(s), v) }
