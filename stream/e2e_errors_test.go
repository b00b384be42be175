package stream_test

import (
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/aoaiblocks/securechat/aoaitest"
	"github.com/aoaiblocks/securechat/chatproto"
	"github.com/aoaiblocks/securechat/stream"
)

// say is a request whose last user message is text.
func say(text string) chatproto.Request {
	return chatproto.Request{Messages: []chatproto.Message{{Role: "user", Content: text}}}
}

// faultScript answers "fault" with reply and anything else normally.
func faultScript(reply aoaitest.Reply) func(*aoaitest.ChatRequest) aoaitest.Reply {
	return func(r *aoaitest.ChatRequest) aoaitest.Reply {
		if r.Messages[len(r.Messages)-1].Content == "fault" {
			return reply
		}
		return aoaitest.Text("fine")
	}
}

// upstreamAttempts counts the requests for "fault" Azure OpenAI received.
func upstreamAttempts(a *app) int {
	n := 0
	for _, r := range a.aoai.Requests() {
		if len(r.Messages) > 0 && r.Messages[len(r.Messages)-1].Content == "fault" {
			n++
		}
	}
	return n
}

func intp(n int) *int { return &n }

// linesPattern finds the line count in an outcome.
var linesPattern = regexp.MustCompile(`[1-9][0-9]* lines`)

func TestUpstreamFaultsAreMappedEndToEnd(t *testing.T) {
	words := []string{"partial", " answer", " that", " goes", " on"}
	tests := []struct {
		name    string
		reply   aoaitest.Reply
		opts    stream.Options
		retries *int
		// what the client gets: the status and code before the first byte,
		// and for the streaming endpoint the content lines before the error
		// line when the stream had started (-1: it had not)
		status     int
		code       string
		retryAfter string
		lines      int
		anyLines   bool // lines is only about right
		attempts   int  // upstream requests per client request
	}{
		{name: "throttled with retry-after-ms",
			reply:  aoaitest.Reply{Status: 429, RetryAfter: 1500 * time.Millisecond},
			status: 429, code: stream.CodeRateLimited, retryAfter: "2", lines: -1, attempts: 1},
		{name: "throttled after the client's retries",
			reply:   aoaitest.Reply{Status: 429, RetryAfter: 10 * time.Millisecond},
			retries: intp(2),
			status:  429, code: stream.CodeRateLimited, retryAfter: "1", lines: -1, attempts: 3},
		{name: "500",
			reply:  aoaitest.Reply{Status: 500},
			status: 502, code: stream.CodeUpstreamError, lines: -1, attempts: 1},
		{name: "503",
			reply:  aoaitest.Reply{Status: 503, RetryAfter: time.Second},
			status: 502, code: stream.CodeUpstreamError, lines: -1, attempts: 1},
		{name: "prompt filtered",
			reply:  aoaitest.Reply{PromptFiltered: true},
			status: 400, code: stream.CodeContentFilter, lines: -1, attempts: 1},
		{name: "answer filtered",
			reply:  aoaitest.Reply{Deltas: words[:2], AnswerFiltered: true},
			status: 400, code: stream.CodeContentFilter, lines: 2, attempts: 1},
		{name: "connection cut before the headers",
			reply:  aoaitest.Reply{CutBeforeHeaders: true},
			status: 502, code: stream.CodeUpstreamError, lines: -1, attempts: 1},
		{name: "connection cut after two chunks",
			reply:  aoaitest.Reply{Deltas: words, CutAfter: 2},
			status: 502, code: stream.CodeUpstreamError, lines: 2, attempts: 1},
		{name: "malformed chunk after two chunks",
			reply:  aoaitest.Reply{Deltas: words, MalformedAfter: 2},
			status: 502, code: stream.CodeUpstreamError, lines: 2, attempts: 1},
		{name: "first token slower than the idle timeout",
			reply:  aoaitest.Reply{FirstDelay: 3 * time.Second},
			opts:   stream.Options{IdleTimeout: 200 * time.Millisecond},
			status: 504, code: stream.CodeUpstreamTimeout, lines: -1, attempts: 1},
		{name: "answer slower than the timeout",
			reply: aoaitest.Reply{Deltas: words, ChunkDelay: 200 * time.Millisecond},
			opts:  stream.Options{Timeout: 700 * time.Millisecond},
			// Chunks: prompt filter results, role, then content every 200ms:
			// about 2 lines by the timeout, but the count depends on timing.
			status: 504, code: stream.CodeUpstreamTimeout, lines: 2, anyLines: true,
			attempts: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := newApp(t, setup{script: faultScript(tt.reply), opts: tt.opts,
				retries: tt.retries})

			for _, path := range []string{"", "/stream"} {
				before := upstreamAttempts(a)
				resp, body := post(t, a.url+path, say("fault"))

				got := outcome(t, resp, body, path == "/stream")
				want := fmt.Sprintf("%d %s Retry-After=%q", tt.status, tt.code, tt.retryAfter)
				if path == "/stream" && tt.lines >= 0 {
					want = fmt.Sprintf("200 %d lines then %s", tt.lines, tt.code)
					if tt.anyLines {
						got = linesPattern.ReplaceAllString(got, fmt.Sprintf("%d lines",
							tt.lines))
					}
				}
				if got != want {
					t.Errorf("POST %q: got %s, want %s\nbody: %s", path, got, want, body)
				}
				if strings.Contains(body, "secret") || strings.Contains(body, "Azure OpenAI") {
					t.Errorf("POST %q: the client sees upstream internals: %s", path, body)
				}
				if n := upstreamAttempts(a) - before; n != tt.attempts {
					t.Errorf("POST %q: %d upstream attempts, want %d", path, n, tt.attempts)
				}
				if l := a.logs.last(t); l["code"] != tt.code || l["error"] == nil {
					t.Errorf("POST %q: log line %v, want code %s and the error", path, l,
						tt.code)
				}

				// The service keeps working.
				if resp, body := post(t, a.url+path, say("hi")); resp.StatusCode != 200 {
					t.Errorf("POST %q after the fault: %d %s", path, resp.StatusCode, body)
				}
			}
		})
	}
}

// outcome describes what the client got: "status code Retry-After=..." for an
// error before the first byte, "200 N lines then code" for a stream that
// failed after N content lines.
func outcome(t *testing.T, resp *http.Response, body string, isStream bool) string {
	t.Helper()
	if resp.StatusCode != 200 {
		e := errorOf(t, body)
		return fmt.Sprintf("%d %s Retry-After=%q", resp.StatusCode, e.Code,
			resp.Header.Get("Retry-After"))
	}
	if !isStream {
		return "200 with an answer"
	}
	lines := strings.Split(strings.TrimSuffix(body, "\n"), "\n")
	last := lines[len(lines)-1]
	if !strings.HasPrefix(last, `{"error"`) {
		return "200 complete stream"
	}
	return fmt.Sprintf("200 %d lines then %s", len(lines)-2, errorOf(t, last).Code)
}

// errorOf decodes an error body or line.
func errorOf(t *testing.T, s string) *chatproto.Error {
	t.Helper()
	var er chatproto.ErrorResponse
	if err := jsonUnmarshal(s, &er); err != nil || er.Error == nil {
		t.Fatalf("not a protocol error: %q (%v)", s, err)
	}
	return er.Error
}

func TestRefusedTokenLogNamesPrincipalAndRole(t *testing.T) {
	for _, style := range apiStyles {
		t.Run(style.name, func(t *testing.T) {
			a := newApp(t, setup{version: style.version})
			a.aoai.Deny(a.id.PrincipalID)

			resp, body := post(t, a.url+"/stream", say("hi"))

			if e := errorOf(t, body); resp.StatusCode != 502 || e.Code != "upstream_auth" {
				t.Fatalf("got %d %s, want 502 upstream_auth", resp.StatusCode, e.Code)
			}
			l := a.logs.last(t)
			got := map[string]any{"principal_id": l["principal_id"],
				"missing_role": l["missing_role"], "tenant_id": l["tenant_id"],
				"upstream_status": l["upstream_status"], "level": l["level"]}
			want := map[string]any{"principal_id": a.id.PrincipalID,
				"missing_role": "Cognitive Services OpenAI User", "tenant_id": a.id.TenantID,
				"upstream_status": 403.0, "level": "ERROR"}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("log line (-want +got):\n%s", diff)
			}
			fix, _ := l["fix"].(string)
			wantFix := `az role assignment create --role "Cognitive Services OpenAI User"` +
				` --assignee-object-id ` + a.id.PrincipalID +
				` --assignee-principal-type ServicePrincipal --scope `
			if !strings.HasPrefix(fix, wantFix) {
				t.Errorf("fix %q, want it to start with %q", fix, wantFix)
			}
			if logs := a.logs.String(); strings.Contains(logs, "eyJ") {
				t.Errorf("the log holds a token: %s", logs)
			}
		})
	}
}

func TestNoCredentialIsCredentialUnavailable(t *testing.T) {
	a := newApp(t, setup{})
	azd := aoaitest.NewAzd(t) // the chain's second source: signed out
	azd.SignOut()

	a.id.FailNext(1, http.StatusBadRequest)
	for _, path := range []string{"", "/stream"} {
		resp, body := post(t, a.url+path, say("hi"))

		if e := errorOf(t, body); resp.StatusCode != 503 || e.Code != "credential_unavailable" {
			t.Errorf("POST %q: got %d %s, want 503 credential_unavailable", path,
				resp.StatusCode, e.Code)
		}
		if n := len(a.aoai.Requests()); n != 0 {
			t.Errorf("POST %q: Azure OpenAI got %d requests, want none", path, n)
		}
		l := a.logs.last(t)
		if cause, _ := l["error"].(string); !strings.Contains(cause, "azd auth login") {
			t.Errorf("POST %q: log error %q, want every source's failure and fix", path, cause)
		}
	}

	// The identity is back: once keyless stops holding on to the failure (a
	// couple of seconds), requests work again.
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, body := post(t, a.url, say("hi"))
		if resp.StatusCode == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("10s after the identity recovered: %d %s", resp.StatusCode, body)
		}
		time.Sleep(250 * time.Millisecond)
	}
}
