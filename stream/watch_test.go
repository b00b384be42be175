package stream

import (
	"context"
	"iter"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestWatchStepsMakeTheIdleBoundFireWithinAQuarterOfIt(t *testing.T) {
	const s, ms = time.Second, time.Millisecond
	tests := []struct{ idle, write time.Duration }{
		{90 * s, 30 * s}, // the defaults
		{90 * s, 70 * s}, // a write timeout that does not divide the idle bound
		{90 * s, 0},
		{90 * s, 2 * time.Minute},
		{50 * ms, 30 * s},
		{100 * ms, 7 * ms},
		{1500 * ms, 1300 * ms},
		{24 * time.Hour, 10 * ms},
	}
	for _, tt := range tests {
		step, n := watchSteps(tt.idle, tt.write)
		// The idle bound fires n looks after the first look that sees no
		// new delta, which comes within a step of the last delta.
		earliest, latest := time.Duration(n)*step, time.Duration(n+1)*step
		if earliest < tt.idle || float64(latest) > 1.25*float64(tt.idle)+float64(n+1) {
			t.Errorf("idle %v, write %v: step %v × %d looks: fires %v to %v after the "+
				"last delta, want within [1, 1.25] × %v", tt.idle, tt.write, step, n,
				earliest, latest, tt.idle)
		}
		if tt.write > 0 && step > tt.write/watchLooks+1 {
			t.Errorf("idle %v, write %v: step %v, want at most a quarter of the write "+
				"timeout", tt.idle, tt.write, step)
		}
	}
	if step, n := watchSteps(0, 30*s); step != 30*s/watchLooks || n != 0 {
		t.Errorf("write timeout alone: step %v, %d idle looks; want %v, 0", step, n,
			30*s/watchLooks)
	}
	if step, n := watchSteps(1<<63-1, 30*s); step <= 0 || step > 30*s/watchLooks || n <= 0 {
		t.Errorf("the longest idle bound: step %v, %d looks; want a step of at most %v",
			step, n, 30*s/watchLooks)
	}
	if step, _ := watchSteps(0, 0); step != 0 {
		t.Errorf("no bound: step %v, want none", step)
	}
}

func TestWatchCallsOnIdleOnlyAfterTheIdleBound(t *testing.T) {
	const idle = 80 * time.Millisecond
	fired := make(chan time.Time, 1)
	var w watch
	w.start(idle, 0, func(cause error) {
		if cause == errIdle {
			fired <- time.Now()
		}
	})
	defer w.stop()

	// Deltas for a while: the bound must not fire.
	start := time.Now()
	var last time.Time
	for time.Since(start) < 3*idle {
		w.progress()
		last = time.Now()
		select {
		case at := <-fired:
			t.Fatalf("onIdle called %v after a delta", at.Sub(last))
		case <-time.After(idle / 8):
		}
	}

	select {
	case at := <-fired:
		if d := at.Sub(last); d < idle || d > idle*5/4+250*time.Millisecond {
			t.Errorf("onIdle called %v after the last delta, want %v to %v (and "+
				"some scheduling slack)", d, idle, idle*5/4)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("onIdle not called 5s after the last delta")
	}
}

// deadlineWriter is an http.ResponseWriter that can flush and set write
// deadlines, and records, at each write, how long the deadline gave it.
type deadlineWriter struct {
	mu        sync.Mutex
	header    http.Header
	deadline  time.Time
	deadlines int
	writes    int
	least     time.Duration // the shortest time a write had before its deadline
	most      time.Duration // the longest
}

func (w *deadlineWriter) Header() http.Header { return w.header }
func (w *deadlineWriter) WriteHeader(int)     {}
func (w *deadlineWriter) Flush()              {}

func (w *deadlineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	left := time.Until(w.deadline)
	if w.writes == 0 || left < w.least {
		w.least = left
	}
	w.most = max(w.most, left)
	w.writes++
	return len(p), nil
}

func (w *deadlineWriter) SetWriteDeadline(d time.Time) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.deadline = d
	w.deadlines++
	return nil
}

// pacedModel yields n deltas of "x", gap apart, then a finish.
func pacedModel(n int, gap time.Duration) Model {
	return ModelFunc(func(ctx context.Context, _ *Request) iter.Seq2[Delta, error] {
		return func(yield func(Delta, error) bool) {
			for range n {
				if gap > 0 {
					time.Sleep(gap)
				}
				if !yield(Delta{Content: "x"}, nil) {
					return
				}
			}
			yield(Delta{FinishReason: "stop"}, nil)
		}
	})
}

// serveTo answers a streaming request with h into w.
func serveTo(t *testing.T, h http.Handler, w http.ResponseWriter) {
	t.Helper()
	r, err := http.NewRequest(http.MethodPost, "http://127.0.0.1/chat/stream",
		strings.NewReader(hello))
	if err != nil {
		t.Fatal(err)
	}
	r.Header.Set("Content-Type", "application/json")
	h.ServeHTTP(w, r)
}

func TestWriteDeadlineIsNotMovedForEveryLine(t *testing.T) {
	log, _ := newLogger()
	h := NewHandler(pacedModel(500, 0), &Options{Logger: log})
	w := &deadlineWriter{header: http.Header{}}

	serveTo(t, h, w)

	// 502 lines, written well within a quarter of the write timeout: the
	// deadline set with the headers covers them all.
	if w.writes < 500 || w.deadlines > 2 {
		t.Errorf("%d writes, %d write deadlines set; want 500 or more writes and at most "+
			"2 deadlines", w.writes, w.deadlines)
	}
}

func TestEveryWriteStartsWithOnceToAQuarterMoreTheWriteTimeout(t *testing.T) {
	const writeTimeout = 200 * time.Millisecond
	log, _ := newLogger()
	h := NewHandler(pacedModel(100, 5*time.Millisecond), &Options{Logger: log,
		WriteTimeout: writeTimeout})
	w := &deadlineWriter{header: http.Header{}}

	serveTo(t, h, w)

	// The answer lasts 500 ms, 2.5 write timeouts: the deadline must have
	// moved, and each write must have had the write timeout before it (less
	// some slack for a late timer), and at most 1.25 times it.
	if w.deadlines < 3 {
		t.Errorf("%d write deadlines set over 2.5 write timeouts, want 3 or more",
			w.deadlines)
	}
	if w.least < writeTimeout-50*time.Millisecond || w.most > writeTimeout*5/4 {
		t.Errorf("writes started %v to %v before their deadline, want %v to %v",
			w.least, w.most, writeTimeout, writeTimeout*5/4)
	}
}

// unwrapper is a ResponseWriter of some middleware: it hides the methods of
// the one it wraps but for Unwrap.
type unwrapper struct{ rw http.ResponseWriter }

func (u unwrapper) Header() http.Header         { return u.rw.Header() }
func (u unwrapper) Write(p []byte) (int, error) { return u.rw.Write(p) }
func (u unwrapper) WriteHeader(s int)           { u.rw.WriteHeader(s) }
func (u unwrapper) Unwrap() http.ResponseWriter { return u.rw }

// flushCounter counts the writes and the flushes after them.
type flushCounter struct {
	header          http.Header
	writes, flushes int
	unflushed       bool
}

func (f *flushCounter) Header() http.Header { return f.header }
func (f *flushCounter) WriteHeader(int)     {}
func (f *flushCounter) Write(p []byte) (int, error) {
	f.writes++
	f.unflushed = true
	return len(p), nil
}
func (f *flushCounter) FlushError() error {
	f.flushes++
	f.unflushed = false
	return nil
}

func TestEveryWriteIsFlushedThroughWrappingResponseWriters(t *testing.T) {
	log, _ := newLogger()
	h := NewHandler(pacedModel(10, 0), &Options{Logger: log})
	f := &flushCounter{header: http.Header{}}

	serveTo(t, h, unwrapper{unwrapper{f}})

	if f.writes < 10 || f.flushes != f.writes || f.unflushed {
		t.Errorf("%d writes, %d flushes, last write unflushed: %v; want every write "+
			"flushed", f.writes, f.flushes, f.unflushed)
	}
}
