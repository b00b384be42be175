package aoaitest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// recordingTB stands in for the test a guard watches: it collects the failures the
// guard reports instead of failing the real test.
type recordingTB struct {
	testing.TB
	mu   sync.Mutex
	errs []string
}

func (r *recordingTB) Errorf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}

func (r *recordingTB) failures() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.errs...)
}

// safeInner is the dialer handed to the guard under test. It records every address
// it is given and, as a second line of defence, never dials a non-loopback one.
type safeInner struct {
	mu     sync.Mutex
	dialed []string
}

func (s *safeInner) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	s.mu.Lock()
	s.dialed = append(s.dialed, addr)
	s.mu.Unlock()
	host, _, err := net.SplitHostPort(addr)
	if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
		return nil, errors.New("test: inner dialer was given a non-loopback address")
	}
	return (&net.Dialer{}).DialContext(ctx, network, addr)
}

func (s *safeInner) addrs() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.dialed...)
}

var nonLoopbackURLs = []string{
	"http://169.254.169.254/metadata/identity/oauth2/token?api-version=2018-02-01",
	"http://[fe80::a9fe:a9fe]/metadata",
	"http://[::ffff:169.254.169.254]/metadata",
	"https://example.com/",
	"https://10.1.2.3:8443/",
	"http://192.0.2.1/",
	"https://127.0.0.1.nip.io/",
	"http://localhost.example.com/",
}

func TestLoopbackTargetAcceptsOnlyLoopbackTCP(t *testing.T) {
	tests := []struct {
		network, addr string
		want          string
		ok            bool
	}{
		{"tcp", "127.0.0.1:80", "127.0.0.1:80", true},
		{"tcp4", "127.9.8.7:1", "127.9.8.7:1", true},
		{"tcp6", "[::1]:443", "[::1]:443", true},
		{"tcp", "localhost:8080", "127.0.0.1:8080", true},
		{"tcp", "LOCALHOST:8080", "127.0.0.1:8080", true},
		{"tcp", "169.254.169.254:80", "", false},
		{"tcp", "[::ffff:169.254.169.254]:80", "", false},
		{"tcp", "example.com:443", "", false},
		{"tcp", "localhost.example.com:443", "", false},
		{"tcp", "0.0.0.0:80", "", false},
		{"udp", "127.0.0.1:53", "", false},
		{"unix", "/var/run/docker.sock", "", false},
		{"tcp", "127.0.0.1", "", false},
	}
	for _, tt := range tests {
		got, ok := loopbackTarget(tt.network, tt.addr)
		if got != tt.want || ok != tt.ok {
			t.Errorf("loopbackTarget(%q, %q) = %q, %v; want %q, %v",
				tt.network, tt.addr, got, ok, tt.want, tt.ok)
		}
	}
}

func TestGuardRefusesNonLoopbackWithoutCallingTheDialer(t *testing.T) {
	before := http.DefaultTransport
	inner := &safeInner{}
	rt := &recordingTB{TB: t}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprint(w, "ok")
	}))
	defer srv.Close()

	t.Run("guarded", func(t *testing.T) {
		rt.TB = t
		hc := guard(rt, inner.dial)
		if http.DefaultTransport == before {
			t.Fatal("http.DefaultTransport was not replaced")
		}
		for _, c := range []*http.Client{hc, http.DefaultClient} {
			res, err := c.Get(srv.URL)
			if err != nil {
				t.Fatalf("loopback request: %v", err)
			}
			res.Body.Close()
		}
		for _, c := range []*http.Client{hc, http.DefaultClient} {
			for _, u := range nonLoopbackURLs {
				res, err := c.Get(u)
				if err == nil {
					res.Body.Close()
				}
				if !errors.Is(err, ErrNotLoopback) {
					t.Errorf("GET %s: err = %v, want ErrNotLoopback", u, err)
				}
			}
		}
	})

	if http.DefaultTransport != before {
		t.Error("http.DefaultTransport was not restored when the test ended")
	}
	srvAddr := strings.TrimPrefix(srv.URL, "http://")
	for _, a := range inner.addrs() {
		if a != srvAddr {
			t.Errorf("inner dialer was called for %q; want only %q", a, srvAddr)
		}
	}
	if got, want := len(rt.failures()), 2*len(nonLoopbackURLs); got != want {
		t.Errorf("guard reported %d failures, want %d: %q", got, want, rt.failures())
	}
	for _, f := range rt.failures() {
		if !strings.Contains(f, "tests must stay on loopback") {
			t.Errorf("failure %q does not say why", f)
		}
	}
}

func TestGuardTrapsRequestsThroughProxyVariables(t *testing.T) {
	inner := &safeInner{}
	rt := &recordingTB{TB: t}
	guard(rt, inner.dial)

	proxy, err := url.Parse(os.Getenv("HTTPS_PROXY"))
	if err != nil || proxy.Hostname() != "127.0.0.1" {
		t.Fatalf("HTTPS_PROXY = %q, want the loopback trap", os.Getenv("HTTPS_PROXY"))
	}
	// A client with its own transport that honours the proxy variables, as azcore's
	// default transport does; its dialer is loopback-only so nothing can leave.
	tr := newTransport(&loopbackDialer{inner: inner.dial})
	tr.Proxy = http.ProxyURL(proxy)
	c := &http.Client{Transport: tr}
	defer tr.CloseIdleConnections()

	res, err := c.Get("http://169.254.169.254/metadata/identity/oauth2/token")
	if err != nil {
		t.Fatalf("plain request through the trap: %v", err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusForbidden {
		t.Errorf("trap answered %d, want 403", res.StatusCode)
	}
	if _, err := c.Get("https://example.com/"); err == nil {
		t.Error("CONNECT through the trap succeeded")
	}

	want := []string{
		"aoaitest: guard refused a request through the proxy variables to " +
			"169.254.169.254: tests must stay on loopback",
		"aoaitest: guard refused a request through the proxy variables to " +
			"example.com:443: tests must stay on loopback",
	}
	if diff := cmp.Diff(want, rt.failures()); diff != "" {
		t.Errorf("failures (-want +got):\n%s", diff)
	}
	for _, a := range inner.addrs() {
		if a != proxy.Host {
			t.Errorf("dialed %q; want only the trap %q", a, proxy.Host)
		}
	}
}

func TestGuardIsolatesEnvironment(t *testing.T) {
	poison := map[string]string{
		"AZURE_CLIENT_ID": "poison", "AZURE_TOKEN_CREDENTIALS": "dev",
		"AZURE_FEDERATED_TOKEN_FILE": "/poison", "IDENTITY_ENDPOINT": "http://192.0.2.1",
		"IDENTITY_HEADER": "poison", "MSI_ENDPOINT": "http://192.0.2.1",
		"IMDS_ENDPOINT": "http://192.0.2.1", "OPENAI_API_KEY": "poison",
		"OPENAI_BASE_URL": "http://192.0.2.1", "AZD_CONFIG_DIR": "/poison",
		"NO_PROXY": "*", "HOME": "/poison",
	}
	for k, v := range poison {
		t.Setenv(k, v)
	}
	t.Run("guarded", func(t *testing.T) {
		Guard(t)
		for k := range poison {
			v, ok := os.LookupEnv(k)
			switch k {
			case "HOME", "AZD_CONFIG_DIR":
				if v == "/poison" || !strings.HasPrefix(v, os.TempDir()) {
					t.Errorf("%s = %q, want a temporary directory", k, v)
				}
			default:
				if ok {
					t.Errorf("%s = %q, want unset", k, v)
				}
			}
		}
	})
	for k, v := range poison {
		if got := os.Getenv(k); got != v {
			t.Errorf("after the test %s = %q, want %q restored", k, got, v)
		}
	}
}

func TestAzureOpenAIClientRefusesNonLoopbackAndFailsGuardedTest(t *testing.T) {
	rt := &recordingTB{TB: t}
	guard(rt, (&safeInner{}).dial)
	srv := NewAzureOpenAI()
	defer srv.Close()

	_, err := srv.Client().Get("https://192.0.2.1/openai/v1/chat/completions")
	if !errors.Is(err, ErrNotLoopback) {
		t.Errorf("err = %v, want ErrNotLoopback", err)
	}
	want := []string{"aoaitest: guard refused a dial to tcp 192.0.2.1:443: " +
		"tests must stay on loopback"}
	if diff := cmp.Diff(want, rt.failures()); diff != "" {
		t.Errorf("failures (-want +got):\n%s", diff)
	}
}
