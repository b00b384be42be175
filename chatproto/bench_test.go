package chatproto_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/aoaiblocks/securechat/chatproto"
)

// Run the decoding benchmarks with
//
//	go test -run '^$' -bench Decode -benchmem ./chatproto/

// benchMessages is the length of the conversation the benchmarks decode.
const benchMessages = 20

// benchRequestBody returns a request of n messages as a browser sends it:
// user questions and assistant answers in turn, with the markdown, quotes,
// line breaks and non-ASCII text real answers hold, the context of earlier
// answers sent back, and a session state.
func benchRequestBody(n int) []byte {
	req := chatproto.Request{
		Context:      json.RawMessage(`{"overrides":{"temperature":0.7}}`),
		SessionState: json.RawMessage(`{"conversation":"b1946ac9-2f59-4c2b-9f3c-7a1e5d0c8e42"}`),
	}
	for i := range n {
		m := chatproto.Message{Role: chatproto.RoleUser}
		if i%2 == 0 {
			m.Content = fmt.Sprintf("Question %d: how do I read a \"JSON Lines\" stream "+
				"in Go, line by line, without loading it all?", i/2+1)
		} else {
			m.Role = chatproto.RoleAssistant
			m.Content = strings.Repeat("Use a **bufio.Scanner** over the body and "+
				"decode each line with `json.Unmarshal`; set a larger buffer for long "+
				"lines.\n\n- one value per line\n- no commas — café-safe UTF-8 🦊\n", 3)
			m.Context = json.RawMessage(`{"finish_reason":"stop","usage":` +
				`{"prompt_tokens":412,"completion_tokens":96,"total_tokens":508}}`)
		}
		req.Messages = append(req.Messages, m)
	}
	b, err := json.Marshal(req)
	if err != nil {
		panic(err)
	}
	return b
}

// BenchmarkDecodeRequest decodes and validates a 20-message JSON request with
// chatproto.DecodeRequest, as the chat handler does for every request. It
// reports allocs/message and B/message besides the usual figures, and
// x-unmarshal: its time over that of a plain json.Unmarshal of the same body
// into a chatproto.Request (which validates nothing), measured right after
// it for as many rounds.
func BenchmarkDecodeRequest(b *testing.B) {
	body := benchRequestBody(benchMessages)
	rd := bytes.NewReader(body)
	newRequest := func() *http.Request {
		rd.Reset(body)
		r, err := http.NewRequest(http.MethodPost, "http://127.0.0.1/chat", rd)
		if err != nil {
			b.Fatal(err)
		}
		r.Header.Set("Content-Type", "application/json")
		return r
	}
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()

	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for b.Loop() {
		req, err := chatproto.DecodeRequest(newRequest(), nil)
		if err != nil || len(req.Messages) != benchMessages {
			b.Fatalf("DecodeRequest: %v", err)
		}
	}
	runtime.ReadMemStats(&after)
	elapsed := b.Elapsed()
	msgs := float64(b.N * benchMessages)
	b.ReportMetric(float64(after.Mallocs-before.Mallocs)/msgs, "allocs/message")
	b.ReportMetric(float64(after.TotalAlloc-before.TotalAlloc)/msgs, "B/message")

	// The timer stopped when b.Loop returned: this part is not in ns/op.
	start := time.Now()
	for range b.N {
		var req chatproto.Request
		if err := json.Unmarshal(body, &req); err != nil {
			b.Fatal(err)
		}
	}
	if d := time.Since(start); d > 0 {
		b.ReportMetric(float64(elapsed)/float64(d), "x-unmarshal")
	}
}
