package keyless_test

import (
	"context"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"

	"github.com/aoaiblocks/securechat/aoaitest"
	"github.com/aoaiblocks/securechat/keyless"
)

// The token provider benchmarks run the real chain: NewCredential finds the
// managed identity endpoint (the aoaitest stand-in, on loopback) the way it
// does in Azure Container Apps, and azidentity's ManagedIdentityCredential
// asks it for tokens over HTTP. Run them with
//
//	go test -run '^$' -bench TokenProvider -benchmem ./keyless/

// coldCallers is how many callers ask a cold provider for a token at once.
const coldCallers = 100

// benchIdentity starts the managed identity stand-in for b, with the
// process environment pointing at it, and returns it with a Guard client.
func benchIdentity(b *testing.B) (*aoaitest.Identity, azcore.ClientOptions) {
	b.Helper()
	hc := aoaitest.Guard(b)
	id := aoaitest.NewIdentity()
	b.Cleanup(id.Close)
	id.Setenv(b)
	return id, azcore.ClientOptions{Transport: hc}
}

// benchProvider returns a token provider with an empty cache over a new
// credential chain.
func benchProvider(b *testing.B, opts azcore.ClientOptions) func(context.Context) (
	string, error) {
	b.Helper()
	cred, err := keyless.NewCredential(&keyless.CredentialOptions{ClientOptions: opts})
	if err != nil {
		b.Fatalf("NewCredential: %v", err)
	}
	return keyless.NewTokenProvider(cred, "")
}

// BenchmarkTokenProviderWarmManagedIdentity measures callers on every P
// asking a provider whose cache holds a token, as every chat request does.
// It fails if any call reaches the identity endpoint or if a call allocates
// more than once (counted with testing.AllocsPerRun before the timed part),
// and reports allocs/call over the parallel run.
func BenchmarkTokenProviderWarmManagedIdentity(b *testing.B) {
	id, opts := benchIdentity(b)
	provider := benchProvider(b, opts)
	ctx := context.Background()
	if _, err := provider(ctx); err != nil {
		b.Fatal(err)
	}
	calls := id.Calls()
	if allocs := testing.AllocsPerRun(100, func() { _, _ = provider(ctx) }); allocs > 1 {
		b.Errorf("%.0f allocations per call with a warm cache, want at most 1", allocs)
	}

	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if tok, err := provider(ctx); err != nil || tok == "" {
				b.Errorf("provider: %q, %v", tok, err)
				return
			}
		}
	})
	b.StopTimer()
	runtime.ReadMemStats(&after)

	if n := id.Calls() - calls; n != 0 {
		b.Errorf("%d token requests to the identity endpoint with a warm cache, want 0", n)
	}
	b.ReportMetric(float64(after.Mallocs-before.Mallocs)/float64(b.N), "allocs/call")
}

// BenchmarkTokenProviderColdManagedIdentity measures a new provider (a new credential chain,
// its cache empty) asked for a token by 100 callers at once, as when a
// service starts under load. It fails unless each round makes exactly one
// token request to the identity endpoint, and reports identity-calls/op.
//
// MSAL, under azidentity, caches managed identity tokens process-wide; it
// never serves a token from that cache within five minutes of its expiry, so
// the stand-in issues four-minute tokens and every round reaches it.
func BenchmarkTokenProviderColdManagedIdentity(b *testing.B) {
	id, opts := benchIdentity(b)
	id.SetLifetime(4 * time.Minute)
	ctx := context.Background()

	total := 0
	for b.Loop() {
		b.StopTimer()
		provider := benchProvider(b, opts)
		calls := id.Calls()
		start := make(chan struct{})
		var wg sync.WaitGroup
		for range coldCallers {
			wg.Go(func() {
				<-start
				if tok, err := provider(ctx); err != nil || tok == "" {
					b.Errorf("provider: %q, %v", tok, err)
				}
			})
		}
		b.StartTimer()

		close(start)
		wg.Wait()

		n := id.Calls() - calls
		if n != 1 {
			b.Fatalf("%d concurrent first callers made %d token requests, want 1",
				coldCallers, n)
		}
		total += n
	}
	b.ReportMetric(float64(total)/float64(b.N), "identity-calls/op")
}
