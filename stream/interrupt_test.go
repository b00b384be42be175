package stream

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aoaiblocks/securechat/aoaitest"
)

// stalledModel yields one delta, "a", then waits for ctx to end and ends the
// way end says: it stands for a model that, once cancelled, reports
// whatever its backend happened to return.
func stalledModel(end func(yield func(Delta, error) bool)) Model {
	return ModelFunc(func(ctx context.Context, _ *Request) iter.Seq2[Delta, error] {
		return func(yield func(Delta, error) bool) {
			if !yield(Delta{Content: "a"}, nil) {
				return
			}
			<-ctx.Done()
			end(yield)
		}
	})
}

// startStream posts hello to the streaming endpoint at url with ctx and
// returns the response once its first content line has arrived.
func startStream(t *testing.T, ctx context.Context, url string) (*http.Response,
	*bufio.Reader) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url+"/chat/stream",
		strings.NewReader(hello))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(resp.Body)
	for _, want := range []string{`{"delta":{"role":"assistant"}}`,
		`{"delta":{"content":"a"}}`} {
		line, err := br.ReadString('\n')
		if err != nil || strings.TrimSpace(line) != want {
			resp.Body.Close()
			t.Fatalf("line %q (%v), want %s", line, err, want)
		}
	}
	return resp, br
}

// waitOutcome returns the outcome sent on done, failing the test after 5 s.
func waitOutcome(t *testing.T, done <-chan *Outcome) *Outcome {
	t.Helper()
	select {
	case o := <-done:
		return o
	case <-time.After(5 * time.Second):
		t.Fatal("the handler did not return within 5s")
		return nil
	}
}

func TestClientLeavingIsLoggedAsCancelledWhateverTheModelReturns(t *testing.T) {
	aoaitest.Guard(t)
	tests := []struct {
		name string
		end  func(yield func(Delta, error) bool)
	}{
		{"the model says the answer was truncated", func(yield func(Delta, error) bool) {
			yield(Delta{}, fmt.Errorf("stream: azure openai: %w", errTruncated))
		}},
		{"the model reports a read error", func(yield func(Delta, error) bool) {
			yield(Delta{}, io.ErrUnexpectedEOF)
		}},
		{"the model returns without a finish", func(func(Delta, error) bool) {}},
		{"the model yields the context's error", func(yield func(Delta, error) bool) {
			yield(Delta{}, context.Canceled)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			log, logs := newLogger()
			done := make(chan *Outcome, 1)
			srv := testServer(t, NewHandler(stalledModel(tt.end), &Options{Logger: log,
				OnDone: func(o *Outcome) { done <- o }}))

			ctx, leave := context.WithCancel(context.Background())
			resp, _ := startStream(t, ctx, srv.URL)
			leave()
			resp.Body.Close()
			o := waitOutcome(t, done)

			if o.Status != statusClientClosed || o.Code != codeClientClosed ||
				!errors.Is(o.Err, context.Canceled) {
				t.Errorf("outcome %d %s %v, want 499 client_closed context canceled",
					o.Status, o.Code, o.Err)
			}
			lines := logs.lines(t)
			if len(lines) != 1 || lines[0]["error"] != "context canceled" {
				t.Errorf("log %v, want one line with error=\"context canceled\"", lines)
			}
		})
	}
}
