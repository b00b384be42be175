package chatproto

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// raw returns s as JSON with its white space removed, as encoding/json
// writes a json.RawMessage.
func raw(t *testing.T, s string) json.RawMessage {
	t.Helper()
	var b bytes.Buffer
	if err := json.Compact(&b, []byte(s)); err != nil {
		t.Fatalf("compact %q: %v", s, err)
	}
	return b.Bytes()
}

// encode marshals v as this package's client and the stream package write
// JSON: compact, without escaping <, > and &.
func encode(t *testing.T, v any) []byte {
	t.Helper()
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		t.Fatalf("encode %T: %v", v, err)
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n"))
}

// compactRaw makes every json.RawMessage in a value compact, so a decoded
// golden file compares equal to a value built in Go.
var compactRaw = cmp.Transformer("compact", func(m json.RawMessage) string {
	if m == nil {
		return "<nil>"
	}
	var b bytes.Buffer
	if err := json.Compact(&b, m); err != nil {
		return "invalid: " + string(m)
	}
	return b.String()
})

func TestTypesMatchGoldenJSON(t *testing.T) {
	tests := []struct {
		file string
		new  func() any // a pointer to a zero value to decode into
		want any
	}{
		{"request.json", func() any { return new(Request) }, &Request{
			Messages: []Message{
				{Role: RoleSystem, Content: "You are a helpful assistant."},
				{Role: RoleUser, Content: "What is the capital of France?"},
				{Role: RoleAssistant, Content: "Paris.", Context: raw(t,
					`{"data_points":{"text":["geo.pdf: Paris is the capital of France."]}}`)},
				{Role: RoleUser, Content: "And of Italy?"},
			},
			Context:      raw(t, `{"overrides":{"temperature":0.3,"top":3}}`),
			SessionState: raw(t, `{"conversation_id":"c-42","turns":2}`),
		}},
		{"message.json", func() any { return new(Message) }, &Message{
			Role:    RoleUser,
			Content: `Hello <world> & "friends"`,
			Context: raw(t, `{"locale":"fr-FR"}`),
		}},
		{"message_delta.json", func() any { return new(MessageDelta) }, &MessageDelta{
			Role: RoleAssistant, Content: "Paris",
		}},
		{"completion.json", func() any { return new(Completion) }, &Completion{
			Message: Message{Role: RoleAssistant, Content: "The capital of Italy is Rome."},
			Context: raw(t, `{"followup_questions":["What is the population of Rome?"],`+
				`"thoughts":[{"title":"Search","description":"capital of Italy",`+
				`"props":{"top":3}}]}`),
			SessionState: raw(t, `"opaque-state-7"`),
		}},
		{"completion_delta_first.json", func() any { return new(CompletionDelta) },
			&CompletionDelta{
				Delta: MessageDelta{Role: RoleAssistant},
				Context: raw(t,
					`{"data_points":{"text":["geo.pdf: Rome is the capital of Italy."]}}`),
				SessionState: raw(t, `{"conversation_id":"c-42"}`),
			}},
		{"completion_delta_content.json", func() any { return new(CompletionDelta) },
			&CompletionDelta{Delta: MessageDelta{Content: "Rome"}}},
		{"completion_delta_last.json", func() any { return new(CompletionDelta) },
			&CompletionDelta{Context: raw(t, `{"finish_reason":"stop",`+
				`"usage":{"prompt_tokens":31,"completion_tokens":7}}`)}},
		{"error_response.json", func() any { return new(ErrorResponse) }, &ErrorResponse{
			Error: &Error{Code: CodeInvalidRequest,
				Message: `messages[3].role: "robot" is not a role`},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			golden, err := os.ReadFile(filepath.Join("testdata", "golden", tt.file))
			if err != nil {
				t.Fatal(err)
			}

			got := tt.new()
			if err := json.Unmarshal(golden, got); err != nil {
				t.Fatalf("decode: %v", err)
			}
			if diff := cmp.Diff(tt.want, got, compactRaw); diff != "" {
				t.Errorf("decoded golden file (-want +got):\n%s", diff)
			}

			got2, want := string(encode(t, tt.want)), string(raw(t, string(golden)))
			if got2 != want {
				t.Errorf("encoded:\n got %s\nwant %s", got2, want)
			}
		})
	}
}

func TestErrorResponseDecodesTheOlderStringShape(t *testing.T) {
	golden, err := os.ReadFile(filepath.Join("testdata", "golden", "error_response_string.json"))
	if err != nil {
		t.Fatal(err)
	}
	var got ErrorResponse
	if err := json.Unmarshal(golden, &got); err != nil {
		t.Fatal(err)
	}
	want := ErrorResponse{Error: &Error{Code: CodeUnknown, Message: "The model is overloaded."}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}

	// Written back, it takes the object shape.
	if got, want := string(encode(t, got)),
		`{"error":{"code":"unknown","message":"The model is overloaded."}}`; got != want {
		t.Errorf("encoded:\n got %s\nwant %s", got, want)
	}
}

func TestEmptyOptionalFieldsAreOmitted(t *testing.T) {
	tests := []struct {
		v    any
		want string
	}{
		{Message{Role: RoleUser, Content: ""}, `{"role":"user","content":""}`},
		{Message{Role: RoleUser, Content: "a", Files: []File{{Data: []byte("x")}}},
			`{"role":"user","content":"a"}`},
		{MessageDelta{}, `{}`},
		{Request{Messages: []Message{}}, `{"messages":[]}`},
		{Completion{}, `{"message":{"role":"","content":""}}`},
		{CompletionDelta{}, `{"delta":{}}`},
		{&Error{Status: 400, Code: "c", Message: "m", Err: os.ErrNotExist},
			`{"code":"c","message":"m"}`},
	}
	for _, tt := range tests {
		if got := string(encode(t, tt.v)); got != tt.want {
			t.Errorf("%T: got %s, want %s", tt.v, got, tt.want)
		}
	}
}

func TestRoleValid(t *testing.T) {
	for _, r := range []Role{RoleUser, RoleAssistant, RoleSystem} {
		if !r.Valid() {
			t.Errorf("%q.Valid() = false", r)
		}
	}
	for _, r := range []Role{"", "User", "robot", "tool", "function", "developer"} {
		if r.Valid() {
			t.Errorf("%q.Valid() = true", r)
		}
	}
}
