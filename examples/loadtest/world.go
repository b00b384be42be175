package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aoaiblocks/securechat/aoaitest"
)

// hello is the child's first line: where its stand-ins are.
type hello struct {
	Endpoint    string            `json:"endpoint"`     // Azure OpenAI stand-in
	Certificate []byte            `json:"certificate"`  // its certificate, DER
	IdentityEnv map[string]string `json:"identity_env"` // IDENTITY_ENDPOINT and the rest
}

// start is the server's answer to hello: where the app listens.
type start struct {
	AppURL string `json:"app_url"`
}

// result is the child's second line: how the chats went.
type result struct {
	Sent      int            `json:"sent"`
	OK        int            `json:"ok"`
	Errors    map[string]int `json:"errors,omitempty"` // by kind
	FirstErrs []string       `json:"first_errors,omitempty"`
	Wall      time.Duration  `json:"wall"`
	TTFB      latency        `json:"ttfb"`
	TTLB      latency        `json:"ttlb"`

	IdentityCalls  int `json:"identity_calls"`
	TLSConnections int `json:"upstream_tls_connections"`
}

// latency summarises durations.
type latency struct {
	P50 time.Duration `json:"p50"`
	P99 time.Duration `json:"p99"`
	Max time.Duration `json:"max"`
}

func summarise(ds []time.Duration) latency {
	if len(ds) == 0 {
		return latency{}
	}
	slices.Sort(ds)
	at := func(q float64) time.Duration { return ds[int(q*float64(len(ds)-1)+0.5)] }
	return latency{P50: at(0.50), P99: at(0.99), Max: ds[len(ds)-1]}
}

// worldMain runs the child: the stand-ins and the clients. It talks to the
// server over in (its stdin) and out (its stdout), and returns the exit
// status.
func worldMain(cfgJSON string, in io.Reader, out io.Writer) int {
	var cfg config
	if err := json.Unmarshal([]byte(cfgJSON), &cfg); err != nil {
		fmt.Fprintln(os.Stderr, "loadtest world:", err)
		return 2
	}
	if err := world(cfg, in, out); err != nil {
		fmt.Fprintln(os.Stderr, "loadtest world:", err)
		return 2
	}
	return 0
}

func world(cfg config, in io.Reader, out io.Writer) error {
	if err := cfg.validate(); err != nil {
		return err
	}
	id := aoaitest.NewIdentity()
	defer id.Close()
	aoai := aoaitest.NewAzureOpenAI()
	defer aoai.Close()
	reply := answer(cfg)
	aoai.Script = func(*aoaitest.ChatRequest) aoaitest.Reply { return reply }

	err := writeJSONLine(out, hello{
		Endpoint:    aoai.URL,
		Certificate: aoai.Certificate().Raw,
		IdentityEnv: id.Env(),
	})
	if err != nil {
		return err
	}

	// The server's lines, then the end of its input: the child's bound.
	lines := make(chan []byte)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(in)
		for sc.Scan() {
			lines <- bytes.Clone(sc.Bytes())
		}
	}()
	var st start
	select {
	case l, ok := <-lines:
		if !ok {
			return errors.New("the server went away before starting")
		}
		if err := json.Unmarshal(l, &st); err != nil {
			return err
		}
	case <-time.After(time.Minute):
		return errors.New("the server did not start within a minute")
	}
	if err := checkLoopbackURL(st.AppURL); err != nil {
		return err
	}

	res := drive(cfg, st.AppURL)
	res.IdentityCalls = id.Calls()
	res.TLSConnections = aoai.TLSConnections()
	if err := writeJSONLine(out, res); err != nil {
		return err
	}

	// Keep the stand-ins up while the server counts its goroutines: until
	// it closes our input, or for a minute at most.
	timeout := time.After(time.Minute)
	for {
		select {
		case _, ok := <-lines:
			if !ok {
				return nil
			}
		case <-timeout:
			return nil
		}
	}
}

// answer is the stand-in's reply to every chat: cfg.Deltas word-sized deltas
// at cfg.Delay apart.
func answer(cfg config) aoaitest.Reply {
	words := []string{"Keyless", " tokens", " stream", " through", " the", " relay",
		" one", " delta", " at", " a", " time", "."}
	deltas := make([]string, cfg.Deltas)
	for i := range deltas {
		deltas[i] = words[i%len(words)]
	}
	return aoaitest.Reply{Deltas: deltas, FirstDelay: cfg.FirstDelay, ChunkDelay: cfg.Delay}
}

// checkLoopbackURL refuses a URL whose host is not a loopback IP address.
func checkLoopbackURL(u string) error {
	rest, ok := strings.CutPrefix(u, "http://")
	host, _, err := net.SplitHostPort(strings.TrimSuffix(rest, "/"))
	if ip := net.ParseIP(host); !ok || err != nil || ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("app URL %q is not http on a loopback address", u)
	}
	return nil
}

// loopbackDial dials loopback TCP addresses only.
func loopbackDial(ctx context.Context, network, addr string) (net.Conn, error) {
	host, _, err := net.SplitHostPort(addr)
	if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
		return nil, fmt.Errorf("loadtest: refused to dial %s: not a loopback address", addr)
	}
	var d net.Dialer
	return d.DialContext(ctx, network, addr)
}

// drive sends cfg.Requests chats to the app, cfg.Clients at a time, and
// stops after cfg.Duration.
func drive(cfg config, appURL string) result {
	ctx, cancel := context.WithTimeout(context.Background(), cfg.Duration)
	defer cancel()
	tr := &http.Transport{
		Proxy:               nil,
		DialContext:         loopbackDial,
		MaxIdleConnsPerHost: cfg.Clients,
		DisableCompression:  true,
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	url := strings.TrimSuffix(appURL, "/") + "/chat/stream"

	var (
		tickets atomic.Int64
		mu      sync.Mutex
		res     = result{Errors: map[string]int{}}
		ttfb    = make([]time.Duration, 0, cfg.Requests)
		ttlb    = make([]time.Duration, 0, cfg.Requests)
		wg      sync.WaitGroup
	)
	begin := time.Now()
	for range cfg.Clients {
		wg.Go(func() {
			for ctx.Err() == nil {
				n := tickets.Add(1)
				if n > int64(cfg.Requests) {
					return
				}
				first, last, err := chat(ctx, client, url, int(n), cfg.Deltas)
				mu.Lock()
				res.Sent++
				if err != nil {
					kind := errorKind(ctx, err)
					res.Errors[kind]++
					if len(res.FirstErrs) < 5 {
						res.FirstErrs = append(res.FirstErrs, err.Error())
					}
				} else {
					res.OK++
					ttfb = append(ttfb, first)
					ttlb = append(ttlb, last)
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	res.Wall = time.Since(begin)
	res.TTFB, res.TTLB = summarise(ttfb), summarise(ttlb)
	return res
}

// errorKind names the kind of a failed chat, for the report.
func errorKind(ctx context.Context, err error) string {
	var se statusError
	switch {
	case ctx.Err() != nil:
		return "cut by -duration"
	case errors.As(err, &se):
		return "status " + strconv.Itoa(int(se))
	case errors.Is(err, errTruncated):
		return "truncated"
	case errors.Is(err, errErrorLine):
		return "error line"
	case errors.Is(err, errDeltaCount):
		return "wrong delta count"
	}
	return "transport"
}

// Failures of a chat that are not the transport's.
var (
	errTruncated  = errors.New("the stream ended without its last line")
	errErrorLine  = errors.New("the stream has an error line")
	errDeltaCount = errors.New("the stream has the wrong number of deltas")
)

type statusError int

func (s statusError) Error() string { return "status " + strconv.Itoa(int(s)) }

// chat streams one answer and returns the times to its first and last byte.
func chat(ctx context.Context, client *http.Client, url string, n, deltas int) (
	first, last time.Duration, err error) {
	body := `{"messages":[{"role":"user","content":"Question ` + strconv.Itoa(n) +
		`: how many deltas will this answer have?"}]}`
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		return 0, 0, err
	}
	req.Header.Set("Content-Type", "application/json")

	t0 := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
		return 0, 0, statusError(resp.StatusCode)
	}

	r := bufio.NewReaderSize(resp.Body, 4096)
	lines, content, finished := 0, 0, false
	for {
		line, err := r.ReadSlice('\n')
		if len(line) > 0 {
			if lines == 0 {
				first = time.Since(t0)
			}
			lines++
			finished = bytes.Contains(line, []byte(`"finish_reason"`))
			switch {
			case bytes.HasPrefix(line, []byte(`{"error"`)):
				return 0, 0, fmt.Errorf("%w: %s", errErrorLine, bytes.TrimSpace(line))
			case bytes.HasPrefix(line, []byte(`{"delta":{"content"`)):
				content++
			}
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return 0, 0, err
		}
	}
	last = time.Since(t0)
	if !finished {
		return 0, 0, errTruncated
	}
	if content != deltas {
		return 0, 0, fmt.Errorf("%w: %d, want %d", errDeltaCount, content, deltas)
	}
	return first, last, nil
}
