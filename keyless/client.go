package keyless

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/azure"
	"github.com/openai/openai-go/v3/conversations"
	"github.com/openai/openai-go/v3/live"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/realtime"
	"github.com/openai/openai-go/v3/responses"
	"github.com/openai/openai-go/v3/webhooks"
)

// ClientOptions configures [NewClient]. The zero value builds the credential chain from
// the process environment and sends requests with a client like openai-go's default.
type ClientOptions struct {
	// HTTPClient sends the requests to Azure OpenAI, such as the client of a test
	// server that trusts its certificate. Nil means a client with a 10 minute limit on
	// waiting for response headers.
	HTTPClient *http.Client

	// Credential authorizes the requests. Nil means [NewCredential] with
	// CredentialOptions, where the configuration's ClientID and TenantID override
	// AZURE_CLIENT_ID and AZURE_TENANT_ID.
	Credential azcore.TokenCredential

	// CredentialOptions configures the default credential; unused when Credential is
	// set.
	CredentialOptions *CredentialOptions
}

// NewClient returns an openai-go client for the Azure OpenAI deployment cfg names,
// authorized by Microsoft Entra ID tokens (the header Authorization: Bearer) and never
// by a key. Pass cfg.Deployment as the model of each request.
//
// With cfg.APIVersion "" or "v1" the client calls the v1 API at <endpoint>/openai/v1/.
// With a dated version it calls <endpoint>/openai/deployments/<model>/...?api-version=,
// through openai-go's azure package.
//
// The client holds one token cache for its whole life (see [NewTokenProvider] for how
// it refreshes): make one client per process and share it, as it is safe for concurrent
// use. A token failure surfaces from the client's calls as an error holding a
// *[CredentialError], which [errors.As] finds through openai-go's wrapping. It surfaces
// at once: openai-go does not retry a request that could not get a token (the cache
// already remembers the failure, so a retry would only add openai-go's backoff, about
// 1.5 s, before the same error).
//
// Unlike [openai.NewClient], the client ignores OPENAI_BASE_URL, OPENAI_API_KEY,
// OPENAI_ADMIN_KEY, OPENAI_ORG_ID, OPENAI_PROJECT_ID and OPENAI_CUSTOM_HEADERS: its
// requests go only to cfg.Endpoint and carry no key and no headers from the
// environment. The token is attached only to requests for that endpoint.
//
// NewClient returns a *[ConfigError] when cfg is not valid, and the error of
// [NewCredential] when it builds the credential and that fails.
func NewClient(cfg Config, opts *ClientOptions) (openai.Client, error) {
	if opts == nil {
		opts = &ClientOptions{}
	}
	if err := cfg.Validate(); err != nil {
		return openai.Client{}, err
	}
	cred := opts.Credential
	if cred == nil {
		var err error
		if cred, err = NewCredential(credentialOptionsFor(cfg, opts.CredentialOptions)); err != nil {
			return openai.Client{}, err
		}
	}
	cache := cacheFor(cred, DefaultScope) // shares the cache of a NewCachedCredential
	hc := opts.HTTPClient
	if hc == nil {
		hc = defaultHTTPClient()
	}

	if cfg.dated() {
		ro := []option.RequestOption{
			option.WithHTTPClient(hc),
			// azure.WithEndpoint also switches off openai-go's environment defaults.
			azure.WithEndpoint(cfg.Endpoint, cfg.APIVersion),
			azure.WithTokenCredential(cache),
			// Outside azure's token middleware, which openai-go installs last.
			option.WithMiddleware(finalCredentialFailure, reuseStreamConnection),
		}
		if u, _ := url.Parse(cfg.Endpoint); u.Scheme == "http" { // Validate: loopback only
			ro = append(ro, azure.WithUnsafeAllowHTTP())
		}
		return openai.NewClient(ro...), nil
	}

	base, err := url.Parse(strings.TrimRight(cfg.Endpoint, "/") + "/openai/v1/")
	if err != nil {
		return openai.Client{}, fmt.Errorf("keyless: %w", err) // Validate parsed it already
	}
	return clientWithoutEnvironment(
		option.WithHTTPClient(hc),
		option.WithBaseURL(base.String()),
		option.WithMiddleware(finalCredentialFailure, bearerMiddleware(cache, base),
			reuseStreamConnection),
	), nil
}

// CredentialOptions returns the options of the credential chain for cfg: base's (nil
// means the zero value), with cfg's ClientID and TenantID in place of AZURE_CLIENT_ID
// and AZURE_TENANT_ID, which matters when cfg came from azd's .env file rather than the
// environment. [NewClient] builds its default credential from these options; call it
// to build the same credential yourself, for example to share it through
// [NewCachedCredential].
func (cfg Config) CredentialOptions(base *CredentialOptions) *CredentialOptions {
	return credentialOptionsFor(cfg, base)
}

// credentialOptionsFor returns the options of the default credential for cfg.
func credentialOptionsFor(cfg Config, base *CredentialOptions) *CredentialOptions {
	co := CredentialOptions{}
	if base != nil {
		co = *base
	}
	if cfg.ClientID == "" && cfg.TenantID == "" {
		return &co
	}
	getenv := co.Getenv
	if getenv == nil {
		getenv = os.Getenv
	}
	co.Getenv = func(name string) string {
		switch {
		case name == envClientID && cfg.ClientID != "":
			return cfg.ClientID
		case name == envTenantID && cfg.TenantID != "":
			return cfg.TenantID
		}
		return getenv(name)
	}
	return &co
}

// bearerMiddleware authorizes requests to base's origin and path with a token from c.
// It refuses other requests rather than send the token elsewhere.
func bearerMiddleware(c *tokenCache, base *url.URL) option.Middleware {
	return func(req *http.Request, next option.MiddlewareNext) (*http.Response, error) {
		u := req.URL
		if !strings.EqualFold(u.Scheme, base.Scheme) || !strings.EqualFold(u.Host, base.Host) ||
			!strings.HasPrefix(u.Path, base.Path) {
			return nil, fmt.Errorf("keyless: refusing to send a token to %s://%s%s: not under "+
				"the configured endpoint %s", u.Scheme, u.Host, u.Path, base)
		}
		t, err := c.get(req.Context())
		if err != nil {
			return nil, err
		}
		req.Header.Set("Authorization", t.header)
		req.Header.Del("Api-Key")
		return next(req)
	}
}

// finalCredentialFailure keeps openai-go from retrying a request that failed for want
// of a token: the token cache remembers a failure for failureHold, so each retry would
// only add openai-go's backoff before the same error. openai-go has no public way to mark
// an error final, but before anything else it honours the X-Should-Retry header of the
// response that comes with an error; so the error comes back with a stand-in response
// that says false. openai-go then returns the error as it is. The stand-in was never
// sent or received: it has no body, and no request reached the endpoint.
// TestCredentialFailureIsNotRetried pins this against openai-go upgrades.
func finalCredentialFailure(req *http.Request, next option.MiddlewareNext) (*http.Response,
	error) {
	resp, err := next(req)
	var ce *CredentialError
	if err == nil || resp != nil || !errors.As(err, &ce) {
		return resp, err
	}
	return &http.Response{
		Status:     "503 keyless: no token, request not sent",
		StatusCode: http.StatusServiceUnavailable,
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: 1,
		Header:     http.Header{"X-Should-Retry": {"false"}},
		Body:       http.NoBody,
		Request:    req,
	}, err
}

// clientWithoutEnvironment builds the client openai.NewClient would, minus the defaults
// openai.NewClient reads from OPENAI_* variables, which no public option switches off.
// TestClientWithoutEnvironmentHasEveryService checks it misses no service.
func clientWithoutEnvironment(opts ...option.RequestOption) openai.Client {
	return openai.Client{
		Options:                 opts,
		Decisions:               openai.NewDecisionService(opts...),
		Completions:             openai.NewCompletionService(opts...),
		Chat:                    openai.NewChatService(opts...),
		Embeddings:              openai.NewEmbeddingService(opts...),
		Files:                   openai.NewFileService(opts...),
		Images:                  openai.NewImageService(opts...),
		ContentProvenanceChecks: openai.NewContentProvenanceCheckService(opts...),
		Audio:                   openai.NewAudioService(opts...),
		Moderations:             openai.NewModerationService(opts...),
		Models:                  openai.NewModelService(opts...),
		FineTuning:              openai.NewFineTuningService(opts...),
		Graders:                 openai.NewGraderService(opts...),
		VectorStores:            openai.NewVectorStoreService(opts...),
		Safety:                  openai.NewSafetyService(opts...),
		Webhooks:                webhooks.NewWebhookService(opts...),
		Beta:                    openai.NewBetaService(opts...),
		Batches:                 openai.NewBatchService(opts...),
		Uploads:                 openai.NewUploadService(opts...),
		Admin:                   openai.NewAdminService(opts...),
		Responses:               responses.NewResponseService(opts...),
		Live:                    live.NewLiveService(opts...),
		Realtime:                realtime.NewRealtimeService(opts...),
		Conversations:           conversations.NewConversationService(opts...),
		Containers:              openai.NewContainerService(opts...),
		Skills:                  openai.NewSkillService(opts...),
		Videos:                  openai.NewVideoService(opts...),
	}
}

// defaultHTTPClient is like openai-go's default client: http.DefaultTransport with a
// bound on the wait for response headers (not on streaming the body).
func defaultHTTPClient() *http.Client {
	if t, ok := http.DefaultTransport.(*http.Transport); ok {
		t = t.Clone()
		t.ResponseHeaderTimeout = 10 * time.Minute
		// Over HTTP/1.1 each concurrent stream needs its own connection; keep as many
		// idle for the next burst as the transport keeps in all, not net/http's 2.
		t.MaxIdleConnsPerHost = t.MaxIdleConns
		return &http.Client{Transport: t}
	}
	return &http.Client{}
}
