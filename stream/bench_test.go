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
	"sync"
	"testing"

	"github.com/aoaiblocks/securechat/stream"
)

// relayDeltas is the length of the answer the relay benchmarks stream.
const relayDeltas = 500

// relayTokens are the pieces answers are made of: word-sized, as a model's
// tokens are, with the markdown and quotes that make the writer escape now
// and then.
var relayTokens = []string{
	"The", " quick", " brown", " fox", " jumps", " over", " the", " lazy",
	" dog", ".", "\n\n", "**", "Note", ":**", " it", " said", " \"", "hello",
	"\"", " and", " left", ".",
}

// relayBody is the request the benchmarks post: a short conversation.
const relayBody = `{"messages":[` +
	`{"role":"user","content":"Tell me about foxes."},` +
	`{"role":"assistant","content":"Foxes are small omnivores."},` +
	`{"role":"user","content":"And dogs?"}]}`

// answer returns an n-delta answer cycling through relayTokens.
func answer(n int) []stream.Delta {
	ds := make([]stream.Delta, n)
	for i := range ds {
		ds[i].Content = relayTokens[i%len(relayTokens)]
	}
	return ds
}

// scriptedModel is an in-process model that streams deltas, then a finish
// with usage, and allocates nothing per delta itself.
func scriptedModel(deltas []stream.Delta) stream.Model {
	usage := &stream.Usage{PromptTokens: 30, CompletionTokens: int64(len(deltas))}
	usage.TotalTokens = usage.PromptTokens + usage.CompletionTokens
	return stream.ModelFunc(func(ctx context.Context,
		_ *stream.Request) iter.Seq2[stream.Delta, error] {
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

// discardWriter is an http.ResponseWriter (and http.Flusher) that counts
// what it is given and keeps nothing, so the benchmarks measure the handler
// and not a network or a buffer.
type discardWriter struct {
	header  http.Header
	status  int
	written int
	flushes int
}

func newDiscardWriter() *discardWriter { return &discardWriter{header: http.Header{}} }

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

// relayRequest returns a request for the streaming endpoint, reusing body.
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

// newRelayHandler returns the handler the relay benchmarks and the
// allocation test measure: defaults, logging discarded.
func newRelayHandler(deltas []stream.Delta) http.Handler {
	return stream.NewHandler(scriptedModel(deltas),
		&stream.Options{Logger: slog.New(slog.DiscardHandler)})
}

// wireLines returns the exact lines the handler writes for deltas (what the
// baseline replays), and their total size.
func wireLines(tb testing.TB, deltas []stream.Delta) ([][]byte, int) {
	tb.Helper()
	h := newRelayHandler(deltas)
	var out recordWriter
	out.header = http.Header{}
	h.ServeHTTP(&out, relayRequest(strings.NewReader("")))
	if out.status != http.StatusOK {
		tb.Fatalf("handler answered %d: %s", out.status, out.body.String())
	}
	lines := bytes.SplitAfter(out.body.Bytes(), []byte("\n"))
	if last := lines[len(lines)-1]; len(last) == 0 {
		lines = lines[:len(lines)-1]
	}
	if want := len(deltas) + 2; len(lines) != want {
		tb.Fatalf("handler wrote %d lines, want %d", len(lines), want)
	}
	for i, l := range lines {
		if !json.Valid(l) {
			tb.Fatalf("line %d is not JSON: %q", i, l)
		}
	}
	return lines, out.body.Len()
}

// recordWriter is a ResponseWriter that keeps the body.
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

// baselineHandler is the floor the relay is compared with: it serves the
// same request through the same plumbing (it drains the body, ranges over
// the same model, writes and flushes a line per delta through an
// http.ResponseController), but decodes nothing and encodes nothing: it
// writes lines prepared in advance.
func baselineHandler(model stream.Model, lines [][]byte) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		rc := http.NewResponseController(w)
		w.Header().Set("Content-Type", "application/jsonl")
		w.WriteHeader(http.StatusOK)
		i := 0
		for _, err := range model.Stream(r.Context(), nil) {
			if err != nil || i >= len(lines) {
				break
			}
			if i == 0 { // the role line goes out with the first delta
				_, _ = w.Write(lines[0])
				i++
			}
			_, _ = w.Write(lines[i])
			_ = rc.Flush()
			i++
		}
	})
}

// serveRelay runs one request through h into a new discarding writer.
func serveRelay(h http.Handler, body *strings.Reader) *discardWriter {
	w := newDiscardWriter()
	h.ServeHTTP(w, relayRequest(body))
	return w
}

// benchRelay measures h serving one relayDeltas answer per iteration and
// reports, besides ns/op, the cost per delta. It returns ns/op.
func benchRelay(b *testing.B, h http.Handler, lineBytes int) float64 {
	body := strings.NewReader("")
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	n := 0
	for b.Loop() {
		w := serveRelay(h, body)
		if w.status != http.StatusOK || w.written != lineBytes {
			b.Fatalf("status %d, %d bytes written, want 200, %d", w.status, w.written,
				lineBytes)
		}
		n++
	}
	runtime.ReadMemStats(&after)

	deltas := float64(n * relayDeltas)
	b.ReportMetric(float64(after.Mallocs-before.Mallocs)/deltas, "allocs/delta")
	b.ReportMetric(float64(after.TotalAlloc-before.TotalAlloc)/deltas, "B/delta")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/deltas, "ns/delta")
	b.SetBytes(int64(lineBytes))
	return float64(b.Elapsed().Nanoseconds()) / float64(n)
}

// baselineNsPerOp is the baseline's ns/op, measured once per process for
// BenchmarkRelay's ratio.
var baselineNsPerOp = sync.OnceValue(func() float64 {
	deltas := answer(relayDeltas)
	var lines [][]byte
	var size int
	r := testing.Benchmark(func(b *testing.B) {
		if lines == nil {
			lines, size = wireLines(b, deltas)
		}
		benchRelay(b, baselineHandler(scriptedModel(deltas), lines), size)
	})
	return float64(r.NsPerOp())
})

// BenchmarkRelay measures the streaming handler relaying a 500-delta answer
// from an in-process model to a discarding writer that supports Flush. It
// reports allocations and bytes per delta (the request's fixed cost shared
// out over its deltas), the mean line size, and x-baseline: its time over
// that of BenchmarkRelayBaseline, which writes the same bytes through the
// same plumbing with no decoding or encoding.
func BenchmarkRelay(b *testing.B) {
	deltas := answer(relayDeltas)
	lines, size := wireLines(b, deltas)
	h := newRelayHandler(deltas)

	nsPerOp := benchRelay(b, h, size)
	b.ReportMetric(float64(size)/float64(len(lines)), "B/line")
	if base := baselineNsPerOp(); base > 0 {
		b.ReportMetric(nsPerOp/base, "x-baseline")
	}
}

// BenchmarkRelayBaseline is the floor BenchmarkRelay is compared with: the
// same request, model, writer and lines, written with no decoding or
// encoding.
func BenchmarkRelayBaseline(b *testing.B) {
	deltas := answer(relayDeltas)
	lines, size := wireLines(b, deltas)
	benchRelay(b, baselineHandler(scriptedModel(deltas), lines), size)
}
