package aoaitest_test

import (
	"bufio"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/google/go-cmp/cmp"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/azure"
	"github.com/openai/openai-go/v3/option"

	"github.com/aoaiblocks/securechat/aoaitest"
)

const apiVersion = "2024-10-21"

// fixture is a guarded test with an Identity, an AzureOpenAI and a managed identity
// credential for the user-assigned identity.
type fixture struct {
	id   *aoaitest.Identity
	srv  *aoaitest.AzureOpenAI
	cred azcore.TokenCredential
	hc   *http.Client
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	id, hc := newIdentity(t)
	srv := aoaitest.NewAzureOpenAI()
	t.Cleanup(srv.Close)
	return &fixture{id: id, srv: srv, cred: managedCredential(t, hc, id.ClientID), hc: hc}
}

// dated returns an openai-go client on the dated deployments API, configured with its
// azure package.
func (f *fixture) dated() openai.Client {
	return openai.NewClient(
		azure.WithEndpoint(f.srv.URL, apiVersion),
		azure.WithTokenCredential(f.cred),
		option.WithHTTPClient(f.srv.Client()),
		option.WithMaxRetries(0),
	)
}

// v1 returns an openai-go client on the v1 API with a bearer-token middleware.
func (f *fixture) v1() openai.Client {
	return openai.NewClient(
		option.WithBaseURL(f.srv.URL+"/openai/v1/"),
		option.WithHTTPClient(f.srv.Client()),
		option.WithMiddleware(bearerMiddleware(f.cred)),
		option.WithMaxRetries(0),
	)
}

func bearerMiddleware(cred azcore.TokenCredential) option.Middleware {
	return func(r *http.Request, next option.MiddlewareNext) (*http.Response, error) {
		tok, err := getToken(cred, aoaitest.Scope)
		if err != nil {
			return nil, err
		}
		r.Header.Set("Authorization", "Bearer "+tok.Token)
		return next(r)
	}
}

func hello(stream bool) openai.ChatCompletionNewParams {
	p := openai.ChatCompletionNewParams{
		Model:    "chat",
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Hello there")},
	}
	if stream {
		p.StreamOptions.IncludeUsage = openai.Bool(true)
	}
	return p
}

// seen is the part of a recorded request the tests compare.
type seen struct {
	Method, Path, Deployment, APIVersion, Model, Principal string
	Messages                                               []aoaitest.ChatMessage
	Stream, IncludeUsage, Canceled                         bool
	Status                                                 int
}

func lastSeen(t *testing.T, srv *aoaitest.AzureOpenAI) seen {
	t.Helper()
	reqs := srv.Requests()
	if len(reqs) == 0 {
		t.Fatal("no request recorded")
	}
	r := reqs[len(reqs)-1]
	<-r.Done
	r = srv.Requests()[len(reqs)-1]
	return seen{r.Method, r.Path, r.Deployment, r.APIVersion, r.Model, r.Principal,
		r.Messages, r.Stream, r.IncludeUsage, r.Canceled, r.Status}
}

func TestOpenAIClientCompletesOnDatedPath(t *testing.T) {
	f := newFixture(t)
	client := f.dated()

	res, err := client.Chat.Completions.New(context.Background(), hello(false))
	if err != nil {
		t.Fatal(err)
	}
	if got := res.Choices[0].Message.Content; got != `You said: "Hello there"` {
		t.Errorf("content = %q", got)
	}
	if res.Choices[0].FinishReason != "stop" || res.Usage.TotalTokens == 0 {
		t.Errorf("finish reason %q, usage %+v", res.Choices[0].FinishReason, res.Usage)
	}
	want := seen{
		Method: "POST", Path: "/openai/deployments/chat/chat/completions", Deployment: "chat",
		APIVersion: apiVersion, Model: "chat", Principal: f.id.PrincipalID, Status: 200,
		Messages: []aoaitest.ChatMessage{{Role: "user", Content: "Hello there"}},
	}
	if diff := cmp.Diff(want, lastSeen(t, f.srv)); diff != "" {
		t.Errorf("request (-want +got):\n%s", diff)
	}
}

func TestOpenAIClientStreamsOnBothPaths(t *testing.T) {
	f := newFixture(t)
	for name, client := range map[string]openai.Client{"dated": f.dated(), "v1": f.v1()} {
		t.Run(name, func(t *testing.T) {
			stream := client.Chat.Completions.NewStreaming(context.Background(), hello(true))
			var chunks []openai.ChatCompletionChunk
			for stream.Next() {
				chunks = append(chunks, stream.Current())
			}
			if err := stream.Err(); err != nil {
				t.Fatal(err)
			}

			first, last := chunks[0], chunks[len(chunks)-1]
			if len(first.Choices) != 0 || !strings.Contains(first.RawJSON(), "prompt_filter_results") {
				t.Errorf("first chunk = %s, want prompt_filter_results and no choices",
					first.RawJSON())
			}
			if len(last.Choices) != 0 || last.Usage.TotalTokens == 0 {
				t.Errorf("last chunk = %s, want usage and no choices", last.RawJSON())
			}
			var text strings.Builder
			finish := ""
			for _, c := range chunks[1 : len(chunks)-1] {
				if len(c.Choices) != 1 || !strings.Contains(c.RawJSON(), "content_filter_results") {
					t.Errorf("chunk %s: want one choice with content_filter_results", c.RawJSON())
					continue
				}
				text.WriteString(c.Choices[0].Delta.Content)
				finish += c.Choices[0].FinishReason
			}
			if text.String() != `You said: "Hello there"` || finish != "stop" {
				t.Errorf("text %q, finish %q", text.String(), finish)
			}
			got := lastSeen(t, f.srv)
			if !got.Stream || !got.IncludeUsage || got.Principal != f.id.PrincipalID {
				t.Errorf("request = %+v", got)
			}
		})
	}
}

// post sends a raw chat completions request with the given headers.
func post(t *testing.T, srv *aoaitest.AzureOpenAI, body string, header http.Header) *http.Response {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/openai/v1/chat/completions",
		strings.NewReader(body))
	req.Header = header
	req.Header.Set("Content-Type", "application/json")
	res, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { res.Body.Close() })
	return res
}

func bearerHeader(tok string) http.Header {
	return http.Header{"Authorization": {"Bearer " + tok}}
}

// forge re-signs a token's header and claims with a key of its own.
func forge(tok string) string {
	parts := strings.Split(tok, ".")
	m := hmac.New(sha256.New, []byte("not the issuer's key"))
	m.Write([]byte(parts[0] + "." + parts[1]))
	return parts[0] + "." + parts[1] + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// azureErr decodes an Azure error body.
func azureErr(t *testing.T, res *http.Response) (code, msg string) {
	t.Helper()
	var body struct {
		Error struct{ Code, Message string } `json:"error"`
	}
	if err := json.NewDecoder(res.Body).Decode(&body); err != nil {
		t.Fatalf("error body: %v", err)
	}
	return body.Error.Code, body.Error.Message
}

func TestAzureOpenAIRefusesBadCredentials(t *testing.T) {
	f := newFixture(t)
	valid := f.id.Token(f.id.PrincipalID, time.Hour)
	mgmt, err := getToken(f.cred, "https://management.azure.com/.default")
	if err != nil {
		t.Fatal(err)
	}
	withKey := bearerHeader(valid)
	withKey.Set("api-key", "0123456789abcdef")
	const body = `{"model":"chat","messages":[{"role":"user","content":"hi"}]}`

	tests := []struct {
		name   string
		header http.Header
		code   string
	}{
		{"no token", http.Header{}, "401"},
		{"not bearer", http.Header{"Authorization": {"Basic " + valid}}, "401"},
		{"forged", bearerHeader(forge(valid)), "401"},
		{"expired", bearerHeader(f.id.Token(f.id.PrincipalID, -time.Second)), "401"},
		{"wrong audience", bearerHeader(mgmt.Token), "401"},
		{"api-key alone", http.Header{"Api-Key": {"0123456789abcdef"}},
			"AuthenticationTypeDisabled"},
		{"api-key with a valid token", withKey, "AuthenticationTypeDisabled"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := post(t, f.srv, body, tt.header)
			code, _ := azureErr(t, res)
			if res.StatusCode != http.StatusUnauthorized || code != tt.code {
				t.Errorf("status %d, code %q; want 401, %q", res.StatusCode, code, tt.code)
			}
		})
	}
	if res := post(t, f.srv, body, bearerHeader(valid)); res.StatusCode != http.StatusOK {
		t.Errorf("valid token: status %d", res.StatusCode)
	}
}

func TestOpenAIClientGetsUnauthorizedForExpiredToken(t *testing.T) {
	f := newFixture(t)
	f.id.SetLifetime(0)

	_, err := fdated(f).Chat.Completions.New(context.Background(), hello(false))
	var apiErr *openai.Error
	if !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusUnauthorized {
		t.Fatalf("err = %v, want a 401 openai.Error", err)
	}
}

func TestAzureOpenAIDeniesPrincipalWithoutRole(t *testing.T) {
	f := newFixture(t)
	f.srv.Deny(f.id.PrincipalID)

	_, err := fdated(f).Chat.Completions.New(context.Background(), hello(false))
	var apiErr *openai.Error
	if !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusForbidden ||
		apiErr.Code != "PermissionDenied" || !strings.Contains(apiErr.Message, f.id.PrincipalID) {
		t.Fatalf("err = %v, want 403 PermissionDenied naming the principal", err)
	}
	if got := lastSeen(t, f.srv); got.Status != 403 || got.Principal != f.id.PrincipalID {
		t.Errorf("recorded %+v", got)
	}
}

func TestAzureOpenAIServesPrincipalAgainAfterAllow(t *testing.T) {
	f := newFixture(t)
	f.srv.Deny(f.id.PrincipalID)
	f.srv.Allow(f.id.PrincipalID)

	if _, err := fdated(f).Chat.Completions.New(context.Background(), hello(false)); err != nil {
		t.Fatalf("after Allow: %v, want an answer", err)
	}
}

// outcome is what a client sees of one streamed answer.
type outcome struct {
	Status               int
	Code                 string
	RetryAfter, RetryMS  string
	Text, Finish         string
	StreamFailed         bool
	FilteredAnswer       bool
	ContentFilteredParam bool
}

func streamOutcome(client openai.Client) outcome {
	var o outcome
	stream := client.Chat.Completions.NewStreaming(context.Background(), hello(true))
	for stream.Next() {
		c := stream.Current()
		if len(c.Choices) > 0 {
			o.Text += c.Choices[0].Delta.Content
			o.Finish += c.Choices[0].FinishReason
			if strings.Contains(c.RawJSON(), `"filtered":true`) {
				o.FilteredAnswer = true
			}
		}
	}
	err := stream.Err()
	var apiErr *openai.Error
	switch {
	case errors.As(err, &apiErr):
		o.Status, o.Code = apiErr.StatusCode, apiErr.Code
		o.RetryAfter = apiErr.Response.Header.Get("Retry-After")
		o.RetryMS = apiErr.Response.Header.Get("retry-after-ms")
		o.ContentFilteredParam = strings.Contains(apiErr.RawJSON(), "ResponsibleAIPolicyViolation")
	case err != nil:
		o.StreamFailed = true
	default:
		o.Status = 200
	}
	return o
}

func TestAzureOpenAIRepliesWithScriptedFaults(t *testing.T) {
	words := aoaitest.Text("one two three four")
	with := func(r aoaitest.Reply) aoaitest.Reply {
		r.Deltas = words.Deltas
		return r
	}
	tests := []struct {
		name  string
		reply aoaitest.Reply
		want  outcome
	}{
		{"default answer", aoaitest.Reply{},
			outcome{Status: 200, Text: `You said: "Hello there"`, Finish: "stop"}},
		{"scripted text", words, outcome{Status: 200, Text: "one two three four", Finish: "stop"}},
		{"finish reason", with(aoaitest.Reply{FinishReason: "length"}),
			outcome{Status: 200, Text: "one two three four", Finish: "length"}},
		{"throttled", aoaitest.Reply{Status: 429, RetryAfter: 1500 * time.Millisecond},
			outcome{Status: 429, Code: "429", RetryAfter: "2", RetryMS: "1500"}},
		{"unavailable", aoaitest.Reply{Status: 503, ErrorCode: "ServiceUnavailable",
			RetryAfter: 3 * time.Second},
			outcome{Status: 503, Code: "ServiceUnavailable", RetryAfter: "3", RetryMS: "3000"}},
		{"server error", aoaitest.Reply{Status: 500},
			outcome{Status: 500, Code: "500"}},
		{"prompt filtered", aoaitest.Reply{PromptFiltered: true},
			outcome{Status: 400, Code: "content_filter", ContentFilteredParam: true}},
		{"answer filtered", with(aoaitest.Reply{AnswerFiltered: true}),
			outcome{Status: 200, Text: "one two three four", Finish: "content_filter",
				FilteredAnswer: true}},
		{"cut after two chunks", with(aoaitest.Reply{CutAfter: 2}),
			outcome{Text: "one two", StreamFailed: true}},
		{"malformed after one chunk", with(aoaitest.Reply{MalformedAfter: 1}),
			outcome{Text: "one", StreamFailed: true}},
		{"cut before headers", aoaitest.Reply{CutBeforeHeaders: true},
			outcome{StreamFailed: true}},
	}
	f := newFixture(t)
	client := f.v1()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f.srv.Script = func(*aoaitest.ChatRequest) aoaitest.Reply { return tt.reply }
			if diff := cmp.Diff(tt.want, streamOutcome(client)); diff != "" {
				t.Errorf("outcome (-want +got):\n%s", diff)
			}
		})
	}
}

func TestAzureOpenAICompletionFaultsWithoutStreaming(t *testing.T) {
	f := newFixture(t)
	client := f.dated()
	for _, r := range []aoaitest.Reply{{CutAfter: 1}, {MalformedAfter: 1}, {CutBeforeHeaders: true}} {
		f.srv.Script = func(*aoaitest.ChatRequest) aoaitest.Reply { return r }
		if _, err := client.Chat.Completions.New(context.Background(), hello(false)); err == nil {
			t.Errorf("reply %+v: no error", r)
		}
	}
	f.srv.Script = func(*aoaitest.ChatRequest) aoaitest.Reply {
		return aoaitest.Reply{AnswerFiltered: true, Deltas: []string{"partial"}}
	}
	res, err := client.Chat.Completions.New(context.Background(), hello(false))
	if err != nil || res.Choices[0].FinishReason != "content_filter" {
		t.Errorf("answer filtered: %v, %+v", err, res)
	}
}

func TestAzureOpenAIDelaysChunks(t *testing.T) {
	f := newFixture(t)
	f.srv.Script = func(*aoaitest.ChatRequest) aoaitest.Reply {
		r := aoaitest.Text("a b c")
		r.FirstDelay, r.ChunkDelay = 100*time.Millisecond, 20*time.Millisecond
		return r
	}
	start := time.Now()
	o := streamOutcome(f.v1())
	// first delay, then role + 3 content + finish + usage chunks after the first one
	if d := time.Since(start); d < 100*time.Millisecond+6*20*time.Millisecond {
		t.Errorf("answer took %v, want at least 220ms", d)
	}
	if o.Text != "a b c" {
		t.Errorf("text %q", o.Text)
	}
}

func TestAzureOpenAIRecordsCanceledStream(t *testing.T) {
	f := newFixture(t)
	f.srv.Script = func(*aoaitest.ChatRequest) aoaitest.Reply {
		r := aoaitest.Text(strings.Repeat("word ", 100))
		r.ChunkDelay = 20 * time.Millisecond
		return r
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stream := fdated(f).Chat.Completions.NewStreaming(ctx, hello(true))
	for n := 0; n < 3 && stream.Next(); n++ {
	}
	cancel()
	stream.Close()

	got := lastSeen(t, f.srv)
	if !got.Canceled || got.Status != 200 {
		t.Errorf("recorded Canceled %v, Status %d; want true, 200", got.Canceled, got.Status)
	}
}

func TestAzureOpenAICountsTLSConnections(t *testing.T) {
	f := newFixture(t)
	client := f.dated()
	for range 3 {
		if _, err := client.Chat.Completions.New(context.Background(), hello(false)); err != nil {
			t.Fatal(err)
		}
	}
	if n := f.srv.TLSConnections(); n != 1 {
		t.Errorf("after 3 requests on one client: %d connections, want 1", n)
	}
	if _, err := fdated(f).Chat.Completions.New(context.Background(), hello(false)); err != nil {
		t.Fatal(err)
	}
	if n := f.srv.TLSConnections(); n != 2 {
		t.Errorf("after a second client: %d connections, want 2", n)
	}
}

func TestAzureOpenAIStreamsAzureChunkShapes(t *testing.T) {
	f := newFixture(t)
	f.srv.Script = func(*aoaitest.ChatRequest) aoaitest.Reply { return aoaitest.Text("Hi you") }
	tok := f.id.Token(f.id.PrincipalID, time.Hour)
	res := post(t, f.srv, `{"model":"chat","stream":true,"stream_options":{"include_usage":true},`+
		`"messages":[{"role":"user","content":[{"type":"text","text":"Hello"}]}]}`,
		bearerHeader(tok))
	if ct := res.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
		t.Errorf("Content-Type %q", ct)
	}

	// Each event reduced to its shape: which top-level keys, how many choices, the
	// delta and finish reason, and whether the choice has content_filter_results.
	var shapes []string
	sc := bufio.NewScanner(res.Body)
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			continue
		}
		data, ok := strings.CutPrefix(line, "data: ")
		if !ok {
			t.Fatalf("line %q is not a data line", line)
		}
		if data == "[DONE]" {
			shapes = append(shapes, "[DONE]")
			continue
		}
		var c struct {
			Choices []struct {
				Delta   map[string]any  `json:"delta"`
				Finish  *string         `json:"finish_reason"`
				Filters json.RawMessage `json:"content_filter_results"`
			} `json:"choices"`
			Prompt json.RawMessage `json:"prompt_filter_results"`
			Usage  json.RawMessage `json:"usage"`
		}
		if err := json.Unmarshal([]byte(data), &c); err != nil {
			t.Fatalf("chunk %s: %v", data, err)
		}
		s := ""
		if c.Prompt != nil {
			s += "prompt_filter_results "
		}
		if c.Usage != nil {
			s += "usage "
		}
		for _, ch := range c.Choices {
			d, _ := json.Marshal(ch.Delta)
			s += "delta=" + string(d)
			if ch.Finish != nil {
				s += " finish=" + *ch.Finish
			}
			if ch.Filters != nil {
				s += " filters"
			}
		}
		shapes = append(shapes, strings.TrimSpace(s))
	}
	want := []string{
		"prompt_filter_results",
		`delta={"content":"","role":"assistant"} filters`,
		`delta={"content":"Hi"} filters`,
		`delta={"content":" you"} filters`,
		`delta={} finish=stop filters`,
		"usage",
		"[DONE]",
	}
	if diff := cmp.Diff(want, shapes); diff != "" {
		t.Errorf("event shapes (-want +got):\n%s", diff)
	}
	if got := lastSeen(t, f.srv).Messages; got[0].Content != "Hello" {
		t.Errorf("array content read as %q", got[0].Content)
	}
	_, _ = io.Copy(io.Discard, res.Body)
}

// fdated is f.dated in a variable, so that its methods can be called on it.
func fdated(f *fixture) *openai.Client {
	c := f.dated()
	return &c
}
