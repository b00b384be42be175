package chatproto_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/aoaiblocks/securechat/chatproto"
)

func ExampleDecodeRequest() {
	body := `{
		"messages": [
			{"role": "user", "content": "What is the capital of France?"},
			{"role": "assistant", "content": "Paris."},
			{"role": "user", "content": "And of Italy?"}
		],
		"context": {"overrides": {"temperature": 0.2}},
		"sessionState": {"conversation": 7}
	}`
	r := httptest.NewRequest(http.MethodPost, "/chat", strings.NewReader(body))
	r.Header.Set("Content-Type", "application/json")

	req, err := chatproto.DecodeRequest(r, nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, m := range req.Messages {
		fmt.Printf("%s: %s\n", m.Role, m.Content)
	}
	fmt.Printf("context: %s\n", req.Context)
	fmt.Printf("session state: %s\n", req.SessionState)

	// A request that breaks the protocol is answered with its error.
	bad := httptest.NewRequest(http.MethodPost, "/chat",
		strings.NewReader(`{"messages":[{"role":"robot","content":"beep"}]}`))
	bad.Header.Set("Content-Type", "application/json")
	_, err = chatproto.DecodeRequest(bad, nil)
	var e *chatproto.Error
	if errors.As(err, &e) {
		fmt.Println(e.Status, e.Code)
		fmt.Println(e.Message)
	}
	w := httptest.NewRecorder()
	chatproto.WriteError(w, err)
	fmt.Println(w.Code, w.Header().Get("Content-Type"))

	// Output:
	// user: What is the capital of France?
	// assistant: Paris.
	// user: And of Italy?
	// context: {"overrides": {"temperature": 0.2}}
	// session state: {"conversation": 7}
	// 400 invalid_request
	// messages[0].role: "robot" is not a role; want user, assistant or system
	// 400 application/json
}

// A server that streams its answer as JSON Lines, and a client reading it.
func ExampleClient_Stream() {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /chat/stream", func(w http.ResponseWriter, r *http.Request) {
		req, err := chatproto.DecodeRequest(r, nil)
		if err != nil {
			chatproto.WriteError(w, err)
			return
		}
		w.Header().Set("Content-Type", "application/jsonl")
		enc := json.NewEncoder(w) // Encode ends each line with LF
		_ = enc.Encode(chatproto.CompletionDelta{
			Delta: chatproto.MessageDelta{Role: chatproto.RoleAssistant}})
		for _, word := range strings.Fields("You said: " + req.Messages[0].Content) {
			_ = enc.Encode(chatproto.CompletionDelta{
				Delta: chatproto.MessageDelta{Content: word + " "}})
			http.NewResponseController(w).Flush()
		}
		_ = enc.Encode(chatproto.CompletionDelta{
			Context: json.RawMessage(`{"finish_reason":"stop"}`)})
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()

	client := chatproto.NewClient(srv.URL+"/chat", &chatproto.ClientOptions{
		HTTPClient:          srv.Client(),
		RequireFinishReason: true,
	})
	req := &chatproto.Request{Messages: []chatproto.Message{
		{Role: chatproto.RoleUser, Content: "hello there"},
	}}
	var answer strings.Builder
	for d, err := range client.Stream(context.Background(), req) {
		if err != nil {
			fmt.Println("error:", err)
			return
		}
		if d.Delta.Role != "" {
			fmt.Println("role:", d.Delta.Role)
		}
		answer.WriteString(d.Delta.Content)
		if d.Context != nil {
			fmt.Printf("context: %s\n", d.Context)
		}
	}
	fmt.Printf("answer: %q\n", answer.String())

	// Output:
	// role: assistant
	// context: {"finish_reason":"stop"}
	// answer: "You said: hello there "
}

func ExampleClient_Complete() {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") == "" {
			chatproto.WriteError(w, &chatproto.Error{Status: http.StatusUnauthorized,
				Code: "unauthorized", Message: "sign in first"})
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(chatproto.Completion{
			Message: chatproto.Message{Role: chatproto.RoleAssistant, Content: "Rome."},
		})
	}))
	defer srv.Close()
	req := &chatproto.Request{Messages: []chatproto.Message{
		{Role: chatproto.RoleUser, Content: "What is the capital of Italy?"},
	}}

	_, err := chatproto.NewClient(srv.URL, nil).Complete(context.Background(), req)
	fmt.Println(err)

	client := chatproto.NewClient(srv.URL, &chatproto.ClientOptions{
		Header: http.Header{"Authorization": {"Bearer example-id-token"}},
	})
	c, err := client.Complete(context.Background(), req)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(c.Message.Content)

	// Output:
	// chatproto: unauthorized: sign in first
	// Rome.
}
