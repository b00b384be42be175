package keyless_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/google/go-cmp/cmp"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/aoaiblocks/securechat/aoaitest"
	"github.com/aoaiblocks/securechat/keyless"
)

// These tests run the real azidentity credentials and the real openai-go client against
// the aoaitest stand-ins. Each calls aoaitest.Guard first: it keeps the test on loopback
// and away from the machine's real Azure sign-in and environment.

const datedVersion = "2024-10-21"

// countingTransport counts the requests of an azcore pipeline.
type countingTransport struct {
	base policy.Transporter
	n    atomic.Int32
}

func (c *countingTransport) Do(req *http.Request) (*http.Response, error) {
	c.n.Add(1)
	return c.base.Do(req)
}

func newServer(t *testing.T) *aoaitest.AzureOpenAI {
	srv := aoaitest.NewAzureOpenAI()
	t.Cleanup(srv.Close)
	return srv
}

func newIdentity(t *testing.T) *aoaitest.Identity {
	id := aoaitest.NewIdentity()
	t.Cleanup(id.Close)
	return id
}

// newCredential builds the chain from the process environment with transport hc.
func newCredential(t *testing.T, hc policy.Transporter) azcore.TokenCredential {
	t.Helper()
	cred, err := keyless.NewCredential(&keyless.CredentialOptions{
		ClientOptions: azcore.ClientOptions{Transport: hc},
	})
	if err != nil {
		t.Fatalf("NewCredential: %v", err)
	}
	return cred
}

// newClient returns a client for srv with version as AZURE_OPENAI_API_VERSION.
func newClient(t *testing.T, srv *aoaitest.AzureOpenAI, version string,
	cred azcore.TokenCredential) (openai.Client, keyless.Config) {
	t.Helper()
	cfg := keyless.Config{Endpoint: srv.URL, Deployment: "chat", APIVersion: version}
	c, err := keyless.NewClient(cfg, &keyless.ClientOptions{
		HTTPClient: srv.Client(),
		Credential: cred,
	})
	if err != nil {
		t.Fatalf("NewClient: %v", err)
	}
	return c, cfg
}

func chatParams(cfg keyless.Config, msg string) openai.ChatCompletionNewParams {
	return openai.ChatCompletionNewParams{
		Model:    openai.ChatModel(cfg.Deployment),
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage(msg)},
	}
}

func mustChat(t *testing.T, c openai.Client, cfg keyless.Config, msg string) string {
	t.Helper()
	resp, err := c.Chat.Completions.New(context.Background(), chatParams(cfg, msg))
	if err != nil {
		t.Fatalf("chat: %v", err)
	}
	return resp.Choices[0].Message.Content
}

// pathStyles are the two API shapes, by AZURE_OPENAI_API_VERSION.
var pathStyles = []struct{ name, version string }{
	{"v1", ""},
	{"dated", datedVersion},
}

func TestContainerAppsGetsTokensFromUserAssignedIdentity(t *testing.T) {
	hc := aoaitest.Guard(t)
	id := newIdentity(t)
	id.Setenv(t)
	azd := aoaitest.NewAzd(t) // on PATH too, but the identity comes first
	srv := newServer(t)

	cred := newCredential(t, hc)
	c, cfg := newClient(t, srv, "", cred)
	if got, want := mustChat(t, c, cfg, "hi"), `You said: "hi"`; got != want {
		t.Errorf("answer = %q, want %q", got, want)
	}

	reqs := srv.Requests()
	if len(reqs) != 1 || reqs[0].Principal != id.PrincipalID {
		t.Fatalf("requests = %d, principal %q; want 1 by the user-assigned identity %q",
			len(reqs), reqs[0].Principal, id.PrincipalID)
	}
	tok, _ := strings.CutPrefix(reqs[0].Header.Get("Authorization"), "Bearer ")
	claims, err := aoaitest.VerifyToken(tok)
	if err != nil {
		t.Fatal(err)
	}
	if claims.AppID != id.ClientID {
		t.Errorf("token appid = %q, want the user-assigned client ID %q", claims.AppID,
			id.ClientID)
	}
	if id.Calls() != 1 || azd.Calls() != 0 {
		t.Errorf("token requests: identity %d, azd %d; want 1, 0", id.Calls(), azd.Calls())
	}
	if got, want := cred.(interface{ String() string }).String(),
		"keyless credential chain: ManagedIdentityCredential (user-assigned, client ID "+
			id.ClientID+"), AzureDeveloperCLICredential; in use: ManagedIdentityCredential"; got != want {
		t.Errorf("chain = %q, want %q", got, want)
	}
}

func TestLaptopGetsTokensFromAzdInTheConfiguredTenant(t *testing.T) {
	hc := aoaitest.Guard(t)
	azd := aoaitest.NewAzd(t)
	t.Setenv("AZURE_TENANT_ID", aoaitest.DefaultTenantID)

	provider := keyless.NewTokenProvider(newCredential(t, hc), "")
	tok, err := provider(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	claims, err := aoaitest.VerifyToken(tok)
	if err != nil {
		t.Fatal(err)
	}
	if claims.ObjectID != azd.PrincipalID() {
		t.Errorf("token oid = %q, want the developer %q", claims.ObjectID, azd.PrincipalID())
	}
	want := [][]string{{"auth", "token", "-o", "json", "--no-prompt",
		"--scope", keyless.DefaultScope, "--tenant-id", aoaitest.DefaultTenantID}}
	if diff := cmp.Diff(want, azd.Args()); diff != "" {
		t.Errorf("azd runs (-want +got):\n%s", diff)
	}
}

func TestLaptopMakesNoManagedIdentityAttempt(t *testing.T) {
	hc := aoaitest.Guard(t)
	id := newIdentity(t) // running, but the laptop's environment does not advertise it
	azd := aoaitest.NewAzd(t)
	counter := &countingTransport{base: hc}

	cred, err := keyless.NewCredential(&keyless.CredentialOptions{
		ClientOptions: azcore.ClientOptions{Transport: counter},
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := keyless.NewTokenProvider(cred, "")(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := counter.n.Load(); n != 0 {
		t.Errorf("the chain sent %d HTTP requests; a laptop should send none", n)
	}
	if id.Calls() != 0 || azd.Calls() != 1 {
		t.Errorf("token requests: identity %d, azd %d; want 0, 1", id.Calls(), azd.Calls())
	}
}

func TestProdWithoutManagedIdentityFailsClearly(t *testing.T) {
	hc := aoaitest.Guard(t)
	azd := aoaitest.NewAzd(t) // signed in, but prod excludes developer sources
	t.Setenv("AZURE_TOKEN_CREDENTIALS", "prod")

	_, err := keyless.NewCredential(&keyless.CredentialOptions{
		ClientOptions: azcore.ClientOptions{Transport: hc},
	})
	var ce *keyless.CredentialError
	if !errors.As(err, &ce) {
		t.Fatalf("error = %v (%T), want a *keyless.CredentialError", err, err)
	}
	want := `keyless: no credential source is available in this environment
	WorkloadIdentityCredential skipped: AZURE_FEDERATED_TOKEN_FILE is not set
		fix: on AKS, enable workload identity for the pod (its webhook sets ` +
		`AZURE_FEDERATED_TOKEN_FILE, AZURE_CLIENT_ID and AZURE_TENANT_ID)
	ManagedIdentityCredential skipped: the host advertises no managed identity ` +
		`(IDENTITY_ENDPOINT and MSI_ENDPOINT are not set)
		fix: attach a managed identity to the app (the platform then sets ` +
		`IDENTITY_ENDPOINT); on a virtual machine set ` +
		`AZURE_TOKEN_CREDENTIALS=ManagedIdentityCredential`
	if got := err.Error(); got != want {
		t.Errorf("error:\n%s\nwant:\n%s", got, want)
	}
	if azd.Calls() != 0 {
		t.Errorf("azd ran %d times under AZURE_TOKEN_CREDENTIALS=prod", azd.Calls())
	}
}

func TestSignedOutDeveloperIsToldToSignIn(t *testing.T) {
	hc := aoaitest.Guard(t)
	azd := aoaitest.NewAzd(t)
	azd.SignOut()
	t.Setenv("AZURE_TENANT_ID", aoaitest.DefaultTenantID)

	_, err := keyless.NewTokenProvider(newCredential(t, hc), "")(context.Background())
	var ce *keyless.CredentialError
	if !errors.As(err, &ce) {
		t.Fatalf("error = %v (%T), want a *keyless.CredentialError", err, err)
	}
	type row struct {
		Source  string
		Skipped bool
		Fix     string
	}
	var got []row
	for _, s := range ce.Sources {
		got = append(got, row{s.Source, s.Skipped, s.Fix})
	}
	want := []row{
		{"ManagedIdentityCredential", true, "attach a managed identity to the app (the " +
			"platform then sets IDENTITY_ENDPOINT); on a virtual machine set " +
			"AZURE_TOKEN_CREDENTIALS=ManagedIdentityCredential"},
		{"AzureDeveloperCLICredential", false,
			"run: azd auth login --tenant-id " + aoaitest.DefaultTenantID},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("sources (-want +got):\n%s", diff)
	}
	if !strings.Contains(err.Error(), "azd auth login") {
		t.Errorf("error does not pass on azd's own message:\n%v", err)
	}

	azd.SignIn()
	if _, err := keyless.NewTokenProvider(newCredential(t, hc), "")(
		context.Background()); err != nil {
		t.Errorf("after signing in: %v", err)
	}
}

func TestCredentialErrorIsFoundThroughOpenAIClient(t *testing.T) {
	for _, style := range pathStyles {
		for _, streaming := range []bool{false, true} {
			name := style.name
			if streaming {
				name += "/streaming"
			}
			t.Run(name, func(t *testing.T) {
				hc := aoaitest.Guard(t)
				azd := aoaitest.NewAzd(t)
				azd.SignOut()
				srv := newServer(t)
				c, cfg := newClient(t, srv, style.version, newCredential(t, hc))

				var err error
				if streaming {
					s := c.Chat.Completions.NewStreaming(context.Background(),
						chatParams(cfg, "hi"))
					for s.Next() {
					}
					err = s.Err()
				} else {
					_, err = c.Chat.Completions.New(context.Background(), chatParams(cfg, "hi"))
				}

				var ce *keyless.CredentialError
				if !errors.As(err, &ce) {
					t.Fatalf("error = %v (%T), want one holding a *keyless.CredentialError",
						err, err)
				}
				if n := len(srv.Requests()); n != 0 {
					t.Errorf("%d requests reached Azure OpenAI without a token", n)
				}
				// openai-go does not retry it (TestCredentialFailureIsNotRetried).
				if n := azd.Calls(); n != 1 {
					t.Errorf("azd ran %d times for one chat, want 1", n)
				}
			})
		}
	}
}

func TestThousandChatsCauseOneTokenRequest(t *testing.T) {
	for _, style := range pathStyles {
		t.Run(style.name, func(t *testing.T) {
			hc := aoaitest.Guard(t)
			azd := aoaitest.NewAzd(t) // azd caches nothing: every token is a run of azd
			srv := newServer(t)
			c, cfg := newClient(t, srv, style.version, newCredential(t, hc))

			for i := range 1000 {
				if _, err := c.Chat.Completions.New(context.Background(),
					chatParams(cfg, "hi")); err != nil {
					t.Fatalf("chat %d: %v", i, err)
				}
			}
			if n := azd.Calls(); n != 1 {
				t.Errorf("1,000 chats ran azd %d times, want 1", n)
			}
			if n := len(srv.Requests()); n != 1000 {
				t.Errorf("server saw %d requests, want 1000", n)
			}
		})
	}
}

func TestConcurrentFirstCallsCauseOneTokenRequest(t *testing.T) {
	const callers = 100
	run := func(t *testing.T, call func() error) {
		t.Helper()
		start := make(chan struct{})
		errs := make(chan error, callers)
		var wg sync.WaitGroup
		for range callers {
			wg.Go(func() {
				<-start
				errs <- call()
			})
		}
		close(start)
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
	}

	t.Run("token provider", func(t *testing.T) {
		hc := aoaitest.Guard(t)
		azd := aoaitest.NewAzd(t)
		provider := keyless.NewTokenProvider(newCredential(t, hc), "")
		run(t, func() error {
			_, err := provider(context.Background())
			return err
		})
		if n := azd.Calls(); n != 1 {
			t.Errorf("%d concurrent first calls ran azd %d times, want 1", callers, n)
		}
	})
	for _, style := range pathStyles {
		t.Run("client/"+style.name, func(t *testing.T) {
			hc := aoaitest.Guard(t)
			azd := aoaitest.NewAzd(t)
			srv := newServer(t)
			c, cfg := newClient(t, srv, style.version, newCredential(t, hc))
			run(t, func() error {
				_, err := c.Chat.Completions.New(context.Background(), chatParams(cfg, "hi"))
				return err
			})
			if n := azd.Calls(); n != 1 {
				t.Errorf("%d concurrent first chats ran azd %d times, want 1", callers, n)
			}
		})
	}
}

func TestClientPathStyles(t *testing.T) {
	type seen struct {
		Method, Path, Deployment, Model, APIVersion string
	}
	tests := []struct {
		version string
		want    seen
	}{
		{"", seen{"POST", "/openai/v1/chat/completions", "chat", "chat", ""}},
		{"v1", seen{"POST", "/openai/v1/chat/completions", "chat", "chat", ""}},
		{datedVersion, seen{"POST", "/openai/deployments/chat/chat/completions", "chat", "chat",
			datedVersion}},
		{"2025-04-01-preview", seen{"POST", "/openai/deployments/chat/chat/completions", "chat",
			"chat", "2025-04-01-preview"}},
	}
	for _, tt := range tests {
		t.Run("version="+tt.version, func(t *testing.T) {
			hc := aoaitest.Guard(t)
			azd := aoaitest.NewAzd(t)
			srv := newServer(t)
			c, cfg := newClient(t, srv, tt.version, newCredential(t, hc))
			mustChat(t, c, cfg, "hi")

			reqs := srv.Requests()
			if len(reqs) != 1 {
				t.Fatalf("server saw %d requests, want 1", len(reqs))
			}
			r := reqs[0]
			got := seen{r.Method, r.Path, r.Deployment, r.Model, r.APIVersion}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("request (-want +got):\n%s", diff)
			}
			if r.Principal != azd.PrincipalID() {
				t.Errorf("principal = %q, want the developer %q", r.Principal, azd.PrincipalID())
			}
		})
	}
}

func TestClientIgnoresOpenAIEnvironment(t *testing.T) {
	for _, style := range pathStyles {
		t.Run(style.name, func(t *testing.T) {
			hc := aoaitest.Guard(t)
			azd := aoaitest.NewAzd(t)
			srv := newServer(t)
			poison := map[string]string{
				"OPENAI_API_KEY":        "sk-poison",
				"OPENAI_ADMIN_KEY":      "sk-admin-poison",
				"OPENAI_BASE_URL":       "https://poison.example/v1", // the guard would refuse it
				"OPENAI_ORG_ID":         "org-poison",
				"OPENAI_PROJECT_ID":     "proj-poison",
				"OPENAI_CUSTOM_HEADERS": "X-Poison: 1\nApi-Key: poison\nAuthorization: Bearer poison",
			}
			for k, v := range poison {
				t.Setenv(k, v)
			}
			c, cfg := newClient(t, srv, style.version, newCredential(t, hc))
			mustChat(t, c, cfg, "hi")

			reqs := srv.Requests()
			if len(reqs) != 1 {
				t.Fatalf("the configured endpoint saw %d requests, want 1", len(reqs))
			}
			h := reqs[0].Header
			auth := h.Values("Authorization")
			tok, ok := "", len(auth) == 1
			if ok {
				tok, ok = strings.CutPrefix(auth[0], "Bearer ")
			}
			if claims, err := aoaitest.VerifyToken(tok); !ok || err != nil ||
				claims.ObjectID != azd.PrincipalID() {
				t.Errorf("Authorization = %q, want only the developer's Entra token", auth)
			}
			for name, values := range h {
				lower := strings.ToLower(name)
				if lower == "api-key" || lower == "x-poison" || strings.HasPrefix(lower, "openai-") {
					t.Errorf("request carries header %s: %q", name, values)
				}
				for _, v := range values {
					if strings.Contains(v, "poison") {
						t.Errorf("request carries header %s: %q", name, v)
					}
				}
			}
		})
	}
}

func TestClientRefusesToSendTokenToAnotherEndpoint(t *testing.T) {
	hc := aoaitest.Guard(t)
	azd := aoaitest.NewAzd(t)
	srv := newServer(t)
	other := newServer(t)
	c, cfg := newClient(t, srv, "", newCredential(t, hc))

	_, err := c.Chat.Completions.New(context.Background(), chatParams(cfg, "hi"),
		option.WithBaseURL(other.URL+"/openai/v1/"), option.WithHTTPClient(other.Client()))
	if err == nil || !strings.Contains(err.Error(), "keyless: refusing to send a token to") {
		t.Errorf("error = %v, want a refusal", err)
	}
	if n := len(other.Requests()) + len(srv.Requests()); n != 0 {
		t.Errorf("%d requests were sent", n)
	}
	if n := azd.Calls(); n != 0 {
		t.Errorf("azd ran %d times for a refused request", n)
	}
}

func TestNewClientDefaultCredentialSignsInToConfiguredTenant(t *testing.T) {
	aoaitest.Guard(t)
	azd := aoaitest.NewAzd(t)
	srv := newServer(t)
	cfg := keyless.Config{Endpoint: srv.URL, Deployment: "chat",
		TenantID: aoaitest.DefaultTenantID}
	c, err := keyless.NewClient(cfg, &keyless.ClientOptions{HTTPClient: srv.Client()})
	if err != nil {
		t.Fatal(err)
	}
	mustChat(t, c, cfg, "hi")
	args := azd.Args()
	if len(args) != 1 || !slices.Contains(args[0], "--tenant-id") ||
		!slices.Contains(args[0], aoaitest.DefaultTenantID) {
		t.Errorf("azd runs = %q, want one with --tenant-id %s", args, aoaitest.DefaultTenantID)
	}
}

func TestNewClientRejectsInvalidConfig(t *testing.T) {
	aoaitest.Guard(t)
	_, err := keyless.NewClient(keyless.Config{}, nil)
	var ce *keyless.ConfigError
	if !errors.As(err, &ce) || len(ce.Problems) != 2 {
		t.Errorf("error = %v, want a *keyless.ConfigError with 2 problems", err)
	}
}

func TestClientAllowsPlainHTTPOnLoopback(t *testing.T) {
	const answer = `{"id":"c","object":"chat.completion","created":1,"model":"m","choices":` +
		`[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}]}`
	for _, style := range pathStyles {
		t.Run(style.name, func(t *testing.T) {
			hc := aoaitest.Guard(t)
			azd := aoaitest.NewAzd(t)
			var paths []string
			var mu sync.Mutex
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter,
				r *http.Request) {
				tok, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
				if _, err := aoaitest.VerifyToken(tok); err != nil {
					http.Error(w, err.Error(), http.StatusUnauthorized)
					return
				}
				mu.Lock()
				paths = append(paths, r.URL.Path)
				mu.Unlock()
				w.Header().Set("Content-Type", "application/json")
				io.WriteString(w, answer)
			}))
			defer srv.Close()

			cfg := keyless.Config{Endpoint: srv.URL, Deployment: "chat",
				APIVersion: style.version}
			c, err := keyless.NewClient(cfg, &keyless.ClientOptions{
				HTTPClient: hc,
				Credential: newCredential(t, hc),
			})
			if err != nil {
				t.Fatal(err)
			}
			if got := mustChat(t, c, cfg, "hi"); got != "ok" {
				t.Errorf("answer = %q, want ok", got)
			}
			want := map[string]string{"v1": "/openai/v1/chat/completions",
				"dated": "/openai/deployments/chat/chat/completions"}[style.name]
			if !slices.Equal(paths, []string{want}) || azd.Calls() != 1 {
				t.Errorf("paths %q after %d azd runs; want [%s] after one run", paths,
					azd.Calls(), want)
			}
		})
	}
}
