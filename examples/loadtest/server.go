package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"runtime"
	"runtime/metrics"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"

	"github.com/aoaiblocks/securechat/examples/chatapp/app"
	"github.com/aoaiblocks/securechat/keyless"
)

// report is what a run found.
type report struct {
	Config  config `json:"config"`
	Machine struct {
		CPUs       int    `json:"cpus"`
		GOMAXPROCS int    `json:"gomaxprocs"`
		Go         string `json:"go"`
	} `json:"machine"`

	Chats           result  `json:"chats"`
	ChatsPerSec     float64 `json:"chats_per_second"`
	DeltasPerSec    float64 `json:"deltas_per_second"`
	OpenPeak        int     `json:"open_streams_peak"`
	AllOpen         bool    `json:"all_open_measured"`
	HeapBase        uint64  `json:"heap_base_bytes"`
	HeapOpen        uint64  `json:"heap_all_open_bytes"`
	HeapPerStream   float64 `json:"heap_per_open_stream_bytes"`
	GoroutinesBase  int     `json:"goroutines_before"`
	GoroutinesOpen  int     `json:"goroutines_all_open"`
	GoroutinesAfter int     `json:"goroutines_after"`
	RSSOpenKiB      int64   `json:"rss_all_open_kib"`
	RSSPeakKiB      int64   `json:"rss_peak_kib"`

	Targets     []target `json:"targets"`
	TargetsHold bool     `json:"targets_hold"`
}

// target is one of the targets and whether the run met it.
type target struct {
	What string `json:"what"`
	Held bool   `json:"held"`
}

// run starts the world, serves the app to it, and measures. setenv sets a
// variable of this process (os.Setenv, or t.Setenv in a test): MSAL, under
// azidentity, reads the managed identity endpoint from the process
// environment only.
func run(ctx context.Context, cfg config, exe string,
	setenv func(k, v string) error) (*report, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Duration+3*time.Minute)
	defer cancel()

	w, err := startWorld(ctx, cfg, exe)
	if err != nil {
		return nil, err
	}
	defer w.stop()

	srv, err := serveApp(ctx, w.hello, setenv)
	if err != nil {
		return nil, err
	}
	defer srv.stop()

	rep := &report{Config: cfg}
	rep.Machine.CPUs, rep.Machine.GOMAXPROCS = runtime.NumCPU(), runtime.GOMAXPROCS(0)
	rep.Machine.Go = runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH

	if err := srv.warmUp(ctx, cfg.Deltas); err != nil {
		return nil, fmt.Errorf("loadtest: the first chat failed: %w", err)
	}
	rep.GoroutinesBase, rep.HeapBase = srv.settle(ctx, 0)

	sampled := srv.sample(cfg.Clients)
	if err := writeJSONLine(w.in, start{AppURL: srv.url}); err != nil {
		return nil, err
	}
	res, err := w.result(ctx, cfg.Duration+time.Minute)
	peak := sampled()
	if err != nil {
		return nil, err
	}
	rep.Chats = res
	rep.OpenPeak = peak.openPeak
	if peak.measured {
		rep.AllOpen = true
		rep.HeapOpen, rep.GoroutinesOpen, rep.RSSOpenKiB = peak.heap, peak.goroutines,
			peak.rssKiB
		rep.HeapPerStream = float64(int64(peak.heap)-int64(rep.HeapBase)) /
			float64(cfg.Clients)
	}
	if s := res.Wall.Seconds(); s > 0 {
		rep.ChatsPerSec = float64(res.OK) / s
		rep.DeltasPerSec = float64(res.OK*cfg.Deltas) / s
	}

	rep.GoroutinesAfter, _ = srv.settle(ctx, rep.GoroutinesBase)
	rep.RSSPeakKiB = procStatusKiB("VmHWM")
	rep.judge()
	return rep, nil
}

// judge checks the targets.
func (r *report) judge() {
	c := r.Config
	r.Targets = []target{
		{fmt.Sprintf("%d streams open at once", c.Clients), r.AllOpen},
		{fmt.Sprintf("%d chats, zero errors", c.Requests),
			r.Chats.OK == c.Requests && r.Chats.Sent == c.Requests && len(r.Chats.Errors) == 0},
		{fmt.Sprintf("goroutines back to the baseline (%d before, %d after)",
			r.GoroutinesBase, r.GoroutinesAfter), r.GoroutinesAfter <= r.GoroutinesBase},
		{fmt.Sprintf("heap per open stream %.1f KiB <= %d KiB", r.HeapPerStream/1024,
			maxHeapPerOpen>>10), r.AllOpen && r.HeapPerStream <= maxHeapPerOpen},
	}
	r.TargetsHold = true
	for _, t := range r.Targets {
		r.TargetsHold = r.TargetsHold && t.Held
	}
}

// write prints the report, as text or as JSON.
func (r *report) write(w io.Writer, asJSON bool) error {
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	}
	c, ch := r.Config, r.Chats
	var b strings.Builder
	fmt.Fprintf(&b, "securechat load test: %d clients, %d chats of %d deltas, %v apart "+
		"(first after %v), bound %v\n", c.Clients, c.Requests, c.Deltas, c.Delay,
		c.FirstDelay, c.Duration)
	fmt.Fprintf(&b, "machine: %d CPUs, GOMAXPROCS %d, %s\n", r.Machine.CPUs,
		r.Machine.GOMAXPROCS, r.Machine.Go)
	fmt.Fprintf(&b, "chats: %d sent, %d ok, %d failed in %v: %.1f chats/s, %.0f deltas/s\n",
		ch.Sent, ch.OK, ch.Sent-ch.OK, ch.Wall.Round(time.Millisecond), r.ChatsPerSec,
		r.DeltasPerSec)
	for kind, n := range ch.Errors {
		fmt.Fprintf(&b, "  %d x %s\n", n, kind)
	}
	for _, e := range ch.FirstErrs {
		fmt.Fprintf(&b, "  e.g. %s\n", e)
	}
	fmt.Fprintf(&b, "time to first byte: p50 %v, p99 %v, max %v\n", ms(ch.TTFB.P50),
		ms(ch.TTFB.P99), ms(ch.TTFB.Max))
	fmt.Fprintf(&b, "time to last byte:  p50 %v, p99 %v, max %v\n", ms(ch.TTLB.P50),
		ms(ch.TTLB.P99), ms(ch.TTLB.Max))
	if r.AllOpen {
		fmt.Fprintf(&b, "server with all %d streams open: live heap %.1f MiB (%.1f before), "+
			"%.1f KiB per stream; %d goroutines (%d before); RSS %.1f MiB\n", c.Clients,
			mib(r.HeapOpen), mib(r.HeapBase), r.HeapPerStream/1024, r.GoroutinesOpen,
			r.GoroutinesBase, float64(r.RSSOpenKiB)/1024)
	} else {
		fmt.Fprintf(&b, "server: never had all %d streams open at once (peak %d)\n",
			c.Clients, r.OpenPeak)
	}
	fmt.Fprintf(&b, "server: peak RSS (VmHWM) %.1f MiB; goroutines %d before, %d after\n",
		float64(r.RSSPeakKiB)/1024, r.GoroutinesBase, r.GoroutinesAfter)
	fmt.Fprintf(&b, "upstream: %d token request(s) to the identity endpoint, "+
		"%d TLS connection(s) to Azure OpenAI\n", ch.IdentityCalls, ch.TLSConnections)
	b.WriteString("targets:\n")
	for _, t := range r.Targets {
		mark := "ok  "
		if !t.Held {
			mark = "FAIL"
		}
		fmt.Fprintf(&b, "  %s %s\n", mark, t.What)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func ms(d time.Duration) time.Duration { return d.Round(100 * time.Microsecond) }
func mib(n uint64) float64             { return float64(n) / (1 << 20) }

// procStatusKiB returns a field of /proc/self/status in KiB (VmRSS, VmHWM),
// or -1 where there is none.
func procStatusKiB(field string) int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return -1
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			n, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err == nil {
				return n
			}
		}
	}
	return -1
}

// worldProc is the child process.
type worldProc struct {
	cmd   *exec.Cmd
	in    io.WriteCloser
	lines chan []byte
	hello hello
}

// startWorld starts the child and reads its hello.
func startWorld(ctx context.Context, cfg config, exe string) (*worldProc, error) {
	cfgJSON, err := json.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, exe)
	cmd.Env = append(os.Environ(), worldEnv+"="+string(cfgJSON))
	cmd.Stderr = os.Stderr
	cmd.WaitDelay = 5 * time.Second
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("loadtest: starting the world: %w", err)
	}
	w := &worldProc{cmd: cmd, in: in, lines: make(chan []byte, 2)}
	go func() {
		defer close(w.lines)
		sc := bufio.NewScanner(out)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			w.lines <- append([]byte(nil), sc.Bytes()...)
		}
	}()

	if err := w.read(ctx, time.Minute, &w.hello); err != nil {
		w.stop()
		return nil, fmt.Errorf("loadtest: the world did not start: %w", err)
	}
	if u, err := url.Parse(w.hello.Endpoint); err != nil || u.Scheme != "https" ||
		!isLoopback(u.Hostname()) {
		w.stop()
		return nil, fmt.Errorf("loadtest: the world's endpoint %q is not https on loopback",
			w.hello.Endpoint)
	}
	return w, nil
}

func isLoopback(host string) bool {
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// read decodes the child's next line into v.
func (w *worldProc) read(ctx context.Context, timeout time.Duration, v any) error {
	select {
	case l, ok := <-w.lines:
		if !ok {
			return errors.New("the world exited")
		}
		return json.Unmarshal(l, v)
	case <-time.After(timeout):
		return fmt.Errorf("no answer from the world within %v", timeout)
	case <-ctx.Done():
		return ctx.Err()
	}
}

// result waits for the child's result line.
func (w *worldProc) result(ctx context.Context, timeout time.Duration) (result, error) {
	var res result
	if err := w.read(ctx, timeout, &res); err != nil {
		return res, fmt.Errorf("loadtest: the clients did not report: %w", err)
	}
	return res, nil
}

// stop ends the child: it exits when its input closes.
func (w *worldProc) stop() {
	_ = w.in.Close()
	done := make(chan struct{})
	go func() {
		_ = w.cmd.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = w.cmd.Process.Kill()
		<-done
	}
}

// appServer is the example app serving on loopback, with what measures it.
type appServer struct {
	url      string
	upstream *http.Transport // the app's connections to Azure OpenAI
	meter    *meter
	stopped  chan error
	cancel   context.CancelFunc
}

// serveApp builds the example app against the world's stand-ins and serves
// it on 127.0.0.1.
func serveApp(ctx context.Context, h hello, setenv func(k, v string) error) (*appServer,
	error) {
	for _, k := range []string{"MSI_ENDPOINT", "MSI_SECRET", "IDENTITY_SERVER_THUMBPRINT",
		"IMDS_ENDPOINT"} {
		if err := setenv(k, ""); err != nil {
			return nil, err
		}
	}
	for _, k := range []string{"IDENTITY_ENDPOINT", "IDENTITY_HEADER"} {
		if err := setenv(k, h.IdentityEnv[k]); err != nil {
			return nil, err
		}
	}

	cert, err := x509.ParseCertificate(h.Certificate)
	if err != nil {
		return nil, fmt.Errorf("loadtest: the world's certificate: %w", err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(cert)
	// Like keyless's default client: http.DefaultTransport's settings, here
	// dialing loopback only and trusting the stand-in's certificate.
	upstream := http.DefaultTransport.(*http.Transport).Clone()
	upstream.Proxy = nil
	upstream.DialContext = loopbackDial
	upstream.TLSClientConfig = &tls.Config{RootCAs: roots}

	identityClient := &http.Client{Transport: &http.Transport{
		Proxy: nil, DialContext: loopbackDial}}
	cred, err := keyless.NewCredential(&keyless.CredentialOptions{
		Getenv:        func(k string) string { return h.IdentityEnv[k] },
		ClientOptions: azcore.ClientOptions{Transport: identityClient},
	})
	if err != nil {
		return nil, fmt.Errorf("loadtest: the credential chain: %w", err)
	}
	a, err := app.New(app.Options{
		Config:     keyless.Config{Endpoint: h.Endpoint, Deployment: "loadtest"},
		Credential: cred,
		HTTPClient: &http.Client{Transport: upstream},
	})
	if err != nil {
		return nil, fmt.Errorf("loadtest: the app: %w", err)
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &appServer{
		url:      "http://" + ln.Addr().String(),
		upstream: upstream,
		meter:    &meter{},
		stopped:  make(chan error, 1),
	}
	var serveCtx context.Context
	serveCtx, s.cancel = context.WithCancel(ctx)
	go func() { s.stopped <- app.Serve(serveCtx, ln, s.meter.wrap(a), nil, 5*time.Second) }()
	return s, nil
}

// stop shuts the server down.
func (s *appServer) stop() {
	s.cancel()
	select {
	case <-s.stopped:
	case <-time.After(15 * time.Second):
	}
}

// warmUp sends one chat, so that the credential has its token and the code
// has run once before the baseline is taken.
func (s *appServer) warmUp(ctx context.Context, deltas int) error {
	tr := &http.Transport{Proxy: nil, DialContext: loopbackDial}
	defer tr.CloseIdleConnections()
	_, _, err := chat(ctx, &http.Client{Transport: tr}, s.url+"/chat/stream", 0, deltas)
	return err
}

// settle waits until no chat is in flight and the goroutines are down to
// want (or for a few seconds when want is 0, or they never are), with the
// idle connections to Azure OpenAI closed, then returns the goroutines and
// the live heap.
func (s *appServer) settle(ctx context.Context, want int) (int, uint64) {
	deadline := time.Now().Add(10 * time.Second)
	for s.meter.inflight.Load() > 0 && time.Now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(10 * time.Millisecond)
	}
	s.upstream.CloseIdleConnections()
	deadline = time.Now().Add(5 * time.Second)
	prev, stable := -1, 0
	for time.Now().Before(deadline) && ctx.Err() == nil {
		n := runtime.NumGoroutine()
		if want > 0 && n <= want {
			break
		}
		if n == prev {
			if stable++; want == 0 && stable >= 20 {
				break
			}
		} else {
			prev, stable = n, 0
		}
		time.Sleep(10 * time.Millisecond)
	}
	return runtime.NumGoroutine(), liveHeap()
}

// liveHeap runs a collection and returns the bytes of heap it found live:
// unlike runtime.MemStats.HeapAlloc read afterwards, this leaves out what
// the streams allocated since.
func liveHeap() uint64 {
	runtime.GC()
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	return s[0].Value.Uint64()
}

// peak is what sample saw.
type peak struct {
	openPeak   int
	measured   bool // all streams were open at once, and measured then
	heap       uint64
	goroutines int
	rssKiB     int64
}

// sample watches the open streams until the returned function is called.
// The first time all want streams are open, it measures the live heap, the
// goroutines and the RSS.
func (s *appServer) sample(want int) func() peak {
	var (
		mu   sync.Mutex
		p    peak
		done = make(chan struct{})
		wg   sync.WaitGroup
	)
	wg.Go(func() {
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
			}
			open := int(s.meter.open.Load())
			mu.Lock()
			p.openPeak = max(p.openPeak, open)
			measure := !p.measured && open >= want
			mu.Unlock()
			if !measure {
				continue
			}
			heap := liveHeap()
			g, rss := runtime.NumGoroutine(), procStatusKiB("VmRSS")
			if int(s.meter.open.Load()) < want {
				continue // a stream ended during the collection: try again
			}
			if memProfile != "" {
				runtime.GC() // the profile is as of the collection before last
				writeHeapProfile(memProfile)
			}
			mu.Lock()
			p.measured, p.heap, p.goroutines, p.rssKiB = true, heap, g, rss
			mu.Unlock()
		}
	})
	return func() peak {
		close(done)
		wg.Wait()
		return p
	}
}

// meter counts the app's streams: in flight (from their arrival) and open
// (from their first byte to their end).
type meter struct {
	inflight atomic.Int64
	open     atomic.Int64
}

func (m *meter) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		m.inflight.Add(1)
		defer m.inflight.Add(-1)
		mw := &meteredWriter{ResponseWriter: w, m: m}
		h.ServeHTTP(mw, r)
		if mw.open {
			m.open.Add(-1)
		}
	})
}

// meteredWriter tells its meter of a stream's first byte.
type meteredWriter struct {
	http.ResponseWriter
	m    *meter
	open bool
}

func (w *meteredWriter) Write(p []byte) (int, error) {
	if !w.open {
		w.open = true
		w.m.open.Add(1)
	}
	return w.ResponseWriter.Write(p)
}

// Unwrap lets http.ResponseController reach the server's writer.
func (w *meteredWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// writeHeapProfile writes the heap profile to file, reporting a failure on
// stderr.
func writeHeapProfile(file string) {
	f, err := os.Create(file)
	if err == nil {
		err = pprof.WriteHeapProfile(f)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadtest: -memprofile:", err)
	}
}
