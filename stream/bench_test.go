package stream_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"iter"
	"log/slog"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/aoaiblocks/securechat/stream"
)

// The relay benchmarks measure what the Handler adds to each delta of a
// streamed answer: a model in the same process yields prepared deltas, the
// ResponseWriter discards what it is given, and what is left is the
// Handler's own work. Run them with
//
//	go test -run '^$' -bench StreamRelay -benchmem ./stream/

// relayDeltas is the length of the answer the relay benchmarks stream.
const relayDeltas = 500

// relayTokens are the pieces answers are made of: word-sized, as a model's
// tokens are, with the markdown, quotes and non-ASCII text that make the
// writer escape now and then.
var relayTokens = []string{
	"The", " quick", " brown", " fox", " jumps", " over", " the", " lazy",
	" dog", ".", "\n\n", "**", "Note", ":**", " it", " said", " \"", "hello",
	"\"", " and", " left", " the", " café", " <", "b", ">", " 🦊", ".",
}

// relayBody is the request the relay benchmarks post: a short conversation.
const relayBody = `{"messages":[` +
	`{"role":"user","content":"Tell me about foxes."},` +
	`{"role":"assistant","content":"Foxes are small omnivores."},` +
	`{"role":"user","content":"And dogs?"}]}`

// relayAnswer returns an answer of n deltas cycling through relayTokens.
func relayAnswer(n int) []stream.Delta {
	ds := make([]stream.Delta, n)
	for i := range ds {
		ds[i].Content = relayTokens[i%len(relayTokens)]
	}
	return ds
}

// scriptedModel is a Model in the process that streams deltas, then a
// finish with usage. It allocates nothing per delta itself.
func scriptedModel(deltas []stream.Delta) stream.Model {
	usage := &stream.Usage{PromptTokens: 30, CompletionTokens: int64(len(deltas))}
	usage.TotalTokens = usage.PromptTokens + usage.CompletionTokens
	return stream.ModelFunc(func(context.Context,
		*stream.Request) iter.Seq2[stream.Delta, error] {
		return func(yield func(stream.Delta, error) bool) {
			for _, d := range deltas {
				if !yield(d, nil) {
					return
				}
			}
			yield(stream.Delta{FinishReason: "stop", Usage: usage}, nil)
		}
	})
}

// discardWriter is an http.ResponseWriter that counts what it is given and
// keeps nothing, so that the benchmarks measure the handler rather than a
// network or a buffer. Like net/http's own, it can flush and set write
// deadlines (through http.ResponseController).
type discardWriter struct {
	header    http.Header
	status    int
	written   int
	flushes   int
	deadlines int
}

func (w *discardWriter) Header() http.Header { return w.header }

func (w *discardWriter) WriteHeader(status int) {
	if w.status == 0 {
		w.status = status
	}
}

func (w *discardWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	w.written += len(p)
	return len(p), nil
}

func (w *discardWriter) Flush() { w.flushes++ }

func (w *discardWriter) SetWriteDeadline(time.Time) error {
	w.deadlines++
	return nil
}

// recordWriter is an http.ResponseWriter and http.Flusher that keeps the
// body.
type recordWriter struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (w *recordWriter) Header() http.Header { return w.header }
func (w *recordWriter) WriteHeader(s int)   { w.status = s }
func (w *recordWriter) Flush()              {}

func (w *recordWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.body.Write(p)
}

// relayRequest returns a request for the streaming endpoint whose body is
// relayBody, read from body (reset here, so that callers can reuse it).
func relayRequest(body *strings.Reader) *http.Request {
	body.Reset(relayBody)
	r, err := http.NewRequestWithContext(context.Background(), http.MethodPost,
		"http://127.0.0.1/chat/stream", body)
	if err != nil {
		panic(err)
	}
	r.Header.Set("Content-Type", "application/json")
	return r
}

// newRelayHandler returns the Handler under measurement: the defaults (the
// idle and total timeouts included), its log lines discarded.
func newRelayHandler(deltas []stream.Delta) http.Handler {
	return stream.NewHandler(scriptedModel(deltas),
		&stream.Options{Logger: slog.New(slog.DiscardHandler)})
}

// serveRelay answers one relay request with h into a new discardWriter.
func serveRelay(h http.Handler, body *strings.Reader) *discardWriter {
	w := &discardWriter{header: http.Header{}}
	h.ServeHTTP(w, relayRequest(body))
	return w
}

// wireLines returns the lines the Handler writes for an answer of deltas,
// which the baseline replays, and their total size in bytes.
func wireLines(tb testing.TB, deltas []stream.Delta) ([][]byte, int) {
	tb.Helper()
	w := &recordWriter{header: http.Header{}}
	newRelayHandler(deltas).ServeHTTP(w, relayRequest(strings.NewReader("")))
	if w.status != http.StatusOK {
		tb.Fatalf("handler answered %d: %s", w.status, w.body.String())
	}
	lines := bytes.SplitAfter(w.body.Bytes(), []byte("\n"))
	if len(lines[len(lines)-1]) == 0 {
		lines = lines[:len(lines)-1]
	}
	if want := len(deltas) + 2; len(lines) != want {
		tb.Fatalf("handler wrote %d lines, want %d (role, deltas, finish)", len(lines), want)
	}
	for i, l := range lines {
		if !json.Valid(l) {
			tb.Fatalf("line %d is not JSON: %q", i, l)
		}
	}
	return lines, w.body.Len()
}

// baselineHandler is the floor the relay is compared with. It serves the
// same request through the same plumbing: it reads the whole body, ranges
// over the same model, and writes and flushes the lines through an
// http.ResponseController as they come. But it decodes nothing and encodes
// nothing: it writes lines prepared in advance.
func baselineHandler(model stream.Model, lines [][]byte) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		rc := http.NewResponseController(w)
		w.Header().Set("Content-Type", "application/jsonl")
		w.WriteHeader(http.StatusOK)
		next := 0
		for _, err := range model.Stream(r.Context(), nil) {
			if err != nil || next == len(lines) {
				break
			}
			if next == 0 { // the role line goes out with the first delta
				_, _ = w.Write(lines[0])
				next++
			}
			_, _ = w.Write(lines[next])
			_ = rc.Flush()
			next++
		}
	})
}

// benchRelay measures h answering one relay request per iteration, checks
// each answer's size against lineBytes, and reports the cost per delta:
// allocs/delta and B/delta (everything the request allocates, its fixed
// cost shared out over the deltas) and ns/delta. It returns ns/op.
func benchRelay(b *testing.B, h http.Handler, lineBytes int) float64 {
	b.SetBytes(int64(lineBytes))
	body := strings.NewReader("")
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	n := 0
	for b.Loop() {
		w := serveRelay(h, body)
		if w.status != http.StatusOK || w.written != lineBytes {
			b.Fatalf("answered %d with %d bytes, want 200 with %d", w.status, w.written,
				lineBytes)
		}
		n++
	}
	runtime.ReadMemStats(&after)

	ns := float64(b.Elapsed().Nanoseconds())
	deltas := float64(n * relayDeltas)
	b.ReportMetric(float64(after.Mallocs-before.Mallocs)/deltas, "allocs/delta")
	b.ReportMetric(float64(after.TotalAlloc-before.TotalAlloc)/deltas, "B/delta")
	b.ReportMetric(ns/deltas, "ns/delta")
	return ns / float64(n)
}

// BenchmarkStreamRelay measures the streaming Handler relaying a 500-delta
// answer from a model in the process to a discarding writer that supports
// Flush. Besides the per-delta figures of benchRelay it reports B/line, the
// mean size of a line on the wire, and x-baseline: its time per answer over
// that of the baseline (see BenchmarkStreamRelayBaseline) answering as many
// requests right after it.
func BenchmarkStreamRelay(b *testing.B) {
	deltas := relayAnswer(relayDeltas)
	lines, size := wireLines(b, deltas)
	h := newRelayHandler(deltas)
	base := baselineHandler(scriptedModel(deltas), lines)

	nsPerOp := benchRelay(b, h, size)
	b.ReportMetric(float64(size)/float64(len(lines)), "B/line")

	n, body := b.N, strings.NewReader("")
	start := time.Now()
	for range n {
		serveRelay(base, body)
	}
	baseNsPerOp := float64(time.Since(start).Nanoseconds()) / float64(n)
	if baseNsPerOp > 0 {
		b.ReportMetric(nsPerOp/baseNsPerOp, "x-baseline")
	}
}

// BenchmarkStreamRelayBaseline is the floor BenchmarkStreamRelay is compared
// with: the same request, model, writer and bytes, with no decoding or
// encoding.
func BenchmarkStreamRelayBaseline(b *testing.B) {
	deltas := relayAnswer(relayDeltas)
	lines, size := wireLines(b, deltas)
	benchRelay(b, baselineHandler(scriptedModel(deltas), lines), size)
}

// BenchmarkStreamRelayEmpty measures the request's fixed cost: the same
// request answered with no content delta, only the role and the finish.
// (BenchmarkStreamRelay - BenchmarkStreamRelayEmpty) / 500 is the cost of
// one delta.
func BenchmarkStreamRelayEmpty(b *testing.B) {
	h := newRelayHandler(nil)
	_, size := wireLines(b, nil)
	b.SetBytes(int64(size))
	b.ReportAllocs()
	body := strings.NewReader("")
	for b.Loop() {
		if w := serveRelay(h, body); w.written != size {
			b.Fatalf("answered %d bytes, want %d", w.written, size)
		}
	}
}
