package keyless

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
)

// Timings of the token cache.
const (
	// refreshWindow is how long before expiry a token is refreshed in the background
	// (or halfway through its life, whichever is later).
	refreshWindow = 5 * time.Minute
	// maxExpirySkew is how long before expiry a token stops being handed out; callers
	// then wait for a new one. A quarter of the lifetime for tokens shorter than 2 min.
	maxExpirySkew = 30 * time.Second
	// failureHold is how long a failed token request is remembered: calls in that time
	// (a burst of requests, or the retries of a caller) get the same error without a new
	// request.
	failureHold = 2 * time.Second
	// tokenRequestTimeout bounds one token request, which runs detached from the
	// contexts of the callers waiting for it.
	tokenRequestTimeout = 2 * time.Minute
)

// NewTokenProvider returns a function that returns a bearer token for scope (""
// means [DefaultScope]) from cred, for HTTP clients that are not Azure SDK clients: set
// the header "Authorization: Bearer <token>" on each request.
//
// Tokens are cached. A token is used until shortly before it expires; from 5 minutes
// before expiry (or halfway through a short life) one call starts a refresh in the
// background while every call keeps getting the current token. Concurrent callers with
// no usable token share one token request (single flight); a caller whose context ends
// stops waiting without cancelling the request for the others. A failed request is
// remembered for 2 seconds, so a burst of calls costs the token source one request.
//
// Failures are *[CredentialError] values. The function is safe for concurrent use; with
// a cached token it does not allocate. Make one provider per process and scope: each
// holds its own cache. It panics if cred is nil.
//
// When cred comes from [NewCachedCredential] for the same scope, the provider shares
// that credential's cache instead of starting its own.
func NewTokenProvider(cred azcore.TokenCredential, scope string) func(context.Context) (
	string, error) {
	c := cacheFor(cred, scope)
	return func(ctx context.Context) (string, error) {
		t, err := c.get(ctx)
		if err != nil {
			return "", err
		}
		return t.tok.Token, nil
	}
}

// tokenCache caches the tokens of one credential for one scope. It also serves as an
// azcore.TokenCredential for that scope, so Azure SDK policies share its cache.
type tokenCache struct {
	cred   azcore.TokenCredential
	name   string // the credential's name, for errors of credentials not from NewCredential
	scopes []string
	now    func() time.Time

	cur atomic.Pointer[cachedToken]

	mu      sync.Mutex
	flight  *tokenFlight // the token request in progress, if any
	failure error        // the last request's error, until failedAt+failureHold
	failed  time.Time
}

// cachedToken is a token with the times the cache acts on.
type cachedToken struct {
	tok       azcore.AccessToken
	header    string    // "Bearer " + tok.Token
	refreshAt time.Time // from then on, refresh in the background
	expiresAt time.Time // from then on, wait for a new token
}

// tokenFlight is one token request; done is closed when tok or err is set.
type tokenFlight struct {
	done chan struct{}
	tok  *cachedToken
	err  error
}

// NewCachedCredential returns a credential that serves tokens for scope ("" means
// [DefaultScope]) from one cache, refreshed as [NewTokenProvider] describes; requests
// for other scopes, tenants or claims go to cred unchanged.
//
// Use it when several parts of a program need tokens from one credential: hand the
// result to [NewClient] (ClientOptions.Credential), to [NewTokenProvider] and to a
// readiness probe, and they all share one cache, so the token source sees one request
// per token lifetime. It panics if cred is nil.
func NewCachedCredential(cred azcore.TokenCredential, scope string) azcore.TokenCredential {
	return cacheFor(cred, scope)
}

// cacheFor returns cred itself when it is already a cache for scope, and a new cache
// around cred otherwise.
func cacheFor(cred azcore.TokenCredential, scope string) *tokenCache {
	if scope == "" {
		scope = DefaultScope
	}
	if c, ok := cred.(*tokenCache); ok && c.scopes[0] == scope {
		return c
	}
	return newTokenCache(cred, scope)
}

func newTokenCache(cred azcore.TokenCredential, scope string) *tokenCache {
	if cred == nil {
		panic("keyless: nil credential")
	}
	if scope == "" {
		scope = DefaultScope
	}
	name := fmt.Sprintf("%T", cred)
	name = name[strings.LastIndexAny(name, ".*")+1:]
	return &tokenCache{cred: cred, name: name, scopes: []string{scope}, now: time.Now}
}

// get returns a usable token, from the cache when it has one.
func (c *tokenCache) get(ctx context.Context) (*cachedToken, error) {
	if t := c.cur.Load(); t != nil {
		now := c.now()
		if now.Before(t.refreshAt) {
			return t, nil
		}
		if now.Before(t.expiresAt) {
			c.refreshInBackground()
			return t, nil
		}
	}
	return c.wait(ctx)
}

// wait joins the token request in progress, or starts one, and waits for its result or
// the end of ctx.
func (c *tokenCache) wait(ctx context.Context) (*cachedToken, error) {
	c.mu.Lock()
	now := c.now()
	if t := c.cur.Load(); t != nil && now.Before(t.expiresAt) {
		c.mu.Unlock()
		return t, nil // refreshed while this caller waited for the lock
	}
	if c.flight == nil && c.failure != nil && now.Sub(c.failed) < failureHold {
		err := c.failure
		c.mu.Unlock()
		return nil, err
	}
	f := c.start()
	c.mu.Unlock()

	select {
	case <-f.done:
		return f.tok, f.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// refreshInBackground starts a token request unless one is running or the last one
// failed within failureHold.
func (c *tokenCache) refreshInBackground() {
	c.mu.Lock()
	if c.failure == nil || c.now().Sub(c.failed) >= failureHold {
		c.start()
	}
	c.mu.Unlock()
}

// start returns the token request in progress, starting one if there is none. c.mu must
// be held.
func (c *tokenCache) start() *tokenFlight {
	if c.flight != nil {
		return c.flight
	}
	f := &tokenFlight{done: make(chan struct{})}
	c.flight = f
	go c.fetch(f)
	return f
}

// fetch runs one token request. Its context is not any caller's: the token serves
// them all, so neither one caller's cancellation nor its context values reach it.
func (c *tokenCache) fetch(f *tokenFlight) {
	ctx, cancel := context.WithTimeout(context.Background(), tokenRequestTimeout)
	defer cancel()
	started := c.now()
	tok, err := c.cred.GetToken(ctx, policy.TokenRequestOptions{Scopes: c.scopes})

	c.mu.Lock()
	if err != nil {
		f.err = asCredentialError(c.name, err)
		c.failure, c.failed = f.err, c.now()
	} else {
		f.tok = newCachedToken(tok, started)
		c.cur.Store(f.tok)
		c.failure = nil
	}
	c.flight = nil
	c.mu.Unlock()
	close(f.done)
}

// newCachedToken computes when to refresh tok and when to stop using it, from its
// expiry and when it was requested.
func newCachedToken(tok azcore.AccessToken, requested time.Time) *cachedToken {
	life := tok.ExpiresOn.Sub(requested)
	skew := max(0, min(maxExpirySkew, life/4))
	expiresAt := tok.ExpiresOn.Add(-skew)
	refreshAt := tok.ExpiresOn.Add(-refreshWindow)
	if half := requested.Add(life / 2); half.After(refreshAt) {
		refreshAt = half
	}
	if !tok.RefreshOn.IsZero() && tok.RefreshOn.Before(refreshAt) {
		refreshAt = tok.RefreshOn // the token issuer's advice
	}
	if refreshAt.After(expiresAt) {
		refreshAt = expiresAt
	}
	return &cachedToken{
		tok:       tok,
		header:    "Bearer " + tok.Token,
		refreshAt: refreshAt,
		expiresAt: expiresAt,
	}
}

// expire drops the cached token, so the next call requests a new one.
func (c *tokenCache) expire() {
	c.cur.Store(nil)
}

// GetToken serves requests for the cache's scope from the cache. Requests for other
// scopes or tenants, or with claims (a Continuous Access Evaluation challenge, which
// also drops the cached token), go to the credential directly.
func (c *tokenCache) GetToken(ctx context.Context, opts policy.TokenRequestOptions) (
	azcore.AccessToken, error) {
	if opts.Claims != "" || opts.TenantID != "" || len(opts.Scopes) != 1 ||
		opts.Scopes[0] != c.scopes[0] {
		if opts.Claims != "" {
			c.expire()
		}
		tok, err := c.cred.GetToken(ctx, opts)
		return tok, asCredentialError(c.name, err)
	}
	t, err := c.get(ctx)
	if err != nil {
		return azcore.AccessToken{}, err
	}
	return t.tok, nil
}
