package reliability

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aoaiblocks/securechat/aoaitest"
	"github.com/aoaiblocks/securechat/examples/chatapp/app"
)

// How the lifetimes below are chosen. Three caches sit between a request and the
// identity endpoint, and only one of them may answer:
//
//   - MSAL, inside azidentity's ManagedIdentityCredential, caches managed identity
//     tokens process-wide and serves one until 5 minutes before it expires. A token
//     that lives less than 5 minutes is never served from it, so with the lifetimes
//     here every refresh of the app's cache reaches the identity endpoint, and
//     Identity.Calls counts them.
//   - keyless's token cache (the app shares one between its client and its readiness
//     probe) refreshes a token in the background from halfway through its life (for
//     lives under 10 minutes; 5 minutes before expiry for longer ones), keeps handing
//     out the current token meanwhile, and stops using it a quarter of its life before
//     it expires (30 s for lives over 2 minutes). A failed refresh is remembered for
//     2 s; the next call after that tries again.
//   - The identity stand-in writes expires_on in whole seconds, so a token asked for
//     with lifetime L lives between L-1 and L seconds.

// tokenOf returns the bearer token of a request Azure OpenAI received.
func tokenOf(r *aoaitest.ChatRequest) string {
	tok, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	return tok
}

// expiryOf reads the exp claim of a token, without verifying it.
func expiryOf(t *testing.T, token string) time.Time {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT: %.20s...", token)
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var c aoaitest.Claims
	if err := json.Unmarshal(payload, &c); err != nil {
		t.Fatal(err)
	}
	return time.Unix(c.Expires, 0)
}

// tokensSeen returns the distinct tokens Azure OpenAI received, in order, and fails t
// for any request it refused.
func tokensSeen(t *testing.T, w *world) []string {
	t.Helper()
	var out []string
	seen := map[string]bool{}
	for _, r := range w.aoai.Requests() {
		<-r.Done
	}
	for _, r := range w.aoai.Requests() {
		if r.Status != http.StatusOK {
			t.Errorf("Azure OpenAI answered %d to a request (%s)", r.Status, r.Path)
		}
		if tok := tokenOf(r); !seen[tok] {
			seen[tok] = true
			out = append(out, tok)
		}
	}
	return out
}

// questioner asks question after question every interval on the complete endpoint
// until stop is closed, and reports the outcome of each that was not answered.
func questioner(s *service, interval time.Duration, stop <-chan struct{}) (
	asked func() int, failures <-chan string) {
	fail := make(chan string, 1000)
	count := make(chan int, 1)
	go func() {
		n := 0
		defer func() { count <- n; close(fail) }()
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			n++
			r, err := s.try("/chat", fmt.Sprintf("q-%d", n), "how are you?")
			switch {
			case err != nil:
				fail <- err.Error()
			case outcome(r) != "200 answer":
				fail <- fmt.Sprintf("question %d at %s: %s", n,
					time.Now().Format("15:04:05.000"), outcome(r))
			}
		}
	}()
	return func() int { return <-count }, fail
}

func TestShortLivedTokensAreRefreshedAcrossRequestsAndDuringALongStream(t *testing.T) {
	checkLeaks(t)
	w := newWorld(t, true)
	// Tokens live 2 to 3 s: the app refreshes each after 1 to 1.5 s, and stops using
	// it 0.5 to 0.75 s before it expires, which leaves a slow request time to reach
	// Azure OpenAI with a token still valid.
	w.id.SetLifetime(3 * time.Second)
	long := []string{"A"}
	for range 42 {
		long = append(long, " long")
	}
	w.answer("long", always(aoaitest.Reply{Deltas: long, ChunkDelay: 100 * time.Millisecond}))
	s := w.serve(t, app.Options{})
	if r := s.ask(t, "/chat", "first", "hi"); outcome(r) != "200 answer" {
		t.Fatalf("first question: %s", outcome(r))
	}

	// A stream of about 4.5 s, longer than any token lives, and questions every 50 ms
	// while it runs.
	stop := make(chan struct{})
	asked, failures := questioner(s, 50*time.Millisecond, stop)
	r := s.ask(t, "/chat/stream", "long", "long"+faultSuffix)
	ended := time.Now()
	close(stop)
	n := asked()
	for f := range failures {
		t.Error(f)
	}

	if got := outcome(r); got != "200 stream" {
		t.Errorf("the long stream: %s", got)
	}
	if c := strings.Count(r.body, "\n"); c != len(long)+2 {
		t.Errorf("the long stream has %d lines, want %d", c, len(long)+2)
	}
	var streamToken string
	for _, req := range w.aoai.Requests() {
		if strings.Contains(string(req.Body), "long"+faultSuffix) {
			streamToken = tokenOf(req)
		}
	}
	if exp := expiryOf(t, streamToken); !exp.Before(ended) {
		t.Errorf("the stream's token expires at %v, after the stream ended (%v): the "+
			"stream did not outlive its token", exp, ended)
	}
	tokens := tokensSeen(t, w)
	// 4.5 s of tokens refreshed every 1.5 s at most: at least 3.
	if len(tokens) < 3 || w.id.Calls() < 3 {
		t.Errorf("%d questions during the stream used %d tokens from %d token requests, "+
			"want at least 3 of each", n, len(tokens), w.id.Calls())
	}
	t.Logf("%d questions during a %d-line stream; %d tokens, %d token requests", n,
		len(long)+2, len(tokens), w.id.Calls())
}

func TestIdentityFailingAtRefreshFailsNoRequest(t *testing.T) {
	checkLeaks(t)
	w := newWorld(t, true)
	// Tokens live 11 to 12 s: the refresh starts after 5.5 to 6 s and fails; the
	// failure is remembered 2 s; the next call, 7.5 to 8 s in, refreshes again, while
	// the first token is still in use (until 8.25 to 9 s).
	w.id.SetLifetime(12 * time.Second)
	s := w.serve(t, app.Options{})
	if r := s.ask(t, "/chat", "first", "hi"); outcome(r) != "200 answer" {
		t.Fatalf("first question: %s", outcome(r))
	}
	// 400 is not retried by the managed identity credential, so the failure reaches
	// the app's token cache (503 would be retried, and hidden, inside azidentity).
	w.id.FailNext(1, http.StatusBadRequest)

	stop := make(chan struct{})
	asked, failures := questioner(s, 50*time.Millisecond, stop)
	deadline := time.Now().Add(15 * time.Second)
	for w.id.Calls() < 3 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond) // questions with the new token
	close(stop)
	n := asked()
	for f := range failures {
		t.Error(f)
	}

	// The first token, the failed refresh, the refresh that worked.
	if c := w.id.Calls(); c != 3 {
		t.Errorf("%d token requests, want 3", c)
	}
	if tokens := tokensSeen(t, w); len(tokens) != 2 {
		t.Errorf("%d questions used %d tokens, want 2", n+1, len(tokens))
	}
	t.Logf("%d questions answered across the failed refresh", n)
}
