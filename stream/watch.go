package stream

import (
	"context"
	"sync/atomic"
	"time"
)

// watchLooks is how many times, at least, a watch looks at a request during
// each of its bounds.
const watchLooks = 4

// minWatchStep keeps a watch from looking more than once a millisecond, for
// bounds that short.
const minWatchStep = time.Millisecond

// A watch is the one timer of a request, behind its idle bound and its write
// deadline. The relay tells it of each delta with progress (an atomic add)
// and asks it before each write whether the write deadline is due for an
// extension (an atomic swap): neither reads the clock nor touches a timer,
// which, per delta, cost more than the rest of the relay's work.
//
// The timer looks at the request every step, a step being at most a quarter
// of each bound, chosen so that a whole number of steps makes the idle
// bound. It cancels the request's upstream context with errIdle after that
// many looks in a row without a delta, so
// a model that stops is cut off between the idle bound and 1.25 times it
// after its last delta (later only by the delays of the timer itself). At
// every look it marks the write deadline due; the relay then sets it a write
// timeout and a step ahead, so that a write starts with between the write
// timeout and 1.25 times it ahead (less only by the delays of the timer).
//
// A watch is a field of its exchange, not allocated on its own; the zero
// watch is not started.
type watch struct {
	deltas  atomic.Uint64
	due     atomic.Bool
	stopped atomic.Bool
	t       *time.Timer // nil: not started
	step    time.Duration

	idleLooks int // looks without a delta that make the idle bound; 0: none
	cancel    context.CancelCauseFunc
	seen      uint64 // the delta count at the last look; the timer's own
	quiet     int    // looks in a row without a delta; the timer's own
}

// watchSteps returns the step of a watch for an idle bound and a write
// timeout (0: none), and how many steps make the idle bound (0 when there
// is none). The step is at most a quarter of each bound (but not under
// minWatchStep), and the idle bound is a whole number of steps: n steps of
// at least idle/n each, so that n steps last at least idle, and n+1 at most
// 1.25 times idle (less when n is more than 4).
func watchSteps(idle, write time.Duration) (step time.Duration, idleLooks int) {
	switch {
	case idle <= 0 && write <= 0:
		return 0, 0
	case idle <= 0:
		return max(write/watchLooks, minWatchStep), 0
	}
	n := time.Duration(watchLooks)
	if write > 0 && write < idle {
		// Enough looks per idle bound that a step is at most write/4.
		n = max(n, ceilDiv(idle, max(write/watchLooks, 1)))
	}
	step = max(ceilDiv(idle, n), minWatchStep)
	return step, int(ceilDiv(idle, step))
}

// ceilDiv returns a/b rounded up, for positive a and b, without overflow.
func ceilDiv(a, b time.Duration) time.Duration {
	q := a / b
	if a%b != 0 {
		q++
	}
	return q
}

// start starts w for an idle bound and a write timeout (0: none): when the
// idle bound passes, w calls cancel(errIdle) from its own goroutine. It
// reports false, and starts nothing, when there is neither bound.
func (w *watch) start(idle, write time.Duration, cancel context.CancelCauseFunc) bool {
	step, idleLooks := watchSteps(idle, write)
	if step == 0 {
		return false
	}
	w.step, w.idleLooks, w.cancel = step, idleLooks, cancel
	// Set w.t before the first look can read it.
	w.t = time.AfterFunc(time.Duration(1<<62), w.look)
	w.t.Reset(w.step)
	return true
}

// progress records a delta.
func (w *watch) progress() { w.deltas.Add(1) }

// deadlineDue reports, once per look of the timer, that the write deadline
// should be extended.
func (w *watch) deadlineDue() bool { return w.due.Swap(false) }

// stop ends the watch. It cancels nothing after stop returns, unless by a
// look already under way.
func (w *watch) stop() {
	w.stopped.Store(true)
	w.t.Stop()
}

// look is the timer's work: mark the write deadline due, count a look
// without a delta, and cancel when they make the idle bound. Each look
// runs after the one before has rearmed the timer, so looks never overlap.
func (w *watch) look() {
	if w.stopped.Load() {
		return
	}
	w.due.Store(true)
	if n := w.deltas.Load(); n != w.seen {
		w.seen, w.quiet = n, 0
	} else if w.quiet++; w.idleLooks > 0 && w.quiet >= w.idleLooks {
		w.cancel(errIdle)
		return
	}
	w.t.Reset(w.step)
}
