// Package testlog captures log output in this module's tests: a Buffer that
// loggers on many goroutines may write to at once, and the JSON lines it holds,
// decoded.
package testlog

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
)

// Buffer is a bytes.Buffer safe for concurrent use, for a slog handler to write
// to while a test reads. The zero value is ready to use.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

// String returns everything written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// Lines decodes each non-blank line written so far as a JSON object, such as a
// slog.JSONHandler writes. It fails on the first line that is not one.
func (b *Buffer) Lines() ([]map[string]any, error) {
	var out []map[string]any
	for _, line := range strings.Split(b.String(), "\n") {
		if strings.TrimSpace(line) == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			return out, fmt.Errorf("testlog: log line %q is not a JSON object: %w", line, err)
		}
		out = append(out, m)
	}
	return out, nil
}
