package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/aoaiblocks/securechat/chatproto"
	"github.com/aoaiblocks/securechat/examples/chatapp/app"
	"github.com/aoaiblocks/securechat/internal/testlog"
	"github.com/aoaiblocks/securechat/stream"
)

// The tests in this file build the command and run it as a subprocess, the
// way a developer and the container do. Every subprocess listens on loopback
// and gets a clean environment: a fresh HOME, an empty PATH, no AZURE_*
// variable, and a working directory without any .azure folder.

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
	buildDir  string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// binary builds the command once per test run and returns its path.
func binary(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds and runs the command; skipped with -short")
	}
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "chatapp-test-")
		if buildErr != nil {
			return
		}
		goTool, err := exec.LookPath("go")
		if err != nil {
			buildErr = fmt.Errorf("the go command is not on PATH: %w", err)
			return
		}
		binPath = filepath.Join(buildDir, "chatapp")
		out, err := exec.Command(goTool, "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// cleanEnv is the whole environment of a subprocess: nothing of the
// developer's machine, so no real Azure sign-in or configuration can leak in.
func cleanEnv(t *testing.T, extra ...string) []string {
	home := t.TempDir()
	return append([]string{
		"HOME=" + home,
		"PATH=" + t.TempDir(),
		"TMPDIR=" + os.TempDir(),
		"AZD_CONFIG_DIR=" + filepath.Join(home, ".azd"),
		"AZURE_CONFIG_DIR=" + filepath.Join(home, ".azure"),
	}, extra...)
}

// process is the command running as a subprocess.
type process struct {
	cmd    *exec.Cmd
	url    string // the address it printed, with a trailing slash
	stderr *lockedBuffer
	exited chan struct{}
	err    error // Wait's result, once exited is closed
}

// lockedBuffer collects the output of a running command.
type lockedBuffer = testlog.Buffer

// start runs the command with args and waits for it to print the address it
// serves.
func start(t *testing.T, args ...string) *process {
	t.Helper()
	cmd := exec.Command(binary(t), args...)
	cmd.Env = cleanEnv(t)
	cmd.Dir = t.TempDir()
	pipe, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	p := &process{cmd: cmd, stderr: &lockedBuffer{}, exited: make(chan struct{})}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}

	urls := make(chan string, 1)
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		sc := bufio.NewScanner(pipe)
		for sc.Scan() {
			line := sc.Text()
			fmt.Fprintln(p.stderr, line)
			for _, prefix := range []string{"securechat: open ", "securechat: listening on "} {
				if u, ok := strings.CutPrefix(line, prefix); ok {
					select {
					case urls <- u:
					default:
					}
				}
			}
		}
		_, _ = io.Copy(p.stderr, pipe)
	}()
	go func() {
		<-copied
		p.err = cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			_ = cmd.Process.Kill()
			<-p.exited
		}
		if t.Failed() {
			t.Logf("the command's stderr:\n%s", p.stderr)
		}
	})

	select {
	case p.url = <-urls:
	case <-p.exited:
		t.Fatalf("the command exited (%v) before serving:\n%s", p.err, p.stderr)
	case <-time.After(30 * time.Second):
		t.Fatalf("the command printed no address in 30s:\n%s", p.stderr)
	}
	if !strings.HasPrefix(p.url, "http://127.0.0.1:") {
		t.Fatalf("the command serves %q, want a loopback address", p.url)
	}
	return p
}

// wait waits up to d for the process to exit and returns its exit status.
func (p *process) wait(t *testing.T, d time.Duration) int {
	t.Helper()
	select {
	case <-p.exited:
	case <-time.After(d):
		t.Fatalf("the command did not exit within %v", d)
	}
	var exit *exec.ExitError
	if errors.As(p.err, &exit) {
		return exit.ExitCode()
	}
	if p.err != nil {
		t.Fatalf("wait: %v", p.err)
	}
	return 0
}

func (p *process) signal(t *testing.T, sig os.Signal) {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
}

// postStream posts a one-message conversation to /chat/stream.
func postStream(t *testing.T, base, question string) *http.Response {
	t.Helper()
	body, _ := json.Marshal(chatproto.Request{Messages: []chatproto.Message{
		{Role: chatproto.RoleUser, Content: question},
	}})
	resp, err := http.Post(base+"chat/stream", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("POST /chat/stream: status %d: %s", resp.StatusCode, b)
	}
	return resp
}

// refusesConnections polls url until a request to it fails, for up to 5s,
// and reports whether one did.
func refusesConnections(url string) bool {
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
		resp, err := client.Get(url)
		if err != nil {
			return true
		}
		resp.Body.Close()
		time.Sleep(20 * time.Millisecond)
	}
	return false
}

// line is one decoded JSON Lines line of a streamed answer.
type line struct {
	Delta   chatproto.MessageDelta `json:"delta"`
	Context map[string]any         `json:"context"`
	Error   *chatproto.Error       `json:"error"`
}

func readLine(t *testing.T, r *bufio.Reader) (line, bool) {
	t.Helper()
	raw, err := r.ReadBytes('\n')
	if len(raw) == 0 && err != nil {
		return line{}, false
	}
	var l line
	if err := json.Unmarshal(raw, &l); err != nil {
		t.Fatalf("line %q is not JSON: %v", raw, err)
	}
	return l, true
}

func TestDemoStreamsAnAnswerOverHTTP(t *testing.T) {
	p := start(t, "-demo", "-addr", "127.0.0.1:0", "-demo-pace", "1ms")
	if !strings.Contains(p.stderr.String(), "simulated") {
		t.Errorf("the banner does not say answers are simulated:\n%s", p.stderr)
	}

	resp := postStream(t, p.url, "What does the demo show?")
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/jsonl") {
		t.Errorf("Content-Type = %q, want application/jsonl", ct)
	}
	r := bufio.NewReader(resp.Body)
	first, ok := readLine(t, r)
	if !ok || first.Delta.Role != chatproto.RoleAssistant {
		t.Fatalf("first line %+v, want the assistant role", first)
	}
	var answer strings.Builder
	var last line
	for {
		l, ok := readLine(t, r)
		if !ok {
			break
		}
		if l.Error != nil {
			t.Fatalf("error line: %+v", l.Error)
		}
		answer.WriteString(l.Delta.Content)
		last = l
	}
	if !strings.Contains(answer.String(), "> What does the demo show?") {
		t.Errorf("the answer does not quote the question:\n%s", answer.String())
	}
	if last.Context["finish_reason"] != "stop" {
		t.Errorf("last line context %v, want finish_reason stop", last.Context)
	}

	p.signal(t, syscall.SIGTERM)
	if code := p.wait(t, 10*time.Second); code != 0 {
		t.Errorf("exit status %d after SIGTERM, want 0", code)
	}
}

func TestSIGTERMLetsTheStreamInFlightFinish(t *testing.T) {
	// About 170 words at 20ms: a stream of roughly 3.5 seconds.
	p := start(t, "-demo", "-addr", "127.0.0.1:0", "-demo-pace", "20ms",
		"-shutdown-timeout", "20s")
	resp := postStream(t, p.url, "Keep talking while I shut you down.")
	r := bufio.NewReader(resp.Body)
	if _, ok := readLine(t, r); !ok {
		t.Fatal("no first line")
	}
	if l, ok := readLine(t, r); !ok || l.Delta.Content == "" {
		t.Fatalf("second line %+v, want content", l)
	}

	sent := time.Now()
	p.signal(t, syscall.SIGTERM)
	if !refusesConnections(p.url + "healthz") {
		t.Error("new requests were still served 5s after SIGTERM")
	}

	var last line
	for {
		l, ok := readLine(t, r)
		if !ok {
			break
		}
		if l.Error != nil {
			t.Fatalf("error line during shutdown: %+v", l.Error)
		}
		last = l
	}
	if last.Context["finish_reason"] != "stop" {
		t.Errorf("the stream ended without its final line; last line %+v", last)
	}
	if code := p.wait(t, 20*time.Second); code != 0 {
		t.Errorf("exit status %d, want 0", code)
	}
	if d := time.Since(sent); d > 15*time.Second {
		t.Errorf("shutdown took %v", d)
	}
}

func TestSIGTERMCancelsStreamsAfterTheShutdownTimeout(t *testing.T) {
	p := start(t, "-demo", "-addr", "127.0.0.1:0", "-demo-pace", "500ms",
		"-shutdown-timeout", "1s")
	resp := postStream(t, p.url, "A slow answer, please.")
	r := bufio.NewReader(resp.Body)
	if _, ok := readLine(t, r); !ok {
		t.Fatal("no first line")
	}

	sent := time.Now()
	p.signal(t, syscall.SIGTERM)
	var last line
	for {
		l, ok := readLine(t, r)
		if !ok {
			break
		}
		last = l
	}
	if code := p.wait(t, 10*time.Second); code != 0 {
		t.Errorf("exit status %d, want 0", code)
	}
	d := time.Since(sent)
	if d < time.Second || d > time.Second+app.DefaultShutdownTimeout/5 {
		t.Errorf("the process exited %v after SIGTERM, want just after the 1s timeout", d)
	}
	if last.Context["finish_reason"] == "stop" {
		t.Error("the stream finished although it outlived the shutdown timeout")
	}
	if last.Error == nil || last.Error.Code != stream.CodeUnavailable {
		t.Errorf("last line %+v, want an error line with code %s, so the client knows the "+
			"answer was cut off", last, stream.CodeUnavailable)
	}
	if !strings.Contains(p.stderr.String(), "cancelling requests still in flight") {
		t.Errorf("the log does not say streams were cancelled:\n%s", p.stderr)
	}
}

func TestMissingConfigurationExits2NamingEveryValue(t *testing.T) {
	cmd := exec.Command(binary(t))
	cmd.Env = cleanEnv(t)
	cmd.Dir = t.TempDir()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()

	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 2 {
		t.Fatalf("exit: %v, want status 2; stderr:\n%s", err, stderr.String())
	}
	for _, want := range []string{
		"AZURE_OPENAI_ENDPOINT",
		"AZURE_OPENAI_CHAT_DEPLOYMENT",
		"azd env get-value",
		"-demo",
	} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("stderr does not mention %q:\n%s", want, stderr.String())
		}
	}
}

func TestUnusableCredentialSettingExits2WithTheDemoHint(t *testing.T) {
	cmd := exec.Command(binary(t))
	cmd.Env = cleanEnv(t,
		"AZURE_OPENAI_ENDPOINT=https://127.0.0.1:9/",
		"AZURE_OPENAI_CHAT_DEPLOYMENT=chat",
		"AZURE_TOKEN_CREDENTIALS=bogus",
	)
	cmd.Dir = t.TempDir()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()

	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 2 {
		t.Fatalf("exit: %v, want status 2; stderr:\n%s", err, stderr.String())
	}
	for _, want := range []string{`AZURE_TOKEN_CREDENTIALS="bogus"`, "run it with -demo"} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("stderr does not mention %q:\n%s", want, stderr.String())
		}
	}
}

func TestBadFlagsExit2(t *testing.T) {
	for _, args := range [][]string{{"-no-such-flag"}, {"-shutdown-timeout", "soon"},
		{"extra"}} {
		cmd := exec.Command(binary(t), args...)
		cmd.Env = cleanEnv(t)
		cmd.Dir = t.TempDir()
		out, err := cmd.CombinedOutput()
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 2 {
			t.Errorf("%v: exit %v, want status 2; output:\n%s", args, err, out)
		}
	}
}

func TestSecurityHeadersOnEveryRoute(t *testing.T) {
	p := start(t, "-demo", "-addr", "127.0.0.1:0", "-demo-pace", "1ms")
	chat, _ := json.Marshal(chatproto.Request{Messages: []chatproto.Message{
		{Role: chatproto.RoleUser, Content: "hi"},
	}})
	requests := []struct {
		method, path, ctype, body string
		status                    int
	}{
		{"GET", "", "", "", 200},
		{"GET", "index.html", "", "", 301}, // FileServer's canonical redirect to /
		{"GET", "vendor/purify.es.mjs", "", "", 200},
		{"GET", "config.json", "", "", 200},
		{"GET", "healthz", "", "", 200},
		{"GET", "readyz", "", "", 200},
		{"GET", "no/such/file", "", "", 404},
		{"GET", "chat", "", "", 405},
		{"POST", "chat", "application/json", "{", 400},
		{"POST", "chat", "text/plain", "hi", 415},
		{"POST", "chat", "application/json", string(chat), 200},
		{"POST", "chat/stream", "application/json", string(chat), 200},
	}
	want := map[string]string{
		"Content-Security-Policy": app.ContentSecurityPolicy,
		"X-Content-Type-Options":  "nosniff",
		"Referrer-Policy":         "no-referrer",
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	}}
	for _, tt := range requests {
		req, err := http.NewRequest(tt.method, p.url+tt.path, strings.NewReader(tt.body))
		if err != nil {
			t.Fatal(err)
		}
		if tt.ctype != "" {
			req.Header.Set("Content-Type", tt.ctype)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s /%s: %v", tt.method, tt.path, err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tt.status {
			t.Errorf("%s /%s: status %d, want %d", tt.method, tt.path, resp.StatusCode,
				tt.status)
		}
		got := map[string]string{}
		for k := range want {
			got[k] = resp.Header.Get(k)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("%s /%s: headers (-want +got):\n%s", tt.method, tt.path, diff)
		}
	}
}
