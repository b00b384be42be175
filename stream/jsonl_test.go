package stream

import (
	"context"
	"encoding/json"
	"iter"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/aoaiblocks/securechat/chatproto"
)

// jsonStrings are strings whose escaping differs in some way.
var jsonStrings = []string{
	"", "plain", `quote " backslash \ slash /`, "<script>&amp;</script>",
	"\x00\x01\x07\b\f\n\r\t\x1f\x7f", "é ü 中文 🙂", "\u2028 and \u2029",
	"bad \xff utf-8 \xc3", "\xed\xa0\x80 surrogate", "ends in \xe2\x82",
	strings.Repeat("long ", 100),
}

func TestAppendStringMatchesEncodingJSON(t *testing.T) {
	for _, s := range jsonStrings {
		want, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		if got := appendString(nil, s); string(got) != string(want) {
			t.Errorf("appendString(%q) = %s, want %s", s, got, want)
		}
	}
}

func FuzzAppendString(f *testing.F) {
	for _, s := range jsonStrings {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want, _ := json.Marshal(s)
		if got := appendString([]byte("x"), s); string(got[1:]) != string(want) {
			t.Errorf("appendString(%q) = %s, want %s", s, got[1:], want)
		}
	})
}

func TestLinesAreWhatJSONMarshalWrites(t *testing.T) {
	u := &Usage{PromptTokens: 10, CompletionTokens: 20, TotalTokens: 30}
	ctx := func(finish string, u *Usage) json.RawMessage {
		b, _ := json.Marshal(struct {
			FinishReason string `json:"finish_reason"`
			Usage        *Usage `json:"usage,omitempty"`
		}{finish, u})
		return b
	}
	line := func(v any) string {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return string(b) + "\n"
	}
	state := json.RawMessage(`{ "a": [1, "<b>"] }`)
	compact, err := appendRaw(nil, state)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		got  []byte
		want string
	}{
		{"first", appendFirstLine(nil, nil), line(chatproto.CompletionDelta{
			Delta: chatproto.MessageDelta{Role: chatproto.RoleAssistant}})},
		{"first with state", appendFirstLine(nil, compact), line(chatproto.CompletionDelta{
			Delta:        chatproto.MessageDelta{Role: chatproto.RoleAssistant},
			SessionState: state})},
		{"content", appendContentLine(nil, "a <b> \"c\"\n"), line(chatproto.CompletionDelta{
			Delta: chatproto.MessageDelta{Content: "a <b> \"c\"\n"}})},
		{"final", appendFinalLine(nil, "stop", u), line(chatproto.CompletionDelta{
			Context: ctx("stop", u)})},
		{"final without usage", appendFinalLine(nil, "length", nil),
			line(chatproto.CompletionDelta{Context: ctx("length", nil)})},
		{"error", appendErrorLine(nil, "rate_limited", "busy & <sorry>"),
			line(chatproto.ErrorResponse{Error: &chatproto.Error{Code: "rate_limited",
				Message: "busy & <sorry>"}})},
		{"completion", appendCompletion(nil, "Hi <there>", "stop", u, compact),
			line(chatproto.Completion{
				Message: chatproto.Message{Role: chatproto.RoleAssistant,
					Content: "Hi <there>"},
				Context:      ctx("stop", u),
				SessionState: state})},
	}
	for _, tt := range tests {
		if diff := cmp.Diff(tt.want, string(tt.got)); diff != "" {
			t.Errorf("%s (-json.Marshal +ours):\n%s", tt.name, diff)
		}
	}
}

func TestSessionStateIsCompactedOntoOneLine(t *testing.T) {
	got, err := appendRaw(nil, json.RawMessage("{\n  \"a\" : [ 1 ,\n 2 ],\"s\":\"x\\ny\"\n}"))
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"a":[1,2],"s":"x\ny"}`; string(got) != want {
		t.Errorf("got %s, want %s", got, want)
	}
}

// discardLogger drops every line.
var discardLogger = slog.New(slog.DiscardHandler)

// discard is a ResponseWriter that keeps nothing, for counting allocations.
type discard struct{ h http.Header }

func (d *discard) Header() http.Header         { return d.h }
func (d *discard) Write(p []byte) (int, error) { return len(p), nil }
func (d *discard) WriteHeader(int)             {}
func (d *discard) Flush()                      {}

func (d *discard) SetWriteDeadline(time.Time) error { return nil }

// deltasModel yields prepared deltas, allocating nothing per delta.
type deltasModel []Delta

func (m deltasModel) Stream(ctx context.Context, _ *Request) iter.Seq2[Delta, error] {
	return func(yield func(Delta, error) bool) {
		for _, d := range m {
			if !yield(d, nil) {
				return
			}
		}
	}
}

// allocsPerRequest measures the allocations of one streamed answer of n
// content deltas.
func allocsPerRequest(n int) float64 {
	model := make(deltasModel, 0, n+1)
	for range n {
		model = append(model, Delta{Content: " token"})
	}
	model = append(model, Delta{FinishReason: "stop", Usage: &Usage{TotalTokens: 1}})
	h := NewHandler(model, &Options{Logger: discardLogger})
	w := &discard{h: http.Header{}}
	return testing.AllocsPerRun(20, func() {
		r, _ := http.NewRequest(http.MethodPost, "/chat/stream", strings.NewReader(hello))
		r.Header.Set("Content-Type", "application/json")
		clear(w.h)
		h.ServeHTTP(w, r)
	})
}

func TestRelayAllocatesNothingPerDelta(t *testing.T) {
	if testing.Short() {
		t.Skip("counts allocations")
	}
	base, many := allocsPerRequest(0), allocsPerRequest(500)
	perDelta := (many - base) / 500
	t.Logf("%.0f allocations per request, %.3f per delta", base, perDelta)
	if perDelta > 0.1 {
		t.Errorf("%.3f allocations per delta, want none", perDelta)
	}
}
