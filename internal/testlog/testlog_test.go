package testlog

import (
	"log/slog"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestBufferKeepsEveryLineFromConcurrentLoggers(t *testing.T) {
	var b Buffer
	log := slog.New(slog.NewJSONHandler(&b, &slog.HandlerOptions{
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		},
	}))
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() { log.Info("chat request", "status", 200) })
	}
	wg.Wait()

	lines, err := b.Lines()
	if err != nil {
		t.Fatal(err)
	}
	if len(lines) != 50 {
		t.Fatalf("got %d lines, want 50", len(lines))
	}
	want := map[string]any{"level": "INFO", "msg": "chat request", "status": 200.0}
	if diff := cmp.Diff(want, lines[0]); diff != "" {
		t.Errorf("decoded line (-want +got):\n%s", diff)
	}
}

func TestLinesReportsALineThatIsNotJSON(t *testing.T) {
	var b Buffer
	b.Write([]byte("{\"msg\":\"ok\"}\nnot json\n"))
	lines, err := b.Lines()
	if err == nil {
		t.Fatal("no error for a line that is not JSON")
	}
	if len(lines) != 1 {
		t.Errorf("got %d lines before the bad one, want 1", len(lines))
	}
}
