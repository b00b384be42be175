package keyless

import (
	"io"
	"strings"
	"testing"
)

// chunkedBody yields its chunks one Read at a time and records how much was read.
type chunkedBody struct {
	chunks []string
	read   int
	closed bool
}

func (b *chunkedBody) Read(p []byte) (int, error) {
	if len(b.chunks) == 0 {
		return 0, io.EOF
	}
	n := copy(p, b.chunks[0])
	b.chunks[0] = b.chunks[0][n:]
	if b.chunks[0] == "" {
		b.chunks = b.chunks[1:]
	}
	b.read += n
	return n, nil
}

func (b *chunkedBody) Close() error { b.closed = true; return nil }

func TestStreamBodyIsDrainedOnCloseOnlyAfterTheDoneMarker(t *testing.T) {
	const rest = "\n\n" // what openai-go leaves unread after the marker
	tests := []struct {
		name      string
		chunks    []string
		reads     int // chunks the consumer reads before Close
		wantDrain bool
	}{
		{"marker in one read", []string{"data: {}\n\n", "data: [DONE]", rest}, 2, true},
		{"marker split across reads", []string{"data: {}\n\ndata: [DO", "NE]", rest}, 2, true},
		{"marker split one byte at a time", splitBytes("\n\ndata: [DONE]"), 14, true},
		{"closed before the marker", []string{"data: {}\n\n", "data: [DONE]", rest}, 1, false},
		{"a delta quoting the marker", []string{`data: {"c":"data: [DONE]"}`, "\n\n", rest},
			2, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			chunks := append([]string(nil), tt.chunks...)
			if tt.name == "marker split one byte at a time" {
				chunks = append(chunks, rest)
			}
			body := &chunkedBody{chunks: chunks}
			d := &drainAfterDone{ReadCloser: body}
			buf := make([]byte, 64)
			for range tt.reads {
				if _, err := d.Read(buf); err != nil {
					t.Fatal(err)
				}
			}
			if err := d.Close(); err != nil {
				t.Fatal(err)
			}

			drained := len(body.chunks) == 0
			if drained != tt.wantDrain {
				t.Errorf("body read to its end on Close = %v, want %v (left: %q)",
					drained, tt.wantDrain, strings.Join(body.chunks, ""))
			}
			if !body.closed {
				t.Error("the body was not closed")
			}
		})
	}
}

func splitBytes(s string) []string {
	out := make([]string, len(s))
	for i := range s {
		out[i] = s[i : i+1]
	}
	return out
}
