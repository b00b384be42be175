package stream_test

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/openai/openai-go/v3/option"

	"github.com/aoaiblocks/securechat/aoaitest"
	"github.com/aoaiblocks/securechat/stream"
)

// failFirst answers "fault" with reply the first n times, then normally.
func failFirst(n int32, reply aoaitest.Reply) func(*aoaitest.ChatRequest) aoaitest.Reply {
	var seen atomic.Int32
	return func(r *aoaitest.ChatRequest) aoaitest.Reply {
		if r.Messages[len(r.Messages)-1].Content == "fault" && seen.Add(1) <= n {
			return reply
		}
		return aoaitest.Text("fine")
	}
}

func TestRetriesAreBoundedInAttemptsAndWait(t *testing.T) {
	throttled := func(d time.Duration) aoaitest.Reply {
		return aoaitest.Reply{Status: 429, RetryAfter: d}
	}
	tests := []struct {
		name   string
		script func(*aoaitest.ChatRequest) aoaitest.Reply
		azure  stream.AzureOptions
		// what the client of the streaming endpoint gets, and how soon
		want     string
		attempts int
		within   time.Duration
	}{
		{name: "throttled: two retries by default",
			script: faultScript(throttled(20 * time.Millisecond)),
			want:   `429 rate_limited Retry-After="1"`, attempts: 3, within: time.Second},
		{name: "throttled once: the retry answers",
			script: failFirst(1, throttled(20*time.Millisecond)),
			want:   "200 complete stream", attempts: 2, within: time.Second},
		{name: "503 with retry-after-ms: two retries by default",
			script: faultScript(aoaitest.Reply{Status: 503, RetryAfter: 20 * time.Millisecond}),
			want:   `502 upstream_error Retry-After=""`, attempts: 3, within: time.Second},
		{name: "Retry-After over MaxRetryWait: no retry, passed on at once",
			script: faultScript(throttled(30 * time.Second)),
			want:   `429 rate_limited Retry-After="30"`, attempts: 1, within: time.Second},
		{name: "MaxRetryWait bounds the backoff too",
			script: faultScript(aoaitest.Reply{Status: 500}), // no Retry-After: backoff
			azure:  stream.AzureOptions{MaxRetryWait: 50 * time.Millisecond},
			want:   `502 upstream_error Retry-After=""`, attempts: 3, within: time.Second},
		{name: "connection cut before the headers is retried",
			script: faultScript(aoaitest.Reply{CutBeforeHeaders: true}),
			azure:  stream.AzureOptions{MaxRetryWait: 50 * time.Millisecond},
			want:   `502 upstream_error Retry-After=""`, attempts: 3, within: time.Second},
		{name: "MaxRetries 1",
			script: faultScript(throttled(20 * time.Millisecond)),
			azure:  stream.AzureOptions{MaxRetries: 1},
			want:   `429 rate_limited Retry-After="1"`, attempts: 2, within: time.Second},
		{name: "negative MaxRetries: no retries",
			script: faultScript(throttled(20 * time.Millisecond)),
			azure:  stream.AzureOptions{MaxRetries: -1},
			want:   `429 rate_limited Retry-After="1"`, attempts: 1, within: time.Second},
		{name: "RequestOptions override the retry fields",
			script: faultScript(throttled(20 * time.Millisecond)),
			azure: stream.AzureOptions{MaxRetries: 2,
				RequestOptions: []option.RequestOption{option.WithMaxRetries(0)}},
			want: `429 rate_limited Retry-After="1"`, attempts: 1, within: time.Second},
		{name: "cut after two chunks: never retried",
			script: faultScript(aoaitest.Reply{Deltas: []string{"a", "b", "c"}, CutAfter: 2}),
			want:   "200 2 lines then upstream_error", attempts: 1, within: time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			azure := tt.azure
			a := newApp(t, setup{script: tt.script, azure: &azure})

			start := time.Now()
			resp, body := post(t, a.url+"/stream", say("fault"))
			took := time.Since(start)

			if got := outcome(t, resp, body, true); got != tt.want {
				t.Errorf("got %s, want %s\nbody: %s", got, tt.want, body)
			}
			if n := upstreamAttempts(a); n != tt.attempts {
				t.Errorf("%d upstream attempts, want %d", n, tt.attempts)
			}
			if took > tt.within {
				t.Errorf("the answer took %v, want at most %v", took, tt.within)
			}
			if l := a.logs.last(t); fmt.Sprint(l["status"]) != fmt.Sprint(resp.StatusCode) {
				t.Errorf("log line status %v, want %d", l["status"], resp.StatusCode)
			}
		})
	}
}

func TestRetryWaitsEndBeforeTheHandlersBounds(t *testing.T) {
	throttled := func(d time.Duration) func(*aoaitest.ChatRequest) aoaitest.Reply {
		return faultScript(aoaitest.Reply{Status: 429, RetryAfter: d})
	}
	tests := []struct {
		name   string
		script func(*aoaitest.ChatRequest) aoaitest.Reply
		opts   stream.Options
		// what the client of the streaming endpoint gets, and how soon
		want        string
		maxAttempts int
		within      time.Duration
	}{
		{name: "a wait longer than the idle timeout is not begun",
			script: throttled(2 * time.Second),
			opts:   stream.Options{IdleTimeout: 500 * time.Millisecond},
			want:   `429 rate_limited Retry-After="2"`, maxAttempts: 1,
			within: 400 * time.Millisecond},
		{name: "a wait that would end past the idle timeout is not begun",
			// The first wait fits (unless the first attempt is very slow); the
			// second would end at about 2 s, past the idle timeout.
			script: throttled(900 * time.Millisecond),
			opts:   stream.Options{IdleTimeout: 1500 * time.Millisecond},
			want:   `429 rate_limited Retry-After="1"`, maxAttempts: 2,
			within: 1400 * time.Millisecond},
		{name: "a wait longer than what is left of the timeout is not begun",
			script: throttled(2 * time.Second),
			opts:   stream.Options{Timeout: 500 * time.Millisecond, IdleTimeout: -1},
			want:   `429 rate_limited Retry-After="2"`, maxAttempts: 1,
			within: 400 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := newApp(t, setup{script: tt.script, opts: tt.opts,
				azure: &stream.AzureOptions{}}) // the default retries

			start := time.Now()
			resp, body := post(t, a.url+"/stream", say("fault"))
			took := time.Since(start)

			if got := outcome(t, resp, body, true); got != tt.want {
				t.Errorf("got %s, want %s\nbody: %s", got, tt.want, body)
			}
			if n := upstreamAttempts(a); n < 1 || n > tt.maxAttempts {
				t.Errorf("%d upstream attempts, want 1 to %d", n, tt.maxAttempts)
			}
			if took > tt.within {
				t.Errorf("the answer took %v, want at most %v", took, tt.within)
			}
		})
	}
}
