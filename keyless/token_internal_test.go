package keyless

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/google/go-cmp/cmp"
)

// fakeCredential hands out numbered tokens living for life, or fails with err. When
// gate is not nil, each call waits for a value on it (or the end of its context).
type fakeCredential struct {
	mu    sync.Mutex
	now   func() time.Time
	life  time.Duration
	err   error
	gate  chan struct{}
	calls atomic.Int32
	ctxs  []context.Context
}

func (f *fakeCredential) GetToken(ctx context.Context, opts policy.TokenRequestOptions) (
	azcore.AccessToken, error) {
	n := f.calls.Add(1)
	f.mu.Lock()
	f.ctxs = append(f.ctxs, ctx)
	gate, err, life := f.gate, f.err, f.life
	f.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return azcore.AccessToken{}, ctx.Err()
		}
	}
	if err != nil {
		return azcore.AccessToken{}, err
	}
	return azcore.AccessToken{Token: fmt.Sprintf("token-%d", n), ExpiresOn: f.now().Add(life)}, nil
}

func (f *fakeCredential) set(err error, life time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.err, f.life = err, life
}

// clock is a settable time source.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func newTestCache(life time.Duration) (*tokenCache, *fakeCredential, *clock) {
	clk := &clock{t: time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)}
	cred := &fakeCredential{now: clk.now, life: life}
	c := newTokenCache(cred, "")
	c.now = clk.now
	return c, cred, clk
}

func mustGet(t *testing.T, c *tokenCache) string {
	t.Helper()
	tok, err := c.get(context.Background())
	if err != nil {
		t.Fatalf("get: %v", err)
	}
	return tok.tok.Token
}

// waitIdle waits until c has no token request in flight.
func waitIdle(t *testing.T, c *tokenCache) {
	t.Helper()
	for range 1000 {
		c.mu.Lock()
		f := c.flight
		c.mu.Unlock()
		if f == nil {
			return
		}
		<-f.done
	}
	t.Fatal("token request still in flight")
}

func TestNewCachedTokenTimes(t *testing.T) {
	req := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name                 string
		life                 time.Duration
		refreshOn            time.Duration // after req; 0 for none
		refreshAt, expiresAt time.Duration // after req
	}{
		{"one hour", time.Hour, 0, 55 * time.Minute, time.Hour - 30*time.Second},
		{"ten minutes", 10 * time.Minute, 0, 5 * time.Minute, 10*time.Minute - 30*time.Second},
		{"two minutes", 2 * time.Minute, 0, time.Minute, 2*time.Minute - 30*time.Second},
		{"twenty seconds", 20 * time.Second, 0, 10 * time.Second, 15 * time.Second},
		{"issuer advises refresh", 24 * time.Hour, 12 * time.Hour, 12 * time.Hour,
			24*time.Hour - 30*time.Second},
		{"issuer advice after expiry window", time.Hour, 58 * time.Minute, 55 * time.Minute,
			time.Hour - 30*time.Second},
		{"already expired", -time.Minute, 0, -time.Minute, -time.Minute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok := azcore.AccessToken{Token: "t", ExpiresOn: req.Add(tt.life)}
			if tt.refreshOn != 0 {
				tok.RefreshOn = req.Add(tt.refreshOn)
			}
			got := newCachedToken(tok, req)
			type times struct{ RefreshAt, ExpiresAt time.Duration }
			want := times{tt.refreshAt, tt.expiresAt}
			have := times{got.refreshAt.Sub(req), got.expiresAt.Sub(req)}
			if diff := cmp.Diff(want, have); diff != "" {
				t.Errorf("times after the request (-want +got):\n%s", diff)
			}
			if got.header != "Bearer t" {
				t.Errorf("header = %q, want %q", got.header, "Bearer t")
			}
		})
	}
}

func TestTokenCacheServesCachedTokenUntilRefreshTime(t *testing.T) {
	c, cred, clk := newTestCache(time.Hour)
	for range 10 {
		if got := mustGet(t, c); got != "token-1" {
			t.Fatalf("token = %q, want token-1", got)
		}
		clk.advance(5 * time.Minute) // 50 minutes in all: before the refresh window
	}
	if n := cred.calls.Load(); n != 1 {
		t.Errorf("credential called %d times, want 1", n)
	}
}

func TestTokenCacheRefreshesInBackgroundBeforeExpiry(t *testing.T) {
	c, cred, clk := newTestCache(time.Hour)
	mustGet(t, c)
	cred.gate = make(chan struct{}) // hold the refresh until released

	clk.advance(56 * time.Minute) // inside the refresh window, still valid
	for range 5 {
		if got := mustGet(t, c); got != "token-1" {
			t.Fatalf("during refresh: token = %q, want the current token-1", got)
		}
	}
	close(cred.gate)
	waitIdle(t, c)

	if got := mustGet(t, c); got != "token-2" {
		t.Errorf("after refresh: token = %q, want token-2", got)
	}
	if n := cred.calls.Load(); n != 2 {
		t.Errorf("credential called %d times, want 2 (one refresh for all callers)", n)
	}
}

func TestTokenCacheWaitsForNewTokenAfterExpiry(t *testing.T) {
	c, cred, clk := newTestCache(time.Hour)
	mustGet(t, c)
	clk.advance(time.Hour - 10*time.Second) // within the expiry skew
	if got := mustGet(t, c); got != "token-2" {
		t.Errorf("token = %q, want a new token-2", got)
	}
	if n := cred.calls.Load(); n != 2 {
		t.Errorf("credential called %d times, want 2", n)
	}
}

func TestTokenCacheConcurrentFirstCallersShareOneRequest(t *testing.T) {
	c, cred, _ := newTestCache(time.Hour)
	cred.gate = make(chan struct{})
	const callers = 100
	var wg sync.WaitGroup
	tokens := make([]string, callers)
	errs := make([]error, callers)
	for i := range callers {
		wg.Go(func() {
			tok, err := c.get(context.Background())
			errs[i] = err
			if err == nil {
				tokens[i] = tok.tok.Token
			}
		})
	}
	// Release the single request once every caller is waiting for it.
	for cred.calls.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond)
	close(cred.gate)
	wg.Wait()

	for i := range callers {
		if errs[i] != nil || tokens[i] != "token-1" {
			t.Fatalf("caller %d: token %q, error %v; want token-1", i, tokens[i], errs[i])
		}
	}
	if n := cred.calls.Load(); n != 1 {
		t.Errorf("credential called %d times, want 1", n)
	}
}

func TestTokenCacheCallerCancellationLeavesRequestRunning(t *testing.T) {
	c, cred, _ := newTestCache(time.Hour)
	cred.gate = make(chan struct{})

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() {
		_, err := c.get(ctx)
		done <- err
	}()
	for cred.calls.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled caller: error = %v, want context.Canceled", err)
	}

	cred.mu.Lock()
	reqCtx := cred.ctxs[0]
	cred.mu.Unlock()
	if reqCtx.Err() != nil {
		t.Fatalf("the token request's context ended with its first caller: %v", reqCtx.Err())
	}
	close(cred.gate)
	if got := mustGet(t, c); got != "token-1" {
		t.Errorf("next caller: token = %q, want token-1 from the same request", got)
	}
	if n := cred.calls.Load(); n != 1 {
		t.Errorf("credential called %d times, want 1", n)
	}
}

func TestTokenCacheRemembersFailureBriefly(t *testing.T) {
	c, cred, clk := newTestCache(time.Hour)
	boom := errors.New("boom")
	cred.set(boom, time.Hour)

	for range 3 {
		_, err := c.get(context.Background())
		if !errors.Is(err, boom) {
			t.Fatalf("error = %v, want boom", err)
		}
		clk.advance(500 * time.Millisecond)
	}
	if n := cred.calls.Load(); n != 1 {
		t.Errorf("within %v of a failure: credential called %d times, want 1", failureHold, n)
	}

	cred.set(nil, time.Hour)
	clk.advance(failureHold)
	if got := mustGet(t, c); got != "token-2" {
		t.Errorf("after the hold: token = %q, want token-2", got)
	}
}

func TestTokenCacheWrapsForeignErrorsAsCredentialError(t *testing.T) {
	c, cred, _ := newTestCache(time.Hour)
	boom := errors.New("boom")
	cred.set(boom, 0)
	_, err := c.get(context.Background())

	var ce *CredentialError
	if !errors.As(err, &ce) {
		t.Fatalf("error %v (%T) is not a *CredentialError", err, err)
	}
	want := []SourceError{{Source: "fakeCredential", Err: boom,
		Fix: "check the credential's configuration; its error above says what failed"}}
	if diff := cmp.Diff(want, ce.Sources, cmp.Comparer(errors.Is)); diff != "" {
		t.Errorf("sources (-want +got):\n%s", diff)
	}
}

func TestTokenCacheGetTokenPassesOtherRequestsThrough(t *testing.T) {
	c, _, _ := newTestCache(time.Hour)
	ctx := context.Background()
	get := func(o policy.TokenRequestOptions) string {
		t.Helper()
		tok, err := c.GetToken(ctx, o)
		if err != nil {
			t.Fatal(err)
		}
		return tok.Token
	}
	var got []string
	got = append(got, get(policy.TokenRequestOptions{Scopes: []string{DefaultScope}}))
	got = append(got, get(policy.TokenRequestOptions{Scopes: []string{DefaultScope},
		EnableCAE: true}))
	got = append(got, get(policy.TokenRequestOptions{Scopes: []string{"other/.default"}}))
	got = append(got, get(policy.TokenRequestOptions{Scopes: []string{DefaultScope},
		TenantID: "t"}))
	got = append(got, get(policy.TokenRequestOptions{Scopes: []string{DefaultScope},
		Claims: `{"access_token":{}}`}))
	got = append(got, get(policy.TokenRequestOptions{Scopes: []string{DefaultScope}}))
	want := []string{
		"token-1", "token-1", // cached, CAE or not
		"token-2", "token-3", "token-4", // other scope, tenant, claims: uncached
		"token-5", // claims dropped the cached token
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("tokens (-want +got):\n%s", diff)
	}
}

func TestTokenProviderWarmPathAllocatesNothing(t *testing.T) {
	clk := &clock{t: time.Now()}
	cred := &fakeCredential{now: clk.now, life: time.Hour}
	provider := NewTokenProvider(cred, "")
	ctx := context.Background()
	if _, err := provider(ctx); err != nil {
		t.Fatal(err)
	}
	allocs := testing.AllocsPerRun(1000, func() {
		if _, err := provider(ctx); err != nil {
			t.Fatal(err)
		}
	})
	if allocs > 1 {
		t.Errorf("warm path: %v allocations per call, want at most 1", allocs)
	}
}

func BenchmarkTokenProviderWarm(b *testing.B) {
	cred := &fakeCredential{now: time.Now, life: time.Hour}
	provider := NewTokenProvider(cred, "")
	ctx := context.Background()
	if _, err := provider(ctx); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := provider(ctx); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func TestCachedCredentialSharesOneCacheWithProvidersAndClients(t *testing.T) {
	cred := &fakeCredential{now: time.Now, life: time.Hour}
	shared := NewCachedCredential(cred, "")

	provider := NewTokenProvider(shared, "")
	probe := NewTokenProvider(shared, DefaultScope)
	ctx := context.Background()
	first, err := provider(ctx)
	if err != nil {
		t.Fatal(err)
	}
	second, err := probe(ctx)
	if err != nil {
		t.Fatal(err)
	}
	opts := policy.TokenRequestOptions{Scopes: []string{DefaultScope}}
	if _, err := shared.GetToken(ctx, opts); err != nil {
		t.Fatal(err)
	}

	if first != second {
		t.Errorf("providers on one cached credential got %q and %q, want the same token",
			first, second)
	}
	if n := cred.calls.Load(); n != 1 {
		t.Errorf("token requests = %d, want 1 for two providers and a direct call", n)
	}
	if c := cacheFor(shared, ""); c != shared {
		t.Error("cacheFor wrapped a cache for the same scope in a second cache")
	}
	if c := cacheFor(shared, "https://management.azure.com/.default"); c == shared {
		t.Error("cacheFor reused a cache for another scope")
	}
}
