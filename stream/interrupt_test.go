package stream

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"net"
	"net/http"
	"net/http/httptest"
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

// stoppableServer serves h under /chat like testServer, with a base context
// that stop cancels with ErrShuttingDown as its cause, as an app's graceful
// shutdown does to the requests that outlive its drain deadline.
func stoppableServer(t *testing.T, h http.Handler) (url string, stop func()) {
	t.Helper()
	mux := http.NewServeMux()
	mux.Handle("/chat", h)
	mux.Handle("/chat/stream", h)
	srv := httptest.NewUnstartedServer(mux)
	base, cancel := context.WithCancelCause(context.Background())
	srv.Config.BaseContext = func(net.Listener) context.Context { return base }
	srv.Start()
	t.Cleanup(func() {
		cancel(nil)
		srv.Close()
	})
	return srv.URL, func() { cancel(ErrShuttingDown) }
}

func TestServerShuttingDownEndsTheStreamWithAnUnavailableLine(t *testing.T) {
	aoaitest.Guard(t)
	log, logs := newLogger()
	done := make(chan *Outcome, 1)
	model := stalledModel(func(yield func(Delta, error) bool) {
		yield(Delta{}, context.Canceled)
	})
	url, stop := stoppableServer(t, NewHandler(model, &Options{Logger: log,
		OnDone: func(o *Outcome) { done <- o }}))

	resp, br := startStream(t, context.Background(), url)
	defer resp.Body.Close()
	stop()
	rest, err := io.ReadAll(br)
	o := waitOutcome(t, done)

	want := `{"error":{"code":"unavailable","message":"` +
		clientMessages[CodeUnavailable] + `"}}` + "\n"
	if err != nil || string(rest) != want {
		t.Errorf("after the shutdown the client read %q (%v), want %q", rest, err, want)
	}
	if o.Status != http.StatusOK || o.Code != CodeUnavailable ||
		!errors.Is(o.Err, ErrShuttingDown) {
		t.Errorf("outcome %d %s %v, want 200 unavailable %v", o.Status, o.Code, o.Err,
			ErrShuttingDown)
	}
	lines := logs.lines(t)
	if len(lines) != 1 || lines[0]["code"] != CodeUnavailable ||
		lines[0]["level"] != "WARN" || lines[0]["error"] != ErrShuttingDown.Error() {
		t.Errorf("log %v, want one WARN line with code unavailable and error %q", lines,
			ErrShuttingDown)
	}
}

func TestServerShuttingDownBeforeTheFirstDeltaIs503Unavailable(t *testing.T) {
	aoaitest.Guard(t)
	for _, path := range []string{"/chat", "/chat/stream"} {
		t.Run(path, func(t *testing.T) {
			log, _ := newLogger()
			done := make(chan *Outcome, 1)
			asked := make(chan struct{})
			model := ModelFunc(func(ctx context.Context, _ *Request) iter.Seq2[Delta, error] {
				return func(yield func(Delta, error) bool) {
					close(asked)
					<-ctx.Done()
					yield(Delta{}, ctx.Err())
				}
			})
			url, stop := stoppableServer(t, NewHandler(model, &Options{Logger: log,
				OnDone: func(o *Outcome) { done <- o }}))
			go func() {
				<-asked
				stop()
			}()

			resp, body := post(t, url+path, hello)
			o := waitOutcome(t, done)

			e := errorOf(t, body)
			if resp.StatusCode != http.StatusServiceUnavailable || e.Code != CodeUnavailable {
				t.Errorf("got %d %s, want 503 unavailable", resp.StatusCode, e.Code)
			}
			if o.Status != http.StatusServiceUnavailable || o.Code != CodeUnavailable {
				t.Errorf("outcome %d %s, want 503 unavailable", o.Status, o.Code)
			}
		})
	}
}

func TestServerCancellingWithoutTheShutdownCauseIsClientClosed(t *testing.T) {
	aoaitest.Guard(t)
	log, _ := newLogger()
	done := make(chan *Outcome, 1)
	model := stalledModel(func(yield func(Delta, error) bool) {
		yield(Delta{}, context.Canceled)
	})
	mux := http.NewServeMux()
	mux.Handle("/chat/stream", NewHandler(model, &Options{Logger: log,
		OnDone: func(o *Outcome) { done <- o }}))
	srv := httptest.NewUnstartedServer(mux)
	base, cancel := context.WithCancel(context.Background())
	srv.Config.BaseContext = func(net.Listener) context.Context { return base }
	srv.Start()
	t.Cleanup(srv.Close)
	defer cancel()

	resp, _ := startStream(t, context.Background(), srv.URL)
	defer resp.Body.Close()
	cancel()
	o := waitOutcome(t, done)

	if o.Status != statusClientClosed || o.Code != codeClientClosed {
		t.Errorf("outcome %d %s, want 499 client_closed: without ErrShuttingDown as the "+
			"cause, a cancelled request is one the client left", o.Status, o.Code)
	}
}
