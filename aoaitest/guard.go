package aoaitest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// ErrNotLoopback is returned (wrapped) by the dialers of this package for any address
// that is not a loopback IP address or "localhost". They return it before sending
// anything: no DNS query, no packet.
var ErrNotLoopback = errors.New("aoaitest: refused to dial a non-loopback address")

// discardLog silences the servers' own logs (a cut connection is expected here).
var discardLog = log.New(io.Discard, "", 0)

// dialFunc is the shape of net.Dialer.DialContext.
type dialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

var netDialer = &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}

// loopbackDialer hands inner only loopback TCP addresses and refuses the rest.
type loopbackDialer struct {
	inner   dialFunc
	refused func(network, addr string) // told of each refusal; may be nil
}

func (d *loopbackDialer) DialContext(ctx context.Context, network, addr string) (net.Conn,
	error) {
	target, ok := loopbackTarget(network, addr)
	if !ok {
		if d.refused != nil {
			d.refused(network, addr)
		}
		return nil, fmt.Errorf("%w: %s %s", ErrNotLoopback, network, addr)
	}
	return d.inner(ctx, network, target)
}

// loopbackTarget returns addr with "localhost" replaced by 127.0.0.1, and whether it
// is a loopback TCP address. Host names other than localhost are refused unresolved.
func loopbackTarget(network, addr string) (string, bool) {
	switch network {
	case "tcp", "tcp4", "tcp6":
	default:
		return "", false
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", false
	}
	if strings.EqualFold(host, "localhost") {
		host = "127.0.0.1"
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return "", false
	}
	return net.JoinHostPort(ip.String(), port), true
}

// newLoopbackTransport returns an HTTP transport that uses no proxy and dials only
// loopback addresses, telling refused of each refusal (the active guard when nil).
func newLoopbackTransport(refused func(network, addr string)) *http.Transport {
	if refused == nil {
		refused = reportToActiveGuard
	}
	return newTransport(&loopbackDialer{inner: netDialer.DialContext, refused: refused})
}

// reportToActiveGuard fails the test of the most recent Guard still running, if any.
func reportToActiveGuard(network, addr string) {
	trapMu.Lock()
	p := theTrap
	trapMu.Unlock()
	if p == nil {
		return
	}
	p.mu.Lock()
	g := p.active
	p.mu.Unlock()
	if g != nil {
		g.report("a dial to " + network + " " + addr)
	}
}

func newTransport(d *loopbackDialer) *http.Transport {
	return &http.Transport{
		Proxy:                 nil,
		DialContext:           d.DialContext,
		MaxIdleConns:          100,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
}

// Guard keeps the test t on loopback and away from the machine's real Azure and
// OpenAI configuration, for the rest of t. It
//
//   - replaces [http.DefaultTransport] with a transport that dials only loopback
//     addresses and fails t (t.Errorf) on any attempt to dial another, refusing it
//     before any DNS query or packet;
//   - points HTTP_PROXY and HTTPS_PROXY at a loopback trap that fails t on any
//     request it receives and forwards nothing, which catches clients with their own
//     transport that honour the proxy variables, such as azcore's default one, and
//     child processes; Go never proxies loopback addresses, so those are unaffected;
//   - unsets every AZURE_*, AZD_*, MSI_*, IDENTITY_*, OPENAI_* and proxy variable,
//     IMDS_ENDPOINT and the other variables that select a credential, and sets HOME,
//     AZD_CONFIG_DIR, AZURE_CONFIG_DIR and XDG_CONFIG_HOME to empty temporary
//     directories, so no credential can find the developer's real sign-in.
//
// It returns an HTTP client with the guarded transport. azcore clients and
// credentials do not use http.DefaultTransport: pass the client as
// azcore.ClientOptions.Transport (it implements policy.Transporter). The client
// trusts the system's roots, not [AzureOpenAI]'s certificate: use
// [AzureOpenAI.Client] for that server, whose dialer is loopback-only too.
//
// Call Guard first in a test, before creating stand-ins or credentials. Like
// t.Setenv it cannot be used in parallel tests. Go's [http.ProxyFromEnvironment]
// reads the proxy variables once per process, so the trap covers it only when no
// request went through it before the first Guard of the process.
func Guard(t testing.TB) *http.Client {
	t.Helper()
	return guard(t, netDialer.DialContext)
}

// guardState reports refusals to its test until the test ends.
type guardState struct {
	t    testing.TB
	mu   sync.Mutex
	done bool
}

func (g *guardState) report(what string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.done {
		g.t.Errorf("aoaitest: guard refused %s: tests must stay on loopback", what)
	}
}

func (g *guardState) stop() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.done = true
}

// guard is Guard with the dialer that receives loopback addresses injected.
func guard(t testing.TB, inner dialFunc) *http.Client {
	t.Helper()
	isolateEnv(t)
	g := &guardState{t: t}

	trap := startTrap()
	prev := trap.setActive(g)
	for _, k := range []string{"HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"} {
		t.Setenv(k, trap.url)
	}

	tr := newTransport(&loopbackDialer{inner: inner, refused: func(network, addr string) {
		g.report("a dial to " + network + " " + addr)
	}})
	old := http.DefaultTransport
	http.DefaultTransport = tr

	t.Cleanup(func() {
		g.stop()
		http.DefaultTransport = old
		trap.setActive(prev)
		tr.CloseIdleConnections()
	})
	return &http.Client{Transport: tr}
}

// isolatedPrefixes and isolatedNames are the variables Guard unsets.
var (
	isolatedPrefixes = []string{"AZURE_", "AZD_", "MSI_", "IDENTITY_", "OPENAI_", "ARM_"}
	isolatedNames    = []string{
		"IMDS_ENDPOINT", "DEFAULT_IDENTITY_CLIENT_ID", "SYSTEM_OIDCREQUESTURI",
		"ACTIONS_ID_TOKEN_REQUEST_URL", "ACTIONS_ID_TOKEN_REQUEST_TOKEN",
		"HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY",
		"http_proxy", "https_proxy", "all_proxy", "no_proxy",
		"SSL_CERT_FILE", "SSL_CERT_DIR",
	}
)

func isolateEnv(t testing.TB) {
	t.Helper()
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		for _, p := range isolatedPrefixes {
			if strings.HasPrefix(k, p) {
				unsetenv(t, k)
				break
			}
		}
	}
	for _, k := range isolatedNames {
		if _, ok := os.LookupEnv(k); ok {
			unsetenv(t, k)
		}
	}
	home := t.TempDir()
	t.Setenv("HOME", home)
	t.Setenv("AZD_CONFIG_DIR", filepath.Join(home, ".azd"))
	t.Setenv("AZURE_CONFIG_DIR", filepath.Join(home, ".azure"))
	t.Setenv("XDG_CONFIG_HOME", filepath.Join(home, ".config"))
}

// trapProxy is the process-wide proxy the guarded environment points at. It answers
// every request 403 and tells the active guard.
type trapProxy struct {
	url    string
	mu     sync.Mutex
	active *guardState
}

var (
	trapMu  sync.Mutex
	theTrap *trapProxy
)

func startTrap() *trapProxy {
	trapMu.Lock()
	defer trapMu.Unlock()
	if theTrap == nil {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			panic("aoaitest: cannot listen on loopback for the proxy trap: " + err.Error())
		}
		theTrap = &trapProxy{url: "http://" + ln.Addr().String()}
		srv := &http.Server{Handler: theTrap, ErrorLog: discardLog,
			ReadHeaderTimeout: 10 * time.Second}
		go srv.Serve(ln)
	}
	return theTrap
}

func (p *trapProxy) setActive(g *guardState) *guardState {
	p.mu.Lock()
	defer p.mu.Unlock()
	prev := p.active
	p.active = g
	return prev
}

func (p *trapProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	target := r.Host
	if r.Method != http.MethodConnect && r.URL.Host != "" {
		target = r.URL.Host
	}
	p.mu.Lock()
	g := p.active
	p.mu.Unlock()
	if g != nil {
		g.report("a request through the proxy variables to " + target)
	}
	http.Error(w, "aoaitest: guard refused a request to "+target+
		": tests must stay on loopback", http.StatusForbidden)
}
