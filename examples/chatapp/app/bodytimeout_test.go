package app

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"iter"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/aoaiblocks/securechat/chatproto"
	"github.com/aoaiblocks/securechat/stream"
)

// rawPost opens a connection to srv and sends the headers of a POST to path
// that announces a JSON body of length bytes, then the first bytes of body.
// Close the connection before srv, whose Close waits for the handler.
func rawPost(t *testing.T, srv *httptest.Server, path string, length int,
	body string) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"+
		"Content-Length: %d\r\n\r\n%s", path, srv.Listener.Addr(), length, body)
	return conn
}

func TestSlowRequestBodyIsCutAfterBodyTimeout(t *testing.T) {
	a, logs := newTestApp(t, Options{BodyTimeout: 300 * time.Millisecond})
	srv := httptest.NewServer(a)
	defer srv.Close()

	// A client that sends 2 bytes of a 100-byte body, then nothing.
	conn := rawPost(t, srv, "/chat", 100, `{"`)
	defer conn.Close()
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	start := time.Now()
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("no answer to a stalled body: %v", err)
	}
	defer resp.Body.Close()
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("answered after %v, want about the 300ms body timeout", d)
	}

	var body chatproto.ErrorResponse
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || body.Error == nil {
		t.Fatalf("status %d, body not a protocol error: %v", resp.StatusCode, err)
	}
	if resp.StatusCode != http.StatusRequestTimeout ||
		body.Error.Code != chatproto.CodeRequestTimeout {
		t.Errorf("got %d %s, want 408 %s", resp.StatusCode, body.Error.Code,
			chatproto.CodeRequestTimeout)
	}
	line := waitLogLine(t, logs, "chat request")
	if line["status"] != float64(408) || line["code"] != chatproto.CodeRequestTimeout {
		t.Errorf("log line %v, want status 408 code request_timeout", line)
	}
}

func TestClientLeavingMidBodyIsLoggedAsClientClosed(t *testing.T) {
	a, logs := newTestApp(t, Options{})
	srv := httptest.NewServer(a)
	defer srv.Close()

	conn := rawPost(t, srv, "/chat/stream", 100, `{"messages":[`)
	time.Sleep(50 * time.Millisecond) // let the handler start reading
	conn.Close()

	line := waitLogLine(t, logs, "chat request")
	if line["status"] != float64(499) || line["code"] != chatproto.CodeClientClosed {
		t.Errorf("log line %v, want status 499 code client_closed", line)
	}
}

func TestBodyTimeoutDoesNotCutALongStreamedAnswer(t *testing.T) {
	const timeout = 200 * time.Millisecond
	slow := stream.ModelFunc(func(ctx context.Context, req *stream.Request) iter.Seq2[
		stream.Delta, error] {
		return func(yield func(stream.Delta, error) bool) {
			for i := range 6 { // 600ms: three times the body timeout
				select {
				case <-time.After(timeout / 2):
				case <-ctx.Done():
					yield(stream.Delta{}, context.Cause(ctx))
					return
				}
				if !yield(stream.Delta{Content: fmt.Sprint(i)}, nil) {
					return
				}
			}
			yield(stream.Delta{FinishReason: "stop"}, nil)
		}
	})
	a, _ := newTestApp(t, Options{Model: slow, BodyTimeout: timeout})
	srv := httptest.NewServer(a)
	defer srv.Close()

	client := chatproto.NewClient(srv.URL+"/chat", &chatproto.ClientOptions{
		HTTPClient: srv.Client(), RequireFinishReason: true,
	})
	var answer strings.Builder
	for d, err := range client.Stream(t.Context(), &chatproto.Request{
		Messages: []chatproto.Message{{Role: chatproto.RoleUser, Content: "hi"}},
	}) {
		if err != nil {
			t.Fatalf("stream after %q: %v", answer.String(), err)
		}
		answer.WriteString(d.Delta.Content)
	}
	if answer.String() != "012345" {
		t.Errorf("answer %q, want 012345", answer.String())
	}
}

// waitLogLine waits up to 5s for a log line with message msg and returns the
// first.
func waitLogLine(t *testing.T, logs *syncBuffer, msg string) map[string]any {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
		if lines := logLines(t, logs.String(), msg); len(lines) > 0 {
			return lines[0]
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("no %q log line in 5s:\n%s", msg, logs)
	return nil
}
