package reliability

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/aoaiblocks/securechat/chatproto"
	"github.com/aoaiblocks/securechat/examples/chatapp/app"
	"github.com/aoaiblocks/securechat/stream"
)

// corpusLimits are the request limits the corpus runs with, small so that the
// requests over a limit stay small files.
var corpusLimits = chatproto.Limits{
	MaxBodyBytes:      4096,
	MaxMultipartBytes: 8192,
	MaxMessages:       8,
	MaxContentBytes:   1024,
	MaxFiles:          2,
	MaxFileBytes:      256,
}

// minCorpus is the least number of requests the corpus must hold.
const minCorpus = 40

// badInput is one request of the corpus.
type badInput struct {
	file   string
	status int
	code   string // "-": no protocol error body
	req    *http.Request
}

func TestBadInputCorpus(t *testing.T) {
	checkLeaks(t)
	w := newWorld(t, true)
	s := w.serve(t, app.Options{Stream: &stream.Options{Limits: &corpusLimits}})
	s.client.CheckRedirect = func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse // a redirect is an answer to pin, not to follow
	}

	files, err := filepath.Glob(filepath.Join("testdata", "badinput", "*.http"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < minCorpus {
		t.Errorf("the corpus holds %d requests, want at least %d", len(files), minCorpus)
	}
	for _, file := range files {
		in, err := readBadInput(file, s.url)
		if err != nil {
			t.Errorf("%s: %v", file, err)
			continue
		}
		t.Run(strings.TrimSuffix(filepath.Base(file), ".http"), func(t *testing.T) {
			before := len(w.aoai.Requests())

			r := s.send(t, in.req)

			want := fmt.Sprintf("%d %s", in.status, in.code)
			if got := corpusOutcome(r); got != want {
				t.Errorf("got %s, want %s\nbody: %s", got, want, r.body)
			}
			if r.status >= 500 {
				t.Errorf("a malformed request got %d", r.status)
			}
			upstream := len(w.aoai.Requests()) - before
			if wantUp := map[bool]int{true: 1, false: 0}[in.status == 200]; upstream != wantUp {
				t.Errorf("%d requests reached Azure OpenAI, want %d", upstream, wantUp)
			}
			if in.code != "-" && !strings.HasPrefix(r.header.Get("Content-Type"),
				"application/json") {
				t.Errorf("error body with Content-Type %q, want application/json",
					r.header.Get("Content-Type"))
			}

			// The app keeps serving.
			if r := s.ask(t, "/chat", "after-"+filepath.Base(file), "still there?"); outcome(r) !=
				"200 answer" {
				t.Errorf("the next good request: %s", outcome(r))
			}
		})
	}
}

// corpusOutcome is "STATUS CODE", the code of the error body or "-" without one.
func corpusOutcome(r response) string {
	got := outcome(r)
	if r.status == http.StatusOK {
		return "200 -"
	}
	status, code, _ := strings.Cut(got, " ")
	code, _, _ = strings.Cut(code, " ")
	return status + " " + code
}

// readBadInput reads a corpus file (see the package documentation) into a request
// for the app at base.
func readBadInput(file, base string) (*badInput, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	in := &badInput{file: file}
	rest := data // what the lines read so far leave
	crlf := false
	line := func() (string, error) {
		l, after, ok := bytes.Cut(rest, []byte("\n"))
		if !ok {
			return "", fmt.Errorf("ends before the body")
		}
		rest = after
		return string(l), nil
	}

	var l string
	for {
		if l, err = line(); err != nil {
			return nil, err
		}
		c, ok := strings.CutPrefix(l, "#")
		if !ok {
			break
		}
		c = strings.TrimSpace(c)
		if c == "crlf" {
			crlf = true
		}
		if want, ok := strings.CutPrefix(c, "want:"); ok {
			f := strings.Fields(want)
			if len(f) != 2 {
				return nil, fmt.Errorf("want line %q: want a status and a code", l)
			}
			if in.status, err = strconv.Atoi(f[0]); err != nil {
				return nil, fmt.Errorf("want line %q: %v", l, err)
			}
			in.code = f[1]
		}
	}
	if in.status == 0 {
		return nil, fmt.Errorf("no want line")
	}

	method, path, ok := strings.Cut(l, " ")
	if !ok {
		return nil, fmt.Errorf("request line %q: want METHOD PATH", l)
	}
	header := http.Header{}
	for {
		if l, err = line(); err != nil {
			return nil, err
		}
		if l == "" {
			break
		}
		k, v, ok := strings.Cut(l, ":")
		if !ok {
			return nil, fmt.Errorf("header line %q: want Name: value", l)
		}
		header.Add(strings.TrimSpace(k), strings.TrimSpace(v))
	}

	body := bytes.TrimSuffix(rest, []byte("\n"))
	if crlf {
		body = bytes.ReplaceAll(body, []byte("\n"), []byte("\r\n"))
	}
	in.req, err = http.NewRequest(method, base+path, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	in.req.Header = header
	return in, nil
}
