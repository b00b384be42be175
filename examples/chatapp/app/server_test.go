package app

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

// startServe runs Serve on a loopback listener and returns its address, the
// function that stops it, and the channel Serve's result arrives on.
func startServe(t *testing.T, h http.Handler, timeout time.Duration) (
	string, context.CancelFunc, <-chan error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Serve(ctx, ln, h, nil, timeout)
		close(done) // a second receive, by the cleanup, returns at once
	}()
	t.Cleanup(func() {
		stop()
		<-done
	})
	return "http://" + ln.Addr().String(), stop, done
}

// slowLines writes "one\n", waits for next, then writes "two\n". It reports
// on cancelled whether its context ended before it finished. Requests for
// other paths than / get 204 at once.
func slowLines(next <-chan struct{}, cancelled chan<- bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		_, _ = io.WriteString(w, "one\n")
		_ = http.NewResponseController(w).Flush()
		select {
		case <-next:
			_, _ = io.WriteString(w, "two\n")
			cancelled <- false
		case <-r.Context().Done():
			cancelled <- true
		}
	})
}

// refusesConnections polls url until a request to it fails, for up to 5s,
// and reports whether one did.
func refusesConnections(url string) bool {
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
		resp, err := client.Get(url)
		if err != nil {
			return true
		}
		resp.Body.Close()
		time.Sleep(20 * time.Millisecond)
	}
	return false
}

func TestServeLetsAStreamInFlightFinish(t *testing.T) {
	next, cancelled := make(chan struct{}), make(chan bool, 1)
	url, stop, done := startServe(t, slowLines(next, cancelled), 10*time.Second)

	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body := bufio.NewReader(resp.Body)
	if line, _ := body.ReadString('\n'); line != "one\n" {
		t.Fatalf("first line %q", line)
	}

	stop()
	if !refusesConnections(url + "/poll") {
		t.Error("new requests were still served 5s after shutdown began")
	}
	close(next)
	rest, err := io.ReadAll(body)
	if err != nil || string(rest) != "two\n" {
		t.Errorf("rest of the stream %q, %v; want \"two\\n\"", rest, err)
	}
	if <-cancelled {
		t.Error("the stream's context was cancelled although it finished in time")
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve = %v, want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return after the last stream finished")
	}
}

func TestServeCancelsStreamsThatOutliveTheTimeout(t *testing.T) {
	next, cancelled := make(chan struct{}), make(chan bool, 1)
	defer close(next)
	url, stop, done := startServe(t, slowLines(next, cancelled), 300*time.Millisecond)

	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body := bufio.NewReader(resp.Body)
	if line, _ := body.ReadString('\n'); line != "one\n" {
		t.Fatalf("first line %q", line)
	}

	start := time.Now()
	stop()
	select {
	case err := <-done:
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Serve = %v, want context.DeadlineExceeded", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return after the timeout")
	}
	if d := time.Since(start); d < 300*time.Millisecond || d > 300*time.Millisecond+
		cancelGrace {
		t.Errorf("Serve returned after %v, want between the timeout and the grace", d)
	}
	if !<-cancelled {
		t.Error("the stream's context was not cancelled")
	}
	if rest, _ := io.ReadAll(body); len(rest) != 0 {
		t.Errorf("the cancelled stream went on with %q", rest)
	}
}
