package stream_test

import (
	"runtime"
	"strings"
	"testing"
)

// allocsPerAnswer returns the allocations and bytes allocated per request for
// the Handler streaming an answer of n deltas (see bench_test.go), averaged
// over runs requests.
func allocsPerAnswer(n, runs int) (allocs, bytes float64) {
	h := newRelayHandler(relayAnswer(n))
	body := strings.NewReader("")
	serve := func() { serveRelay(h, body) }

	allocs = testing.AllocsPerRun(runs, serve)

	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range runs {
		serve()
	}
	runtime.ReadMemStats(&after)
	return allocs, float64(after.TotalAlloc-before.TotalAlloc) / float64(runs)
}

// TestRelayAllocationsPerDeltaArePinned pins what a streamed answer costs in
// allocations, without timing anything: no allocation for a delta beyond the
// request's fixed cost, and, for a 500-delta answer with that cost shared
// out, at most 2 allocations and at most twice the line's size in bytes per
// delta. The relay benchmarks report the same figures with their times.
func TestRelayAllocationsPerDeltaArePinned(t *testing.T) {
	if testing.Short() {
		t.Skip("counts allocations")
	}
	const few, many, runs = 100, 1100, 40
	fewAllocs, fewBytes := allocsPerAnswer(few, runs)
	manyAllocs, manyBytes := allocsPerAnswer(many, runs)
	allocs, bytes := allocsPerAnswer(relayDeltas, runs)
	lines, size := wireLines(t, relayAnswer(relayDeltas))
	lineSize := float64(size) / float64(len(lines))

	marginal := (manyAllocs - fewAllocs) / (many - few)
	marginalBytes := (manyBytes - fewBytes) / (many - few)
	t.Logf("request: %.0f allocations, %.0f bytes for %d deltas; each further delta: "+
		"%.3f allocations, %.1f bytes; line %.1f bytes", allocs, bytes, relayDeltas,
		marginal, marginalBytes, lineSize)

	// A delta allocates nothing: a single allocation per delta would make
	// marginal 1. The slack covers a pooled buffer the GC took back.
	if marginal > 0.02 {
		t.Errorf("each delta allocates %.3f times, want 0", marginal)
	}
	if perDelta := allocs / relayDeltas; perDelta > 2 {
		t.Errorf("%.2f allocations per delta over a %d-delta answer, want at most 2",
			perDelta, relayDeltas)
	}
	if perDelta := bytes / relayDeltas; perDelta > 2*lineSize {
		t.Errorf("%.1f bytes allocated per delta over a %d-delta answer, want at most "+
			"%.1f (twice the line's %.1f)", perDelta, relayDeltas, 2*lineSize, lineSize)
	}
}
