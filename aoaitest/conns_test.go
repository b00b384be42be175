package aoaitest_test

import (
	"context"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/azure"
	"github.com/openai/openai-go/v3/option"

	"github.com/aoaiblocks/securechat/aoaitest"
)

// openConnections waits up to a second for the server's count of open connections
// to reach want, and returns the last count.
func openConnections(srv *aoaitest.AzureOpenAI, want int) int {
	deadline := time.Now().Add(time.Second)
	for {
		n := srv.OpenConnections()
		if n == want || time.Now().After(deadline) {
			return n
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestAzureOpenAICountsOpenConnections(t *testing.T) {
	f := newFixture(t)
	hc := f.srv.Client()
	client := openai.NewClient(
		azure.WithEndpoint(f.srv.URL, apiVersion),
		azure.WithTokenCredential(f.cred),
		option.WithHTTPClient(hc),
		option.WithMaxRetries(0),
	)
	if n := f.srv.OpenConnections(); n != 0 {
		t.Fatalf("before any request: %d open connections, want 0", n)
	}

	if _, err := client.Chat.Completions.New(context.Background(), hello(false)); err != nil {
		t.Fatal(err)
	}
	if n := openConnections(f.srv, 1); n != 1 {
		t.Errorf("after a request: %d open connections, want 1 (idle, kept alive)", n)
	}

	// A stream that is not closed holds its connection, idle connections closed or not.
	stream := client.Chat.Completions.NewStreaming(context.Background(), hello(true))
	if !stream.Next() {
		t.Fatalf("stream: %v", stream.Err())
	}
	hc.CloseIdleConnections()
	if n := openConnections(f.srv, 1); n != 1 {
		t.Errorf("a stream open, idle connections closed: %d open connections, want 1", n)
	}

	stream.Close()
	hc.CloseIdleConnections()
	if n := openConnections(f.srv, 0); n != 0 {
		t.Errorf("stream closed, idle connections closed: %d open connections, want 0", n)
	}
	if n := f.srv.TLSConnections(); n != 1 {
		t.Errorf("%d connections opened in all, want 1", n)
	}
}
