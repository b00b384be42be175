package reliability

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aoaiblocks/securechat/aoaitest"
	"github.com/aoaiblocks/securechat/chatproto"
	"github.com/aoaiblocks/securechat/examples/chatapp/app"
	"github.com/aoaiblocks/securechat/internal/testlog"
	"github.com/aoaiblocks/securechat/keyless"
)

// checkLeaks notes the goroutines running now and, when t and its cleanups are done,
// waits up to leakWait for every goroutine started since to end, failing t with the
// stacks of those that do not. Call it first in a test, so that its check runs after
// every other cleanup (servers closed, stand-ins stopped). The guard's proxy trap,
// which serves the whole process once the first aoaitest.Guard has started it, is not
// a leak.
func checkLeaks(t *testing.T) {
	t.Helper()
	before := goroutines()
	t.Cleanup(func() {
		deadline := time.Now().Add(leakWait)
		for {
			var left []string
			for id, stack := range goroutines() {
				if _, ok := before[id]; !ok && !strings.Contains(stack, "aoaitest.startTrap") {
					left = append(left, stack)
				}
			}
			if len(left) == 0 {
				return
			}
			if time.Now().After(deadline) {
				t.Errorf("%d goroutines started by the test still run %v after it:\n\n%s",
					len(left), leakWait, strings.Join(left, "\n\n"))
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
}

// goroutines returns the stack of every goroutine but the caller's, by goroutine id.
func goroutines() map[string]string {
	buf := make([]byte, 1<<16)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	out := map[string]string{}
	for i, stack := range strings.Split(string(buf), "\n\n") {
		id, _, _ := strings.Cut(strings.TrimPrefix(stack, "goroutine "), " ")
		if i > 0 { // the first is the caller's
			out[id] = stack
		}
	}
	return out
}

// leakWait bounds the wait for goroutines and connections to end.
const leakWait = 5 * time.Second

// world is the stand-ins one test shares: the loopback guard, a managed identity
// endpoint in the process environment (or none), and Azure OpenAI, whose answers each
// case scripts under a name of its own.
type world struct {
	id   *aoaitest.Identity
	aoai *aoaitest.AzureOpenAI
	hc   *http.Client // the apps' client to Azure OpenAI

	mu      sync.Mutex
	replies map[string]func(retry int) aoaitest.Reply // by case name
}

// newWorld starts the stand-ins for t. With managedIdentity, the process environment
// advertises the identity endpoint, as Azure Container Apps does; without, nothing
// does, as on a laptop. When t ends it checks, before stopping Azure OpenAI, that no
// connection to it is left open once the apps' idle connections are closed.
func newWorld(t *testing.T, managedIdentity bool) *world {
	t.Helper()
	aoaitest.Guard(t)
	w := &world{replies: map[string]func(int) aoaitest.Reply{}}
	w.id = aoaitest.NewIdentity()
	t.Cleanup(w.id.Close)
	if managedIdentity {
		w.id.Setenv(t)
	}
	w.aoai = aoaitest.NewAzureOpenAI()
	w.aoai.Script = w.script
	t.Cleanup(w.aoai.Close)
	w.hc = w.aoai.Client()
	t.Cleanup(func() {
		w.hc.CloseIdleConnections()
		deadline := time.Now().Add(leakWait)
		for w.aoai.OpenConnections() > 0 && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if n := w.aoai.OpenConnections(); n > 0 {
			t.Errorf("%d connections to Azure OpenAI still open %v after the test "+
				"(%d opened in all)", n, leakWait, w.aoai.TLSConnections())
		}
	})
	return w
}

// faultSuffix ends the question of a request that gets a case's scripted answer.
const faultSuffix = " fault"

// script answers "<name> fault" with the reply registered under name, for attempt
// retry (openai-go numbers its attempts in X-Stainless-Retry-Count), and anything else
// with the default answer.
func (w *world) script(r *aoaitest.ChatRequest) aoaitest.Reply {
	last := r.Messages[len(r.Messages)-1].Content
	name, ok := strings.CutSuffix(last, faultSuffix)
	if !ok {
		return aoaitest.Reply{}
	}
	w.mu.Lock()
	reply := w.replies[name]
	w.mu.Unlock()
	if reply == nil {
		return aoaitest.Reply{}
	}
	retry, _ := strconv.Atoi(r.Header.Get("X-Stainless-Retry-Count"))
	return reply(retry)
}

// answer registers the replies to the case name.
func (w *world) answer(name string, reply func(retry int) aoaitest.Reply) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.replies[name] = reply
}

// attempts counts the requests Azure OpenAI received with the question q, refused
// ones included (their messages are not decoded, so the body is searched).
func (w *world) attempts(q string) int {
	quoted, _ := json.Marshal(q)
	n := 0
	for _, r := range w.aoai.Requests() {
		if bytes.Contains(r.Body, quoted) {
			n++
		}
	}
	return n
}

// service is the app under test, served on loopback.
type service struct {
	url    string
	client *http.Client
	logs   *logBuffer
}

// serve starts the app with opts, filling in what every test shares: the
// configuration for w's Azure OpenAI (and the user-assigned identity when the
// environment advertises the endpoint), w's client to it and a JSON logger.
func (w *world) serve(t *testing.T, opts app.Options) *service {
	t.Helper()
	if opts.Config == (keyless.Config{}) {
		opts.Config = keyless.Config{Endpoint: w.aoai.URL, Deployment: "chat"}
	}
	opts.HTTPClient = w.hc
	logs := &logBuffer{}
	opts.Logger = slog.New(slog.NewJSONHandler(logs, nil))
	a, err := app.New(opts)
	if err != nil {
		t.Fatalf("app.New: %v", err)
	}
	srv := httptest.NewServer(a)
	t.Cleanup(srv.Close)
	return &service{url: srv.URL, client: srv.Client(), logs: logs}
}

// response is what a client got.
type response struct {
	status int
	header http.Header
	body   string
}

// send sends a request to the service and reads the whole response.
func (s *service) send(t *testing.T, req *http.Request) response {
	t.Helper()
	r, err := s.do(req)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func (s *service) do(req *http.Request) (response, error) {
	resp, err := s.client.Do(req)
	if err != nil {
		return response{}, fmt.Errorf("%s %s: %w", req.Method, req.URL.Path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return response{}, fmt.Errorf("%s %s: reading the body: %w", req.Method,
			req.URL.Path, err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: string(b)}, nil
}

// ask posts a one-question conversation to path with the request id id.
func (s *service) ask(t *testing.T, path, id, question string) response {
	t.Helper()
	r, err := s.try(path, id, question)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// try is ask for goroutines other than the test's: it returns the error.
func (s *service) try(path, id, question string) (response, error) {
	body, _ := json.Marshal(chatproto.Request{Messages: []chatproto.Message{
		{Role: chatproto.RoleUser, Content: question}}})
	req, err := http.NewRequest(http.MethodPost, s.url+path, bytes.NewReader(body))
	if err != nil {
		return response{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Request-Id", id)
	return s.do(req)
}

// outcome describes a response in a few words: "STATUS CODE" for an error body (with
// " retry-after=N" when the response says when to retry), "200 answer" for a complete
// answer, "200 stream" for a stream that ended with its last line, and "200 N lines,
// then CODE" for a stream that ended with an error line after N lines of content.
func outcome(r response) string {
	if r.status != http.StatusOK {
		var er chatproto.ErrorResponse
		code := "-"
		if json.Unmarshal([]byte(r.body), &er) == nil && er.Error != nil {
			code = er.Error.Code
		}
		s := fmt.Sprintf("%d %s", r.status, code)
		if ra := r.header.Get("Retry-After"); ra != "" {
			s += " retry-after=" + ra
		}
		return s
	}
	if !strings.Contains(r.header.Get("Content-Type"), "jsonl") {
		var c chatproto.Completion
		if json.Unmarshal([]byte(r.body), &c) != nil || c.Message.Content == "" {
			return "200 but no answer: " + r.body
		}
		return "200 answer"
	}
	lines := strings.Split(strings.TrimSuffix(r.body, "\n"), "\n")
	last := lines[len(lines)-1]
	var er chatproto.ErrorResponse
	if json.Unmarshal([]byte(last), &er) == nil && er.Error != nil {
		return fmt.Sprintf("200 %d lines, then %s", len(lines)-2, er.Error.Code)
	}
	if !strings.Contains(last, `"finish_reason"`) {
		return "200 stream without its last line"
	}
	return "200 stream"
}

// logBuffer collects the app's JSON log lines.
type logBuffer struct{ testlog.Buffer }

// line returns the raw and the decoded log line with message msg for the request id,
// waiting a little for it: the handler writes it as the response ends.
func (l *logBuffer) line(t *testing.T, msg, id string) (string, map[string]any) {
	t.Helper()
	deadline := time.Now().Add(time.Second)
	for {
		all := l.String()
		for _, raw := range strings.Split(all, "\n") {
			var m map[string]any
			if json.Unmarshal([]byte(raw), &m) == nil && m["msg"] == msg &&
				m["request_id"] == id {
				return raw, m
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %q log line for request %s in:\n%s", msg, id, all)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// identityEndpoint stands between the app and an aoaitest.Identity as the platform's
// endpoint would: on loopback, and able to go down (connections refused) and come back
// on the same address.
type identityEndpoint struct {
	url    string // IDENTITY_ENDPOINT
	addr   string
	target *url.URL

	mu  sync.Mutex
	srv *http.Server
}

// newIdentityEndpoint starts an endpoint for id and points IDENTITY_ENDPOINT at it for
// the rest of t.
func newIdentityEndpoint(t *testing.T, id *aoaitest.Identity) *identityEndpoint {
	t.Helper()
	target, err := url.Parse(id.URL)
	if err != nil {
		t.Fatal(err)
	}
	e := &identityEndpoint{addr: "127.0.0.1:0", target: target}
	e.up(t)
	e.url = "http://" + e.addr + target.Path
	t.Setenv("IDENTITY_ENDPOINT", e.url)
	t.Cleanup(e.down)
	return e
}

// up starts serving on the endpoint's address.
func (e *identityEndpoint) up(t *testing.T) {
	t.Helper()
	ln, err := net.Listen("tcp", e.addr)
	if err != nil {
		t.Fatalf("identity endpoint: %v", err)
	}
	proxy := httputil.NewSingleHostReverseProxy(e.target)
	proxy.Transport = &http.Transport{DisableKeepAlives: true} // to 127.0.0.1 only
	srv := &http.Server{Handler: proxy}
	e.mu.Lock()
	e.addr, e.srv = ln.Addr().String(), srv
	e.mu.Unlock()
	go srv.Serve(ln)
}

// down closes the endpoint: its listener and every connection.
func (e *identityEndpoint) down() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.srv != nil {
		e.srv.Close()
		e.srv = nil
	}
}
