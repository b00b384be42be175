package browsertest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	neturl "net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
)

// Time bounds. A hung browser or page ends the test at testTimeout; the
// browser itself is killed browserGrace later, the time to save what the page
// showed.
const (
	testTimeout  = 60 * time.Second
	browserGrace = 15 * time.Second
	// artifactTimeout bounds saving the screenshot and the HTML of a page.
	artifactTimeout = 10 * time.Second
)

// inCI reports whether the tests run in CI (CI=true), where a missing tool
// fails a test instead of skipping it.
func inCI() bool {
	ci, _ := strconv.ParseBool(os.Getenv("CI"))
	return ci
}

// missingTool skips the test, or fails it in CI, because a tool it needs is
// missing. enable says how to install it.
func missingTool(t *testing.T, missing, enable string) {
	t.Helper()
	if inCI() {
		t.Fatalf("%s (CI=true, so this fails instead of skipping); %s", missing, enable)
	}
	t.Skipf("%s; to run this test, %s", missing, enable)
}

// chromiumPath finds the browser: SECURECHAT_CHROMIUM, or a Chromium on PATH.
//
// Debian's /usr/bin/chromium is a shell launcher that adds the site's flags
// from /etc/chromium.d (Google API keys, remote extensions, ...); the tests
// start the binary it runs, /usr/lib/chromium/chromium, with their own flags.
func chromiumPath(t *testing.T) string {
	t.Helper()
	const enable = "install Debian's chromium package (sudo apt-get install chromium) " +
		"or set SECURECHAT_CHROMIUM to a Chromium binary"
	if p := os.Getenv("SECURECHAT_CHROMIUM"); p != "" {
		if _, err := exec.LookPath(p); err != nil {
			missingTool(t, "SECURECHAT_CHROMIUM is not an executable: "+err.Error(), enable)
		}
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		p, err := exec.LookPath(name)
		if err != nil {
			continue
		}
		if isScript(p) {
			if _, err := os.Stat(debianChromium); err == nil {
				return debianChromium
			}
		}
		return p
	}
	missingTool(t, "no Chromium on PATH", enable)
	return ""
}

// debianChromium is the browser binary of Debian's chromium package.
const debianChromium = "/usr/lib/chromium/chromium"

// isScript reports whether the file at path starts with "#!".
func isScript(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	head := make([]byte, 2)
	n, _ := f.Read(head)
	return string(head[:n]) == "#!"
}

// logBuffer collects the browser's output and the page's console messages,
// for the log of a failed test. It is safe for concurrent use.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) printf(format string, args ...any) {
	fmt.Fprintf(b, format+"\n", args...)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// page is one browser tab. Its methods fail the test on error.
type page struct {
	t   *testing.T
	ctx context.Context // for actions in the tab; ends at the test's deadline
	log *logBuffer

	mu       sync.Mutex
	requests []string // every URL the tab requested
}

// backgroundFeatures are Chromium features that call Google services on their
// own, off on top of chromedp's list (Translate, BlinkGenPropertyTrees).
var backgroundFeatures = strings.Join([]string{
	"Translate", "BlinkGenPropertyTrees", "AutofillServerCommunication",
	"OptimizationHints", "MediaRouter", "DialMediaRouteProvider",
	"CertificateTransparencyComponentUpdater", "NetworkTimeServiceQuerying",
}, ",")

// openPage starts headless Chromium with a fresh profile, opens url in a tab
// and waits until the page says it is ready. The browser stops when the test
// ends; if the test failed, the page is saved first (see saveArtifacts).
//
// The browser must not talk to any host but loopback. The flags turn off its
// background services, as the machines' notes ask, and point the ones that
// have no off switch (component updates, Google account lookups) at a local
// sink. Call openPage after serveApp, whose loopback guard set the proxy
// variables: the browser's proxy is the guard's trap, which fails the test
// on any request to another host. The test also fails if the page itself
// requested anything but its own origin.
func openPage(t *testing.T, url string) *page {
	t.Helper()
	exe := chromiumPath(t)

	deadline := time.Now().Add(testTimeout)
	if d, ok := t.Deadline(); ok && d.Add(-2*browserGrace).Before(deadline) {
		deadline = d.Add(-2 * browserGrace)
	}
	life, endLife := context.WithDeadline(context.Background(), deadline.Add(browserGrace))

	sink := httptest.NewServer(http.NotFoundHandler())
	log := &logBuffer{}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe),
		chromedp.NoSandbox, // the tests run as root in CI
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-domain-reliability", true),
		chromedp.Flag("no-pings", true),
		chromedp.Flag("disable-features", backgroundFeatures),
		chromedp.Flag("component-updater", "url-source="+sink.URL+"/"),
		chromedp.Flag("gaia-url", sink.URL+"/"),
		chromedp.Flag("google-apis-url", sink.URL+"/"),
		chromedp.Flag("lso-url", sink.URL+"/"),
		chromedp.WindowSize(1024, 768),
		chromedp.CombinedOutput(log),
	)
	if trap := os.Getenv("HTTP_PROXY"); trap != "" {
		opts = append(opts, chromedp.ProxyServer(trap))
	} else {
		opts = append(opts, chromedp.Flag("no-proxy-server", true))
	}
	allocCtx, endAlloc := chromedp.NewExecAllocator(life, opts...)
	tab, endTab := chromedp.NewContext(allocCtx,
		chromedp.WithErrorf(func(f string, a ...any) { log.printf("chromedp: "+f, a...) }))
	stop := func() {
		endTab()
		endAlloc()
		endLife()
		sink.Close()
	}
	if err := chromedp.Do(tab); err != nil {
		stop()
		t.Fatalf("browsertest: starting %s: %v\n%s", exe, err, log)
	}

	ctx, endActions := context.WithDeadline(tab, deadline)
	p := &page{t: t, ctx: ctx, log: log}
	var wg sync.WaitGroup
	console := chromedp.Console(tab)
	wg.Go(func() {
		for m, err := range console {
			if err != nil {
				return
			}
			log.printf("console %s", m)
		}
	})
	requests := chromedp.Events(tab, network.RequestWillBeSent)
	wg.Go(func() {
		for ev, err := range requests {
			if err != nil {
				return
			}
			p.mu.Lock()
			p.requests = append(p.requests, ev.Request.URL)
			p.mu.Unlock()
		}
	})
	t.Cleanup(func() {
		endActions()
		p.checkRequests(url)
		if t.Failed() {
			p.saveArtifacts(tab)
		}
		stop()
		wg.Wait()
	})

	p.do("open "+url, chromedp.Navigate(url))
	p.waitFor("the page to be ready", `document.documentElement.dataset.ready === "true"`)
	return p
}

// requested returns the URLs the tab requested so far.
func (p *page) requested() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.requests...)
}

// checkRequests fails the test if the tab requested anything but the origin
// of base (data: and blob: addresses aside).
func (p *page) checkRequests(base string) {
	origin, err := neturl.Parse(base)
	if err != nil {
		p.t.Errorf("browsertest: %v", err)
		return
	}
	for _, u := range p.requested() {
		r, err := neturl.Parse(u)
		switch {
		case err != nil:
			p.t.Errorf("browsertest: the page requested an address Go cannot parse: %q", u)
		case r.Scheme == "data" || r.Scheme == "blob":
		case r.Scheme != origin.Scheme || r.Host != origin.Host:
			p.t.Errorf("browsertest: the page requested %s, outside its origin %s",
				u, origin.Host)
		}
	}
}

// do runs steps in the tab; what names them in the failure.
func (p *page) do(what string, steps ...chromedp.Action[chromedp.Void]) {
	p.t.Helper()
	if err := chromedp.Do(p.ctx, steps...); err != nil {
		p.t.Fatalf("browsertest: %s: %v", what, p.explain(err))
	}
}

// eval evaluates a JavaScript expression in the page and decodes its value.
func eval[T any](p *page, expr string) T {
	p.t.Helper()
	v, err := chromedp.Run(p.ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		p.t.Fatalf("browsertest: evaluating %s: %v", expr, p.explain(err))
	}
	return v
}

// waitFor waits until a JavaScript expression is truthy in the page.
func (p *page) waitFor(what, expr string) {
	p.t.Helper()
	p.waitWithin(testTimeout, what, expr)
}

// waitWithin is waitFor with a shorter bound.
func (p *page) waitWithin(timeout time.Duration, what, expr string) {
	p.t.Helper()
	if d, ok := p.ctx.Deadline(); ok && time.Until(d) < timeout {
		timeout = time.Until(d)
	}
	_, err := chromedp.Run(p.ctx, chromedp.Poll[chromedp.Void](expr,
		chromedp.WithPollingInterval(10*time.Millisecond),
		chromedp.WithPollingTimeout(timeout)))
	if err != nil {
		p.t.Fatalf("browsertest: waiting %v for %s (%s): %v", timeout.Round(time.Second),
			what, expr, p.explain(err))
	}
}

// explain turns the end of the test's time into a message that says so.
func (p *page) explain(err error) error {
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%w (the test's %v ran out)", err, testTimeout)
	}
	return err
}

// artifactDir is where a failed test leaves the page: SECURECHAT_TEST_ARTIFACTS,
// or testdata/failures in the package directory (ignored by git).
func artifactDir() string {
	if d := os.Getenv("SECURECHAT_TEST_ARTIFACTS"); d != "" {
		return d
	}
	return filepath.Join("testdata", "failures")
}

// saveArtifacts saves a screenshot of the page, its HTML and the browser's
// log next to the test output, and logs where they are.
func (p *page) saveArtifacts(tab context.Context) {
	dir, err := filepath.Abs(artifactDir())
	if err == nil {
		err = os.MkdirAll(dir, 0o755)
	}
	if err != nil {
		p.t.Logf("browsertest: cannot save the page: %v", err)
		return
	}
	name := strings.NewReplacer("/", "_", " ", "_", ":", "_").Replace(p.t.Name())
	base := filepath.Join(dir, name+"-"+time.Now().Format("20060102-150405"))

	ctx, cancel := context.WithTimeout(tab, artifactTimeout)
	defer cancel()
	var saved []string
	save := func(ext string, data []byte, err error) {
		if err == nil {
			err = os.WriteFile(base+ext, data, 0o644)
		}
		if err != nil {
			p.t.Logf("browsertest: saving %s%s: %v", base, ext, err)
			return
		}
		saved = append(saved, base+ext)
	}
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	save(".png", png, err)
	html, err := chromedp.Run(ctx,
		chromedp.Evaluate[string](`document.documentElement.outerHTML`))
	save(".html", []byte(html), err)
	save(".log", []byte(p.log.String()), nil)
	if len(saved) > 0 {
		p.t.Logf("browsertest: the page at failure: %s", strings.Join(saved, ", "))
	}
}
