package interop

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"iter"
	"log/slog"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/aoaiblocks/securechat/aoaitest"
	"github.com/aoaiblocks/securechat/chatproto"
	"github.com/aoaiblocks/securechat/examples/chatapp/app"
	"github.com/aoaiblocks/securechat/keyless"
	"github.com/aoaiblocks/securechat/stream"
)

// clientTimeout bounds one run of client.mjs; the script gives up a little
// earlier by itself.
const clientTimeout = 45 * time.Second

// officialClient is the npm package the tests drive, as package.json pins it.
const officialClient = "@microsoft/ai-chat-protocol"

// inCI reports whether the tests run in CI (CI=true), where a missing tool
// fails a test instead of skipping it.
func inCI() bool {
	ci, _ := strconv.ParseBool(os.Getenv("CI"))
	return ci
}

// requireNode finds node and the installed npm packages, or skips the test
// (fails it in CI) saying how to get them.
func requireNode(t *testing.T) string {
	t.Helper()
	missing := func(what string) {
		t.Helper()
		const enable = "install Node.js 20 or later and run `npm ci` in interop/"
		if inCI() {
			t.Fatalf("%s (CI=true, so this fails instead of skipping); %s", what, enable)
		}
		t.Skipf("%s; to run this test, %s", what, enable)
	}
	node, err := exec.LookPath("node")
	if err != nil {
		missing("no node on PATH")
	}
	pkg := filepath.Join("node_modules", filepath.FromSlash(officialClient), "package.json")
	if _, err := os.Stat(pkg); err != nil {
		missing(officialClient + " is not installed in interop/node_modules")
	}
	return node
}

// serveApp serves the example app's real handler on a free loopback port.
// Chat requests take the production path: the keyless credential chain gets
// a token from an aoaitest.Identity (found through IDENTITY_ENDPOINT, as in
// Azure Container Apps) and the openai-go client sends it to an
// aoaitest.AzureOpenAI that answers with script.
//
// With wrap nil, the app builds its Azure OpenAI model itself. Otherwise the
// test builds the same model (keyless.NewClient, stream.NewAzureModel) and the
// app uses wrap(model).
//
// It calls aoaitest.Guard first, so the test cannot leave loopback or read the
// developer's Azure sign-in. Everything stops when the test ends.
func serveApp(t *testing.T, script func(*aoaitest.ChatRequest) aoaitest.Reply,
	wrap func(stream.Model) stream.Model) (endpoint string, aoai *aoaitest.AzureOpenAI) {
	t.Helper()
	aoaitest.Guard(t)

	id := aoaitest.NewIdentity()
	t.Cleanup(id.Close)
	aoai = aoaitest.NewAzureOpenAI()
	aoai.Script = script
	t.Cleanup(aoai.Close)

	// azidentity reads the managed identity variables from the process
	// environment only; Guard restores it when the test ends.
	id.Setenv(t)
	t.Setenv("AZURE_OPENAI_ENDPOINT", aoai.URL)
	t.Setenv("AZURE_OPENAI_CHAT_DEPLOYMENT", "interop-chat")
	cfg, err := keyless.LoadConfig(nil)
	if err != nil {
		t.Fatalf("interop: configuration: %v", err)
	}
	opts := app.Options{
		Config:     cfg,
		HTTPClient: aoai.Client(),
		Logger:     slog.New(slog.NewTextHandler(t.Output(), nil)),
	}
	if wrap != nil {
		client, err := keyless.NewClient(cfg, &keyless.ClientOptions{HTTPClient: aoai.Client()})
		if err != nil {
			t.Fatalf("interop: keyless.NewClient: %v", err)
		}
		opts.Model = wrap(stream.NewAzureModel(client, cfg.Deployment, nil))
	}
	a, err := app.New(opts)
	if err != nil {
		t.Fatalf("interop: app.New: %v", err)
	}

	srv := httptest.NewServer(a)
	t.Cleanup(srv.Close)
	return srv.URL + "/chat", aoai
}

// clientError is what the official client threw.
type clientError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// completion is a complete answer as the official client returned it.
type completion struct {
	Role         string          `json:"role"`
	Content      string          `json:"content"`
	Context      json.RawMessage `json:"context"`
	SessionState json.RawMessage `json:"sessionState"`
	Error        *clientError    `json:"error"`
}

// streamed is a streamed answer as the official client's iterator yielded it.
type streamed struct {
	Deltas       []string          `json:"deltas"`
	Roles        []string          `json:"roles"`
	Contexts     []json.RawMessage `json:"contexts"`
	SessionState json.RawMessage   `json:"sessionState"`
	Content      string            `json:"content"`
	Error        *clientError      `json:"error"`
}

// exchange is one question asked both ways.
type exchange struct {
	Complete completion `json:"complete"`
	Streamed streamed   `json:"streamed"`
}

// result is what client.mjs prints.
type result struct {
	Client string     `json:"client"`
	Node   string     `json:"node"`
	Turns  []exchange `json:"turns"`
	exchange
}

// runClient runs one scenario of client.mjs against endpoint.
func runClient(t *testing.T, scenario, endpoint string, args ...string) result {
	t.Helper()
	node := requireNode(t)
	ctx, cancel := context.WithTimeout(t.Context(), clientTimeout)
	defer cancel()

	cmd := exec.CommandContext(ctx, node,
		append([]string{"client.mjs", scenario, endpoint}, args...)...)
	// The client honours the proxy variables, which the guard points at its
	// trap: loopback goes direct, anything else still ends in the trap.
	cmd.Env = append(os.Environ(),
		"NO_PROXY=127.0.0.1,localhost,::1", "no_proxy=127.0.0.1,localhost,::1",
		"INTEROP_DEADLINE_MS="+strconv.Itoa(int((clientTimeout-5*time.Second)/time.Millisecond)))
	cmd.WaitDelay = 5 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("interop: client.mjs %s did not finish in %v\nstderr:\n%s",
			scenario, clientTimeout, stderr.String())
	}
	if err != nil {
		t.Fatalf("interop: client.mjs %s: %v\nstderr:\n%s", scenario, err, stderr.String())
	}

	var r result
	if err := json.Unmarshal(stdout.Bytes(), &r); err != nil {
		t.Fatalf("interop: client.mjs %s printed no result: %v\nstdout:\n%s\nstderr:\n%s",
			scenario, err, stdout.String(), stderr.String())
	}
	t.Logf("%s on Node.js %s: %s", r.Client, r.Node, bytes.TrimSpace(stdout.Bytes()))
	return r
}

// sessionState is what client.mjs sends with every request.
const sessionState = `{"interop":true,"turn":["a",1]}`

// userTurns counts the user messages of a request.
func userTurns(r *aoaitest.ChatRequest) (n int, last string) {
	for _, m := range r.Messages {
		if m.Role == "user" {
			n++
			last = m.Content
		}
	}
	return n, last
}

// checkAnswer checks an answer asked both ways: the same content, the streamed
// deltas joined equal to the complete answer, the session state handed back.
func checkAnswer(t *testing.T, name string, x exchange, want string) {
	t.Helper()
	c, s := x.Complete, x.Streamed
	if c.Error != nil || s.Error != nil {
		t.Fatalf("%s: the client threw: complete %+v, streamed %+v", name, c.Error, s.Error)
	}
	if c.Role != "assistant" || c.Content != want {
		t.Errorf("%s: complete answer = %s %q, want assistant %q", name, c.Role, c.Content, want)
	}
	if joined := strings.Join(s.Deltas, ""); joined != c.Content {
		t.Errorf("%s: streamed deltas joined = %q, complete answer %q", name, joined, c.Content)
	}
	if len(s.Deltas) < 2 {
		t.Errorf("%s: %d deltas, want the answer in pieces", name, len(s.Deltas))
	}
	if diff := cmp.Diff([]string{"assistant"}, s.Roles); diff != "" {
		t.Errorf("%s: delta roles (-want +got):\n%s", name, diff)
	}
	for what, got := range map[string]json.RawMessage{
		"complete": c.SessionState, "streamed": s.SessionState,
	} {
		if !jsonEqual(t, got, []byte(sessionState)) {
			t.Errorf("%s: %s answer's sessionState = %s, want %s", name, what, got, sessionState)
		}
	}
	if len(s.Contexts) == 0 || finishReason(s.Contexts[len(s.Contexts)-1]) != "stop" {
		t.Errorf("%s: last streamed context %s, want finish_reason stop", name, s.Contexts)
	}
	if finishReason(c.Context) != "stop" {
		t.Errorf("%s: complete answer's context %s, want finish_reason stop", name, c.Context)
	}
}

func finishReason(ctx json.RawMessage) string {
	var c struct {
		FinishReason string `json:"finish_reason"`
	}
	_ = json.Unmarshal(ctx, &c)
	return c.FinishReason
}

func jsonEqual(t *testing.T, a, b []byte) bool {
	t.Helper()
	var va, vb any
	if json.Unmarshal(a, &va) != nil || json.Unmarshal(b, &vb) != nil {
		return false
	}
	return cmp.Equal(va, vb)
}

func TestOfficialClientHoldsATwoTurnConversation(t *testing.T) {
	requireNode(t)
	answer := func(turn int, question string) string {
		return fmt.Sprintf("Answer %d, keyless as ever: you asked %q.", turn, question)
	}
	endpoint, aoai := serveApp(t, func(r *aoaitest.ChatRequest) aoaitest.Reply {
		return aoaitest.Text(answer(userTurns(r)))
	}, nil)

	r := runClient(t, "conversation", endpoint)

	if len(r.Turns) != 2 {
		t.Fatalf("client.mjs reported %d turns, want 2", len(r.Turns))
	}
	checkAnswer(t, "turn 1", r.Turns[0], answer(1, "What is keyless auth?"))
	checkAnswer(t, "turn 2", r.Turns[1], answer(2, "And how does the app get its token?"))

	// Each turn was asked twice (complete, streamed); the second with history.
	var got []string
	for _, req := range aoai.Requests() {
		var convo []string
		for _, m := range req.Messages {
			if m.Role != "system" {
				convo = append(convo, m.Role)
			}
		}
		got = append(got, strings.Join(convo, ","))
	}
	want := []string{"user", "user", "user,assistant,user", "user,assistant,user"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("requests Azure OpenAI saw (-want +got):\n%s", diff)
	}
}

func TestOfficialClientThrowsOurErrorCode(t *testing.T) {
	requireNode(t)
	endpoint, aoai := serveApp(t, nil, nil)

	r := runClient(t, "rejected", endpoint)

	for what, e := range map[string]*clientError{
		"complete": r.Complete.Error, "streamed": r.Streamed.Error,
	} {
		if e == nil || e.Code != stream.CodeSystemMessageNotAllowed || e.Message == "" {
			t.Errorf("%s: the client threw %+v, want code %s with a message",
				what, e, stream.CodeSystemMessageNotAllowed)
		}
	}
	if len(r.Streamed.Deltas) > 0 {
		t.Errorf("the rejected stream yielded deltas: %q", r.Streamed.Deltas)
	}
	if n := len(aoai.Requests()); n != 0 {
		t.Errorf("Azure OpenAI got %d requests for a rejected one, want 0", n)
	}
}

func TestOfficialClientIteratorThrowsOnAFaultMidStream(t *testing.T) {
	requireNode(t)
	endpoint, aoai := serveApp(t, func(*aoaitest.ChatRequest) aoaitest.Reply {
		return aoaitest.Reply{
			Deltas:   []string{"Once", " upon", " a", " time"},
			CutAfter: 2, // the connection to Azure OpenAI breaks after " upon"
		}
	}, nil)

	r := runClient(t, "fault", endpoint)

	s := r.Streamed
	if diff := cmp.Diff([]string{"Once", " upon"}, s.Deltas); diff != "" {
		t.Errorf("deltas before the fault (-want +got):\n%s", diff)
	}
	if s.Error == nil || s.Error.Code != stream.CodeUpstreamError {
		t.Errorf("the iterator threw %+v, want code %s", s.Error, stream.CodeUpstreamError)
	}
	if n := len(aoai.Requests()); n != 1 {
		t.Errorf("Azure OpenAI got %d requests, want 1 (no retry after the stream began)", n)
	}
}

// fileBytes is the content client.mjs attaches: size bytes of a fixed pattern.
func fileBytes(size int) []byte {
	b := make([]byte, size)
	for i := range b {
		b[i] = byte((i*7 + 3) % 251)
	}
	return b
}

// fileNotes is a Model that records the files of each request and tells the
// model about them in the text, "[file: TYPE, N bytes]" after the message's
// content. stream.AzureModel sends the text of messages only (see the BUG
// note in package stream), so without it the scripted reply could not say
// what the server received.
type fileNotes struct {
	next stream.Model
	mu   sync.Mutex
	seen []chatproto.File
}

func (f *fileNotes) Stream(ctx context.Context, req *stream.Request,
) iter.Seq2[stream.Delta, error] {
	noted := *req
	noted.Messages = make([]chatproto.Message, len(req.Messages))
	for i, m := range req.Messages {
		for _, file := range m.Files {
			f.mu.Lock()
			f.seen = append(f.seen, file)
			f.mu.Unlock()
			m.Content += fmt.Sprintf("\n[file: %s, %d bytes]", file.ContentType, len(file.Data))
		}
		m.Files = nil
		noted.Messages[i] = m
	}
	return f.next.Stream(ctx, &noted)
}

func (f *fileNotes) files() []chatproto.File {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]chatproto.File(nil), f.seen...)
}

var fileNote = regexp.MustCompile(`\[file: ([^,\]]+), (\d+) bytes\]`)

func TestOfficialClientSendsAFileTheServerReceives(t *testing.T) {
	requireNode(t)
	const contentType, size = "image/png", 1500
	notes := &fileNotes{}
	endpoint, _ := serveApp(t, func(r *aoaitest.ChatRequest) aoaitest.Reply {
		_, last := userTurns(r)
		m := fileNote.FindStringSubmatch(last)
		if m == nil {
			return aoaitest.Text("I see no file.")
		}
		return aoaitest.Text(fmt.Sprintf("You attached %s, %s bytes.", m[1], m[2]))
	}, func(m stream.Model) stream.Model {
		notes.next = m
		return notes
	})

	r := runClient(t, "file", endpoint, contentType, strconv.Itoa(size))

	want := fmt.Sprintf("You attached %s, %d bytes.", contentType, size)
	checkAnswer(t, "file", r.exchange, want)
	files := notes.files()
	if len(files) != 2 {
		t.Fatalf("the server received %d files, want 2 (one per request)", len(files))
	}
	for i, f := range files {
		if f.ContentType != contentType || !bytes.Equal(f.Data, fileBytes(size)) {
			t.Errorf("file %d: %s, %d bytes, content as sent: %v; want %s, %d bytes",
				i, f.ContentType, len(f.Data), bytes.Equal(f.Data, fileBytes(size)),
				contentType, size)
		}
	}
}
