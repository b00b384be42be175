package main

import (
	"context"
	"iter"
	"log/slog"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/aoaiblocks/securechat/chatproto"
	"github.com/aoaiblocks/securechat/stream"
)

// recordingModel answers "You said: <question> (<n> messages)" and records
// the conversations it was sent.
type recordingModel struct {
	mu    sync.Mutex
	convs [][]string
}

func (m *recordingModel) Stream(ctx context.Context, req *stream.Request) iter.Seq2[
	stream.Delta, error] {
	var conv []string
	for _, msg := range req.Messages {
		if msg.Role != chatproto.RoleSystem {
			conv = append(conv, string(msg.Role)+": "+msg.Content)
		}
	}
	m.mu.Lock()
	m.convs = append(m.convs, conv)
	m.mu.Unlock()
	return func(yield func(stream.Delta, error) bool) {
		last := req.Messages[len(req.Messages)-1].Content
		if yield(stream.Delta{Content: "You said: "}, nil) {
			yield(stream.Delta{Content: last, FinishReason: "stop"}, nil)
		}
	}
}

func TestChatSendsTheConversationAndPrintsAnswers(t *testing.T) {
	model := &recordingModel{}
	srv := httptest.NewServer(stream.NewHandler(model, quiet))
	defer srv.Close()
	client := chatproto.NewClient(srv.URL+"/chat", &chatproto.ClientOptions{
		HTTPClient: srv.Client(),
	})

	var out strings.Builder
	in := strings.NewReader("hello\nand again\n")
	if err := chat(t.Context(), client, in, &out, nil); err != nil {
		t.Fatal(err)
	}

	want := "> You said: hello\n> You said: and again\n> \n"
	if diff := cmp.Diff(want, out.String()); diff != "" {
		t.Errorf("output (-want +got):\n%s", diff)
	}
	wantConvs := [][]string{
		{"user: hello"},
		{"user: hello", "assistant: You said: hello", "user: and again"},
	}
	if diff := cmp.Diff(wantConvs, model.convs); diff != "" {
		t.Errorf("conversations sent (-want +got):\n%s", diff)
	}
}

// watchWriter is a strings.Builder that closes seen once the output holds
// want. Only the chat goroutine writes to it.
type watchWriter struct {
	strings.Builder
	want string
	seen chan struct{}
}

func (w *watchWriter) Write(p []byte) (int, error) {
	n, _ := w.Builder.Write(p)
	if w.seen != nil && strings.Contains(w.String(), w.want) {
		close(w.seen)
		w.seen = nil
	}
	return n, nil
}

var quiet = &stream.Options{Logger: slog.New(slog.DiscardHandler)}

func TestInterruptStopsTheAnswerAndKeepsWhatCame(t *testing.T) {
	model := stream.ModelFunc(func(ctx context.Context, req *stream.Request) iter.Seq2[
		stream.Delta, error] {
		return func(yield func(stream.Delta, error) bool) {
			if !yield(stream.Delta{Content: "partial"}, nil) {
				return
			}
			<-ctx.Done()
			yield(stream.Delta{}, ctx.Err())
		}
	})
	srv := httptest.NewServer(stream.NewHandler(model, quiet))
	defer srv.Close()
	client := chatproto.NewClient(srv.URL+"/chat", &chatproto.ClientOptions{
		HTTPClient: srv.Client(),
	})

	interrupt := make(chan struct{})
	seen := make(chan struct{})
	out := &watchWriter{want: "partial", seen: seen}
	go func() {
		select {
		case <-seen:
			interrupt <- struct{}{}
		case <-time.After(10 * time.Second):
		}
	}()
	if err := chat(t.Context(), client, strings.NewReader("go on\n"), out,
		interrupt); err != nil {
		t.Fatal(err)
	}
	want := "> partial\n(stopped)\n> \n"
	if diff := cmp.Diff(want, out.String()); diff != "" {
		t.Errorf("output (-want +got):\n%s", diff)
	}
}
