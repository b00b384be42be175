package keyless_test

import (
	"context"
	"errors"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"

	"github.com/aoaiblocks/securechat/aoaitest"
	"github.com/aoaiblocks/securechat/keyless"
)

// failingCredential fails every token request at once, and counts them.
type failingCredential struct{ calls atomic.Int32 }

func (c *failingCredential) GetToken(context.Context, policy.TokenRequestOptions) (
	azcore.AccessToken, error) {
	c.calls.Add(1)
	return azcore.AccessToken{}, errors.New("no token today")
}

func TestCredentialFailureIsNotRetried(t *testing.T) {
	// openai-go's first retry waits at least 375 ms (0.5 s less up to a quarter of
	// jitter); a failure that takes less than that was not retried.
	const retried = 350 * time.Millisecond
	for _, style := range pathStyles {
		for _, streaming := range []bool{false, true} {
			name := style.name
			if streaming {
				name += "/streaming"
			}
			t.Run(name, func(t *testing.T) {
				aoaitest.Guard(t)
				srv := newServer(t)
				cred := &failingCredential{}
				c, cfg := newClient(t, srv, style.version, cred)

				start := time.Now()
				var err error
				if streaming {
					s := c.Chat.Completions.NewStreaming(context.Background(),
						chatParams(cfg, "hi"))
					for s.Next() {
					}
					err = s.Err()
					s.Close()
				} else {
					_, err = c.Chat.Completions.New(context.Background(), chatParams(cfg, "hi"))
				}
				took := time.Since(start)

				var ce *keyless.CredentialError
				if !errors.As(err, &ce) {
					t.Fatalf("error = %v (%T), want one holding a *keyless.CredentialError",
						err, err)
				}
				if took >= retried {
					t.Errorf("the failure took %v: openai-go retried it", took)
				}
				if n := cred.calls.Load(); n != 1 {
					t.Errorf("%d token requests, want 1", n)
				}
				if n := len(srv.Requests()); n != 0 {
					t.Errorf("%d requests reached Azure OpenAI without a token", n)
				}
			})
		}
	}
}

func TestPlatformIdentityEndpointIsRetriedBriefly(t *testing.T) {
	tests := []struct {
		name  string
		fault func(id *aoaitest.Identity)
		calls int // token requests the endpoint saw
	}{
		// 503 is retried: the first request and two retries.
		{"503", func(id *aoaitest.Identity) { id.FailNext(10, http.StatusServiceUnavailable) },
			3},
		{"down", func(id *aoaitest.Identity) { id.Close() }, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hc := aoaitest.Guard(t)
			id := newIdentity(t)
			id.Setenv(t)
			t.Setenv("AZURE_TOKEN_CREDENTIALS", "prod") // no azd after the identity
			token := keyless.NewTokenProvider(newCredential(t, hc), "")
			tt.fault(id)

			start := time.Now()
			_, err := token(context.Background())
			took := time.Since(start)

			var ce *keyless.CredentialError
			if !errors.As(err, &ce) {
				t.Fatalf("error = %v (%T), want a *keyless.CredentialError", err, err)
			}
			// Two waits of at most 0.26 s and 0.78 s (jitter included); azcore's default
			// policy waits up to about 9 s.
			if took > 2*time.Second {
				t.Errorf("the failure took %v, want about a second at most", took)
			}
			if n := id.Calls(); n != tt.calls {
				t.Errorf("the endpoint saw %d token requests, want %d", n, tt.calls)
			}
		})
	}
}

func TestPlatformIdentityRetryPolicyCanBeReplaced(t *testing.T) {
	hc := aoaitest.Guard(t)
	id := newIdentity(t)
	id.Setenv(t)
	t.Setenv("AZURE_TOKEN_CREDENTIALS", "prod")
	cred, err := keyless.NewCredential(&keyless.CredentialOptions{
		ClientOptions: azcore.ClientOptions{
			Transport: hc,
			Retry:     policy.RetryOptions{MaxRetries: -1}, // none
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	id.FailNext(10, http.StatusServiceUnavailable)

	if _, err := keyless.NewTokenProvider(cred, "")(context.Background()); err == nil {
		t.Fatal("got a token from a failing endpoint")
	}
	if n := id.Calls(); n != 1 {
		t.Errorf("the endpoint saw %d token requests, want 1 (no retries)", n)
	}
}
