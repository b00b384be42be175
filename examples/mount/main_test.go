package main

import (
	"context"
	"iter"
	"log/slog"
	"net/http/httptest"
	"testing"

	"github.com/aoaiblocks/securechat/chatproto"
	"github.com/aoaiblocks/securechat/stream"
)

func TestMountedHandlerAnswersBesideTheServiceRoutes(t *testing.T) {
	slog.SetDefault(slog.New(slog.DiscardHandler))
	var system string
	model := stream.ModelFunc(func(ctx context.Context, req *stream.Request) iter.Seq2[
		stream.Delta, error] {
		system = req.Messages[0].Content
		return func(yield func(stream.Delta, error) bool) {
			yield(stream.Delta{Content: "Hi!", FinishReason: "stop"}, nil)
		}
	})
	srv := httptest.NewServer(newMux(model))
	defer srv.Close()

	resp, err := srv.Client().Get(srv.URL + "/api/status")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET /api/status: %v %v", resp, err)
	}
	resp.Body.Close()

	client := chatproto.NewClient(srv.URL+"/api/chat", &chatproto.ClientOptions{
		HTTPClient: srv.Client(),
	})
	req := &chatproto.Request{Messages: []chatproto.Message{
		{Role: chatproto.RoleUser, Content: "Hello"},
	}}
	got, err := client.Complete(t.Context(), req)
	if err != nil || got.Message.Content != "Hi!" {
		t.Fatalf("Complete = %+v, %v", got, err)
	}
	for d, err := range client.Stream(t.Context(), req) {
		if err != nil {
			t.Fatalf("Stream: %v", err)
		}
		if d.Delta.Content != "" && d.Delta.Content != "Hi!" {
			t.Errorf("streamed %q", d.Delta.Content)
		}
	}
	if system == "" || system == stream.DefaultSystemPrompt {
		t.Errorf("the model got system prompt %q, want the bookshop's", system)
	}
}
