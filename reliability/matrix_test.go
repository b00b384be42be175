package reliability

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"

	"github.com/aoaiblocks/securechat/aoaitest"
	"github.com/aoaiblocks/securechat/examples/chatapp/app"
	"github.com/aoaiblocks/securechat/stream"
)

// A fault is one row of the matrix: how it is injected, and what a client of each
// endpoint gets (see outcome; "*" stands for a line count that depends on timing).
type fault struct {
	name string

	// Upstream faults: Azure OpenAI's answer to each attempt (retry 0 is the first).
	// These cases share one set of stand-ins and run in parallel.
	reply func(retry int) aoaitest.Reply
	// Faults on the way to a token: inject prepares the stand-ins (a world of the case's
	// own) and returns the app's options and the repair after which the app must
	// answer again.
	inject func(t *testing.T) (app.Options, *world, func())

	opts     stream.Options // the chat handler's, such as shorter timeouts
	complete string         // what POST /chat answers
	streamed string         // what POST /chat/stream answers
	attempts int            // requests Azure OpenAI receives per client request
	// log is the fields of the request's log line besides request_id, route, status
	// and code, which follow from the outcome: key=value, space-separated.
	// $principal stands for the identity's object id.
	log string
	// errorHas is a phrase the log line's error (the full cause) holds.
	errorHas string
}

// always answers every attempt with r.
func always(r aoaitest.Reply) func(int) aoaitest.Reply {
	return func(int) aoaitest.Reply { return r }
}

// first answers the first attempt with r, the retries normally.
func first(r aoaitest.Reply) func(int) aoaitest.Reply {
	return func(retry int) aoaitest.Reply {
		if retry == 0 {
			return r
		}
		return aoaitest.Reply{}
	}
}

var words = []string{"A", " partial", " answer", " that", " goes", " on", " and", " on"}

const missingRole = `missing_role="Cognitive Services OpenAI User"`

// faults is the matrix. The app runs with its defaults (two retries, waits of up to
// 10 s) unless opts says otherwise; retry waits are kept short with retry-after-ms.
var faults = []fault{
	{name: "throttled with Retry-After",
		reply:    always(aoaitest.Reply{Status: 429, RetryAfter: 50 * time.Millisecond}),
		complete: "429 rate_limited retry-after=1", streamed: "429 rate_limited retry-after=1",
		attempts: 3, log: "level=WARN upstream_status=429 upstream_code=429"},
	{name: "throttled once",
		reply:    first(aoaitest.Reply{Status: 429, RetryAfter: 50 * time.Millisecond}),
		complete: "200 answer", streamed: "200 stream", attempts: 2, log: "level=INFO"},
	{name: "throttled for longer than the longest retry wait",
		reply:    always(aoaitest.Reply{Status: 429, RetryAfter: 30 * time.Second}),
		complete: "429 rate_limited retry-after=30", streamed: "429 rate_limited retry-after=30",
		attempts: 1, log: "level=WARN upstream_status=429"},
	{name: "500",
		reply:    always(aoaitest.Reply{Status: 500}),
		complete: "502 upstream_error", streamed: "502 upstream_error",
		attempts: 3, log: "level=ERROR upstream_status=500 upstream_code=500"},
	{name: "500 once",
		reply:    first(aoaitest.Reply{Status: 500}),
		complete: "200 answer", streamed: "200 stream", attempts: 2, log: "level=INFO"},
	{name: "503 with Retry-After",
		reply:    always(aoaitest.Reply{Status: 503, RetryAfter: 50 * time.Millisecond}),
		complete: "502 upstream_error", streamed: "502 upstream_error",
		attempts: 3, log: "level=ERROR upstream_status=503"},
	{name: "upstream says it timed out (408)",
		reply:    always(aoaitest.Reply{Status: 408}),
		complete: "504 upstream_timeout", streamed: "504 upstream_timeout",
		attempts: 3, log: "level=ERROR upstream_status=408"},
	{name: "first token slower than the idle timeout",
		reply:    always(aoaitest.Reply{FirstDelay: 3 * time.Second}),
		opts:     stream.Options{IdleTimeout: 300 * time.Millisecond},
		complete: "504 upstream_timeout", streamed: "504 upstream_timeout",
		attempts: 1, log: "level=ERROR", errorHas: "within the idle timeout"},
	{name: "answer slower than the timeout",
		reply: always(aoaitest.Reply{Deltas: append(words, words...),
			ChunkDelay: 100 * time.Millisecond}),
		opts:     stream.Options{Timeout: 700 * time.Millisecond},
		complete: "504 upstream_timeout", streamed: "200 * lines, then upstream_timeout",
		attempts: 1, log: "level=ERROR", errorHas: "within the timeout"},
	{name: "connection cut before the headers",
		reply:    always(aoaitest.Reply{CutBeforeHeaders: true}),
		complete: "502 upstream_error", streamed: "502 upstream_error",
		attempts: 3, log: "level=ERROR", errorHas: "EOF"},
	{name: "connection cut after two chunks",
		reply:    always(aoaitest.Reply{Deltas: words, CutAfter: 2}),
		complete: "502 upstream_error", streamed: "200 2 lines, then upstream_error",
		attempts: 1, log: "level=ERROR"},
	{name: "malformed chunk after two chunks",
		reply:    always(aoaitest.Reply{Deltas: words, MalformedAfter: 2}),
		complete: "502 upstream_error", streamed: "200 2 lines, then upstream_error",
		attempts: 1, log: "level=ERROR"},
	{name: "prompt filtered",
		reply:    always(aoaitest.Reply{PromptFiltered: true}),
		complete: "400 content_filter", streamed: "400 content_filter",
		attempts: 1, log: "level=WARN upstream_status=400 upstream_code=content_filter"},
	{name: "answer filtered",
		reply:    always(aoaitest.Reply{Deltas: words[:2], AnswerFiltered: true}),
		complete: "400 content_filter", streamed: "200 2 lines, then content_filter",
		attempts: 1, log: "level=WARN finish_reason=content_filter"},
	{name: "identity without the role (403)",
		// What AzureOpenAI.Deny answers, scripted for this case's questions only, so
		// that the next question, from the same identity, is answered.
		reply:    always(aoaitest.Reply{Status: 403, ErrorCode: "PermissionDenied"}),
		complete: "502 upstream_auth", streamed: "502 upstream_auth", attempts: 1,
		log: "level=ERROR upstream_status=403 upstream_code=PermissionDenied " +
			"principal_id=$principal " + missingRole},
	{name: "forged token (401)",
		inject:   injectForgedToken,
		complete: "502 upstream_auth", streamed: "502 upstream_auth", attempts: 1,
		log: "level=ERROR upstream_status=401 principal_id=$principal " + missingRole},
	{name: "expired token (401)",
		inject:   injectExpiredToken,
		complete: "502 upstream_auth", streamed: "502 upstream_auth", attempts: 1,
		log: "level=ERROR upstream_status=401 principal_id=$principal " + missingRole},
	{name: "identity endpoint down",
		inject:   injectIdentityDown,
		complete: "503 credential_unavailable", streamed: "503 credential_unavailable",
		attempts: 0, log: "level=ERROR", errorHas: "ManagedIdentityCredential failed"},
	{name: "identity endpoint failing (500)",
		inject:   injectIdentityFailing,
		complete: "503 credential_unavailable", streamed: "503 credential_unavailable",
		attempts: 0, log: "level=ERROR", errorHas: "500"},
	{name: "azd not signed in",
		inject:   injectAzdSignedOut,
		complete: "503 credential_unavailable", streamed: "503 credential_unavailable",
		attempts: 0, log: "level=ERROR", errorHas: "azd auth login"},
}

func TestFaultMatrix(t *testing.T) {
	checkLeaks(t)

	t.Run("upstream", func(t *testing.T) {
		// The cases run at once, each with an app of its own, whatever -parallel says:
		// most of their time is retry waits.
		w := newWorld(t, true)
		var wg sync.WaitGroup
		for _, f := range faults {
			if f.reply == nil {
				continue
			}
			w.answer(f.name, f.reply)
			wg.Go(func() {
				t.Run(f.name, func(t *testing.T) {
					s := w.serve(t, app.Options{Stream: &f.opts})
					checkFault(t, f, w, s)
				})
			})
		}
		wg.Wait()
	})
	t.Run("credential", func(t *testing.T) {
		for _, f := range faults {
			if f.inject == nil {
				continue
			}
			t.Run(f.name, func(t *testing.T) {
				opts, w, repair := f.inject(t)
				opts.Stream = &f.opts
				s := w.serve(t, opts)
				checkFault(t, f, w, s)
				repair()
				recovers(t, s)
			})
		}
	})
}

// checkFault asks both endpoints a question that meets fault f and checks what the
// client gets, the log line and the upstream attempts, then, for an upstream fault,
// that the next question is answered.
func checkFault(t *testing.T, f fault, w *world, s *service) {
	t.Helper()
	for _, path := range []string{"/chat", "/chat/stream"} {
		route, want := "complete", f.complete
		if path == "/chat/stream" {
			route, want = "stream", f.streamed
		}
		id := fmt.Sprintf("%s-%s", strings.NewReplacer(" ", "-", "(", "", ")", "").Replace(
			f.name), route)
		q := f.name + faultSuffix
		before := w.attempts(q)
		start := time.Now()

		r := s.ask(t, path, id, q)

		took := time.Since(start)
		got := outcome(r)
		if strings.Contains(want, "*") {
			got = lineCount.ReplaceAllString(got, "200 * lines")
		}
		if got != want {
			t.Errorf("POST %s: got %s, want %s\nbody: %s", path, got, want, r.body)
		}
		if n := w.attempts(q) - before; n != f.attempts {
			t.Errorf("POST %s: %d upstream attempts, want %d", path, n, f.attempts)
		}
		if r.header.Get("X-Request-Id") != id {
			t.Errorf("POST %s: X-Request-Id %q, want %q", path, r.header.Get("X-Request-Id"),
				id)
		}
		for _, secret := range []string{"eyJ", "PermissionDenied", "127.0.0.1", "Azure"} {
			if strings.Contains(r.body, secret) {
				t.Errorf("POST %s: the client sees %q: %s", path, secret, r.body)
			}
		}
		checkLogLine(t, f, w, s, path, id, route, got, q)
		t.Logf("POST %s: %s in %v", path, got, took.Round(time.Millisecond))

		if f.reply == nil {
			continue // a fault on the way to a token lasts until its repair
		}
		next := map[string]string{"complete": "200 answer", "stream": "200 stream"}[route]
		if r := s.ask(t, path, id+"-next", f.name+" next"); outcome(r) != next {
			t.Errorf("POST %s after the fault: %s, want %s", path, outcome(r), next)
		}
	}
}

// lineCount finds the number of content lines in an outcome.
var lineCount = regexp.MustCompile(`^200 [1-9][0-9]* lines`)

// checkLogLine checks the chat handler's log line for the request id.
func checkLogLine(t *testing.T, f fault, w *world, s *service, path, id, route, got,
	question string) {
	t.Helper()
	raw, l := s.logs.line(t, "chat request", id)
	status, code := statusAndCode(got)
	want := fmt.Sprintf("route=%s status=%s", route, status)
	if code != "" {
		want += " code=" + code
	}
	want += " " + strings.ReplaceAll(f.log, "$principal", w.id.PrincipalID)
	var gotFields []string
	for _, kv := range splitFields(want) {
		k, _, _ := strings.Cut(kv, "=")
		v := fmt.Sprint(l[k])
		if strings.Contains(v, " ") {
			v = fmt.Sprintf("%q", v)
		}
		gotFields = append(gotFields, k+"="+v)
	}
	if g, wnt := strings.Join(gotFields, " "), strings.Join(splitFields(want), " "); g != wnt {
		t.Errorf("POST %s: log line\n got %s\nwant %s\nline: %s", path, g, wnt, raw)
	}
	cause, _ := l["error"].(string)
	if (code != "") != (cause != "") || !strings.Contains(cause, f.errorHas) {
		t.Errorf("POST %s: log error %q, want the cause of %q holding %q", path, cause,
			code, f.errorHas)
	}
	if strings.Contains(raw, "eyJ") || strings.Contains(raw, question) {
		t.Errorf("POST %s: the log line holds a token or the question: %s", path, raw)
	}
}

// statusAndCode reads the status and the error code (or "") of an outcome.
func statusAndCode(got string) (status, code string) {
	status, rest, _ := strings.Cut(got, " ")
	if _, after, ok := strings.Cut(rest, "then "); ok {
		return status, after // an error line
	}
	if status == "200" {
		return status, ""
	}
	code, _, _ = strings.Cut(rest, " ")
	return status, code
}

// splitFields splits key=value fields at spaces outside double quotes.
func splitFields(s string) []string {
	var out []string
	var b strings.Builder
	quoted := false
	for _, c := range s {
		switch {
		case c == '"':
			quoted = !quoted
		case c == ' ' && !quoted:
			if b.Len() > 0 {
				out = append(out, b.String())
				b.Reset()
			}
			continue
		}
		b.WriteRune(c)
	}
	if b.Len() > 0 {
		out = append(out, b.String())
	}
	return out
}

// recovers checks that, once the fault is repaired, both endpoints answer again within
// a few seconds: the token cache remembers a failure for 2 s, and a bad token until it
// expires.
func recovers(t *testing.T, s *service) {
	t.Helper()
	for _, path := range []string{"/chat", "/chat/stream"} {
		deadline := time.Now().Add(leakWait)
		start := time.Now()
		for n := 0; ; n++ {
			r := s.ask(t, path, fmt.Sprintf("recover-%d", n), "are you back?")
			if r.status == http.StatusOK {
				t.Logf("POST %s: answered %v after the repair", path,
					time.Since(start).Round(time.Millisecond))
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("POST %s: still %s %v after the repair", path, outcome(r), leakWait)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// injectForgedToken gives the app a credential of the test's own that hands out
// tokens signed with a key other than the issuer's, until the repair; a forged token
// cannot come from the real chain. Each forged token is valid for a second, after which
// the app's token cache asks again.
func injectForgedToken(t *testing.T) (app.Options, *world, func()) {
	w := newWorld(t, true)
	cred := &forgingCredential{id: w.id}
	cred.forge.Store(true)
	return app.Options{Credential: cred}, w, func() { cred.forge.Store(false) }
}

// injectExpiredToken makes the identity endpoint issue tokens that have already
// expired (MSAL caches no token that expires within 5 minutes, so each one reaches
// the app's token cache, which asks again for the next request).
func injectExpiredToken(t *testing.T) (app.Options, *world, func()) {
	w := newWorld(t, true)
	w.id.SetLifetime(0)
	return app.Options{}, w, func() { w.id.SetLifetime(time.Hour) }
}

// injectIdentityDown takes the identity endpoint down (connections refused) before
// the first token. The chain is narrowed to the production sources, as in Azure.
func injectIdentityDown(t *testing.T) (app.Options, *world, func()) {
	w := newWorld(t, true)
	e := newIdentityEndpoint(t, w.id)
	t.Setenv("AZURE_TOKEN_CREDENTIALS", "prod")
	e.down()
	return app.Options{}, w, func() { e.up(t) }
}

// injectIdentityFailing makes the identity endpoint answer 500 to every token request.
func injectIdentityFailing(t *testing.T) (app.Options, *world, func()) {
	w := newWorld(t, true)
	t.Setenv("AZURE_TOKEN_CREDENTIALS", "prod")
	w.id.FailNext(1000, http.StatusInternalServerError)
	return app.Options{}, w, func() { w.id.FailNext(0, 0) }
}

// injectAzdSignedOut is a laptop (no managed identity) whose developer is signed out
// of azd.
func injectAzdSignedOut(t *testing.T) (app.Options, *world, func()) {
	w := newWorld(t, false)
	azd := aoaitest.NewAzd(t)
	azd.SignOut()
	return app.Options{}, w, azd.SignIn
}

// forgingCredential hands out tokens for the identity's principal, forged (signed
// with another key) while forge is set.
type forgingCredential struct {
	id    *aoaitest.Identity
	forge atomic.Bool
}

func (c *forgingCredential) GetToken(context.Context, policy.TokenRequestOptions) (
	azcore.AccessToken, error) {
	tok := c.id.Token(c.id.PrincipalID, time.Hour)
	if !c.forge.Load() {
		return azcore.AccessToken{Token: tok, ExpiresOn: time.Now().Add(time.Hour)}, nil
	}
	signed := tok[:strings.LastIndexByte(tok, '.')]
	mac := hmac.New(sha256.New, []byte("not the issuer's key"))
	mac.Write([]byte(signed))
	forged := signed + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
	return azcore.AccessToken{Token: forged, ExpiresOn: time.Now().Add(time.Second)}, nil
}

func TestClientLeavingMidStreamCancelsUpstream(t *testing.T) {
	checkLeaks(t)
	w := newWorld(t, true)
	w.answer("slow", always(aoaitest.Reply{Deltas: append(words, words...),
		ChunkDelay: 100 * time.Millisecond}))
	s := w.serve(t, app.Options{})

	ctx, cancel := context.WithCancel(context.Background())
	body := strings.NewReader(`{"messages":[{"role":"user","content":"slow fault"}]}`)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.url+"/chat/stream", body)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Request-Id", "leaving")
	resp, err := s.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	line := make([]byte, 1)
	if _, err := resp.Body.Read(line); err != nil { // the stream has started
		t.Fatal(err)
	}
	cancel()
	resp.Body.Close()

	_, l := s.logs.line(t, "chat request", "leaving")
	got := fmt.Sprintf("status=%v code=%v", l["status"], l["code"])
	if want := "status=499 code=client_closed"; got != want {
		t.Errorf("log line: %s, want %s", got, want)
	}
	reqs := w.aoai.Requests()
	if len(reqs) != 1 {
		t.Fatalf("Azure OpenAI got %d requests, want 1", len(reqs))
	}
	select {
	case <-reqs[0].Done:
	case <-time.After(leakWait):
		t.Fatalf("Azure OpenAI still streams %v after the client left", leakWait)
	}
	if r := w.aoai.Requests()[0]; !r.Canceled {
		t.Errorf("Azure OpenAI finished its answer (status %d): the upstream request was "+
			"not cancelled", r.Status)
	}
	if r := s.ask(t, "/chat/stream", "after", "hi"); outcome(r) != "200 stream" {
		t.Errorf("the next request: %s", outcome(r))
	}
}
