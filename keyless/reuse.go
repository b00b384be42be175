package keyless

import (
	"bytes"
	"io"
	"mime"
	"net/http"

	"github.com/openai/openai-go/v3/option"
)

// doneMarker is the last event of a streamed answer, at the start of a line. The
// newline keeps a delta that quotes the marker from matching: JSON escapes the
// newlines inside a data line.
var doneMarker = []byte("\ndata: [DONE]")

// maxDrain bounds what reuseStreamConnection reads after the last event.
const maxDrain = 4 << 10

// reuseStreamConnection keeps the connection of a streamed answer for the
// next request. openai-go closes the body of a stream as soon as it reads
// "data: [DONE]", before the end of the chunked body that follows it, and
// net/http closes an HTTP/1.1 connection whose body was not read to its end:
// without this, every streamed chat would open a new TLS connection. After
// the marker, Close first reads what is left (a few bytes); before it, Close
// closes at once, so a client that leaves cuts the upstream answer off.
func reuseStreamConnection(req *http.Request, next option.MiddlewareNext) (*http.Response,
	error) {
	resp, err := next(req)
	if err != nil || resp == nil || resp.Body == nil || resp.ProtoMajor != 1 {
		return resp, err
	}
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt !=
		"text/event-stream" {
		return resp, err
	}
	resp.Body = &drainAfterDone{ReadCloser: resp.Body}
	return resp, err
}

// drainAfterDone is a streamed body that reads to its end on Close once the
// done marker went by.
type drainAfterDone struct {
	io.ReadCloser
	tail [len("\ndata: [DONE]") - 1]byte // the last bytes read, for a marker split
	n    int                             // bytes in tail
	done bool
}

func (b *drainAfterDone) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if !b.done && n > 0 {
		b.done = bytes.Contains(p[:n], doneMarker) || b.split(p[:n])
		b.keepTail(p[:n])
	}
	return n, err
}

// split reports whether the marker starts in tail and ends in p.
func (b *drainAfterDone) split(p []byte) bool {
	if b.n == 0 {
		return false
	}
	var buf [2 * len("\ndata: [DONE]")]byte
	joined := append(buf[:0], b.tail[:b.n]...)
	joined = append(joined, p[:min(len(p), len(doneMarker))]...)
	return bytes.Contains(joined, doneMarker)
}

func (b *drainAfterDone) keepTail(p []byte) {
	if len(p) >= len(b.tail) {
		b.n = copy(b.tail[:], p[len(p)-len(b.tail):])
		return
	}
	keep := min(b.n, len(b.tail)-len(p))
	copy(b.tail[:], b.tail[b.n-keep:b.n])
	b.n = keep + copy(b.tail[keep:], p)
}

func (b *drainAfterDone) Close() error {
	if b.done {
		_, _ = io.CopyN(io.Discard, b.ReadCloser, maxDrain)
	}
	return b.ReadCloser.Close()
}
