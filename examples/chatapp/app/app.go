// Package app is securechat's example chat app as a library: the embedded
// page, the AI Chat Protocol endpoints over keyless Azure OpenAI, health and
// readiness probes, security headers, access logs and optional sign-in
// through Azure Container Apps built-in authentication, all behind one
// http.Handler. The command in the parent directory is a thin main around it;
// tests and tools build the same handler in their own process with New.
//
// # Routes
//
//	GET  /                 the page (index.html) and its static files
//	GET  /config.json      {"demo":bool,"user":string} for the page
//	POST /chat             a complete answer (application/json)
//	POST /chat/stream      a streamed answer (application/jsonl)
//	GET  /healthz          200 while the process serves
//	GET  /readyz           200 once the configuration is valid and the
//	                       credential has produced a token; 503 before
//	                       (logged when it changes, not at every probe)
//
// A route asked with another method answers 405 with an Allow header, and a
// path that is no route answers 404 not_found, both with the protocol's JSON
// error body; only a GET for a missing page gets a plain 404 page.
//
// Every response carries ContentSecurityPolicy, X-Content-Type-Options:
// nosniff and Referrer-Policy: no-referrer, and an X-Request-Id that the
// access log line and the chat handler's own log lines share.
//
// # Sign-in
//
// With Options.RequireSignIn, every request but the probes must carry the
// X-MS-CLIENT-PRINCIPAL header that Azure Container Apps built-in
// authentication adds after it signed the user in; others get 401 with the
// protocol's error body. The user's name (the principal's name claim) is
// passed to the page through /config.json. The header is trusted as is: turn
// this on only where the platform's authentication sits in front of the app
// and nothing else can reach it, as in Container Apps.
package app

import (
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"path"
	"strings"
	"sync/atomic"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"

	"github.com/aoaiblocks/securechat/chatproto"
	"github.com/aoaiblocks/securechat/keyless"
	"github.com/aoaiblocks/securechat/stream"
)

// Options configures an App. Config, or Model, is required; everything else
// has a default.
type Options struct {
	// Config locates Azure OpenAI. It is validated by New. It is not used
	// when Model is set.
	Config keyless.Config

	// Getenv is the environment the credential chain reads (AZURE_CLIENT_ID,
	// AZURE_TOKEN_CREDENTIALS, IDENTITY_ENDPOINT, ...). Nil means os.Getenv.
	// Demo mode injects the stand-ins' environment here, so the developer's
	// AZURE_* variables play no part. The managed identity variables are the
	// exception: azidentity reads them from the process environment only, and
	// keyless refuses an injected value that differs from it (see Demo).
	Getenv func(string) string

	// Credential authorizes the calls to Azure OpenAI. Nil means the keyless
	// credential chain built from Getenv.
	Credential azcore.TokenCredential

	// HTTPClient sends the requests to Azure OpenAI. Nil means the default;
	// tests and the demo pass the Azure OpenAI stand-in's Client.
	HTTPClient *http.Client

	// Model answers the chat requests. Nil means Azure OpenAI through the
	// keyless client built from Config, Credential and HTTPClient. Set it to
	// serve another backend, or an in-process model in benchmarks.
	Model stream.Model

	// Azure configures the Azure OpenAI model: retries (MaxRetries,
	// MaxRetryWait) and request options. Nil means its defaults. Its
	// Credential is always the app's. It is not used when Model is set.
	Azure *stream.AzureOptions

	// Stream configures the chat handler (system prompt, limits, timeouts).
	// Nil means its defaults. Its Logger defaults to Logger. Its Limits
	// default to the app's upload limits (DefaultMaxUploadBytes and the
	// others), not chatproto's larger ones; Limits given here replace them
	// whole, with chatproto's defaults for the fields left zero.
	Stream *stream.Options

	// Web holds the page: index.html at its root and the files it loads.
	// Nil serves no page (the API and probes still work).
	Web fs.FS

	// Logger receives the access log and the app's own lines. Nil discards
	// them.
	Logger *slog.Logger

	// Demo tells the page that answers are simulated.
	Demo bool

	// RequireSignIn makes every request but the probes carry Azure Container
	// Apps built-in authentication's principal header. See the package
	// documentation.
	RequireSignIn bool

	// BodyTimeout bounds how long a request's body may take to arrive, from
	// the moment its headers have been read. A client that sends more slowly
	// gets 408 request_timeout and its connection is closed. The bound ends
	// once the body has been read, so it never cuts a long streamed answer.
	// Zero means DefaultBodyTimeout; negative means no bound.
	BodyTimeout time.Duration
}

// The app's limits on multipart/form-data chat requests, which carry files.
// They are far below chatproto's defaults (32 MiB, 8 files of 8 MiB) because
// the Azure OpenAI model does not pass files on to the deployment (see the
// BUG note of package stream): a large upload would only cost memory while
// it is decoded. The limits on JSON requests are chatproto's.
const (
	// DefaultMaxUploadBytes bounds a whole multipart body, files included.
	DefaultMaxUploadBytes = 4 << 20
	// DefaultMaxFileBytes bounds one file.
	DefaultMaxFileBytes = 2 << 20
	// DefaultMaxFiles bounds the files of one request.
	DefaultMaxFiles = 4
)

// DefaultBodyTimeout is the default Options.BodyTimeout: ample for a chat
// request, or a multipart body at the default upload limit on a slow link.
const DefaultBodyTimeout = 30 * time.Second

// App is the chat app's HTTP handler. It is safe for concurrent use.
type App struct {
	handler   http.Handler
	log       *slog.Logger
	demo      bool
	token     func(context.Context) (string, error) // nil when Model was given
	readiness atomic.Int32                          // the last probe's outcome
}

// Outcomes of the readiness probe, kept so that only changes are logged.
const (
	readinessUnknown int32 = iota
	readinessReady
	readinessNotReady
)

// ConfigError reports options that cannot work whatever the network does:
// Options.Config is invalid, or the environment asks for a credential chain
// that keyless cannot build (an unknown AZURE_TOKEN_CREDENTIALS, a malformed
// AZURE_TENANT_ID, no credential source at all, ...). Err, keyless's error,
// says what to change. A command reports it as a usage error.
type ConfigError struct {
	Err error
}

// Error returns "app: invalid configuration: " followed by Err.
func (e *ConfigError) Error() string { return "app: invalid configuration: " + e.Err.Error() }

// Unwrap returns Err, so that errors.As finds keyless's *ConfigError or
// *CredentialError behind it.
func (e *ConfigError) Unwrap() error { return e.Err }

// New returns the app for opts. It reports an invalid Config, and a
// credential chain that cannot be built, as a *ConfigError before serving
// anything.
func New(opts Options) (*App, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	a := &App{log: log, demo: opts.Demo}

	model := opts.Model
	if model == nil {
		m, token, err := azureModel(opts)
		if err != nil {
			return nil, err
		}
		model, a.token = m, token
	}

	var sopts stream.Options
	if opts.Stream != nil {
		sopts = *opts.Stream
	}
	if sopts.Logger == nil {
		sopts.Logger = log
	}
	if sopts.Limits == nil {
		sopts.Limits = &chatproto.Limits{
			MaxMultipartBytes: DefaultMaxUploadBytes,
			MaxFileBytes:      DefaultMaxFileBytes,
			MaxFiles:          DefaultMaxFiles,
		}
	}
	chat := stream.NewHandler(model, &sopts)

	mux := http.NewServeMux()
	mux.Handle(routeChat, chat)
	mux.Handle(routeChatStream, chat)
	mux.HandleFunc(routeHealth, a.serveHealth)
	mux.HandleFunc(routeReady, a.serveReady)
	mux.HandleFunc(routeConfig, a.serveConfig)
	// The same paths with any other method: the protocol's 405 rather than
	// the ServeMux's plain text one.
	for _, path := range []string{"/healthz", "/readyz", "/config.json"} {
		mux.HandleFunc(path, methodNotAllowed)
	}
	if opts.Web != nil {
		mux.Handle("/", staticFiles(opts.Web))
	} else {
		mux.HandleFunc("/", notFound)
	}

	var h http.Handler = recordRoute(mux)
	if opts.RequireSignIn {
		h = requireSignIn(h)
	}
	bodyTimeout := opts.BodyTimeout
	if bodyTimeout == 0 {
		bodyTimeout = DefaultBodyTimeout
	}
	if bodyTimeout > 0 {
		h = limitBodyTime(bodyTimeout, h)
	}
	a.handler = accessLog(log, securityHeaders(h))
	return a, nil
}

// azureModel builds the Azure OpenAI model for opts.Config and the token
// provider the readiness probe uses. The model's client and the probe share
// one credential.
func azureModel(opts Options) (stream.Model, func(context.Context) (string, error), error) {
	if err := opts.Config.Validate(); err != nil {
		return nil, nil, &ConfigError{Err: err}
	}
	cred := opts.Credential
	if cred == nil {
		var err error
		cred, err = keyless.NewCredential(opts.Config.CredentialOptions(
			&keyless.CredentialOptions{Getenv: opts.Getenv}))
		if err != nil {
			// NewCredential does no I/O: every failure is the environment's.
			return nil, nil, &ConfigError{Err: err}
		}
	}
	// One cache serves the client, the model's diagnostics and the readiness probe, so
	// the token source sees one request per token lifetime.
	cred = keyless.NewCachedCredential(cred, "")
	client, err := keyless.NewClient(opts.Config, &keyless.ClientOptions{
		HTTPClient: opts.HTTPClient,
		Credential: cred,
	})
	if err != nil {
		return nil, nil, fmt.Errorf("app: building the Azure OpenAI client: %w", err)
	}
	var azure stream.AzureOptions
	if opts.Azure != nil {
		azure = *opts.Azure
	}
	azure.Credential = cred
	model := stream.NewAzureModel(client, opts.Config.Deployment, &azure)
	return model, keyless.NewTokenProvider(cred, ""), nil
}

// ServeHTTP answers one request.
func (a *App) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	a.handler.ServeHTTP(w, r)
}

// Patterns of the probes and the page's configuration.
const (
	routeHealth = "GET /healthz"
	routeReady  = "GET /readyz"
	routeConfig = "GET /config.json"
)

// probeTimeout bounds how long one readiness probe waits for a token; the
// token request itself goes on in the background and its token is cached.
const probeTimeout = 5 * time.Second

// checkTimeout bounds CheckCredential's wait: longer than the 60 seconds the
// keyless chain gives the azd command.
const checkTimeout = 90 * time.Second

// Ready reports whether the app can answer: nil once its credential has
// produced a token, the credential's error otherwise (or ctx's, when it ends
// first). The token provider caches the token, so the identity platform is
// asked again only when the token nears its expiry, however often Ready is
// called. An app built with Options.Model is always ready.
func (a *App) Ready(ctx context.Context) error {
	if a.token == nil {
		return nil
	}
	_, err := a.token(ctx)
	return err
}

// CheckCredential gets a token once and logs the outcome, so a developer who
// has not signed in learns it when the app starts rather than at the first
// question.
func (a *App) CheckCredential(ctx context.Context) {
	if a.token == nil {
		return
	}
	check, cancel := context.WithTimeout(ctx, checkTimeout)
	defer cancel()
	if err := a.Ready(check); err != nil {
		if ctx.Err() == nil { // not shutting down
			a.log.Warn("the credential could not get a token yet; chat requests will "+
				"fail until it can", "err", err)
			// Said already: the probes log only when this changes.
			a.readiness.CompareAndSwap(readinessUnknown, readinessNotReady)
		}
		return
	}
	a.log.Info("the credential got a token")
	a.readiness.CompareAndSwap(readinessUnknown, readinessReady)
}

// noteReadiness records a readiness probe's outcome, err, and logs it when it
// differs from the last one: a warning with the cause when the app stops
// being ready (or is not ready at its first probe), a line at info level when
// it is ready again. A credential that keeps failing, probed every few
// seconds, so logs one line, not one per probe.
func (a *App) noteReadiness(err error) {
	now := readinessReady
	if err != nil {
		now = readinessNotReady
	}
	before := a.readiness.Swap(now)
	switch {
	case now == readinessNotReady && before != readinessNotReady:
		a.log.Warn("not ready", "err", err)
	case now == readinessReady && before == readinessNotReady:
		a.log.Info("ready")
	}
}

func (a *App) serveHealth(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

func (a *App) serveReady(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	ctx, cancel := context.WithTimeout(r.Context(), probeTimeout)
	defer cancel()
	err := a.Ready(ctx)
	a.noteReadiness(err)
	if err != nil {
		chatproto.WriteError(w, &chatproto.Error{
			Status:  http.StatusServiceUnavailable,
			Code:    "not_ready",
			Message: "the app cannot get a token for Azure OpenAI yet",
		})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

// pageConfig is what the page reads from /config.json.
type pageConfig struct {
	Demo bool   `json:"demo"`
	User string `json:"user"`
}

func (a *App) serveConfig(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, pageConfig{Demo: a.demo, User: userFrom(r.Context())})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// staticFiles serves the page's files from web to GET and HEAD requests.
// Directory listings are not served: a path to a directory without an
// index.html is 404, and so is a markdown file (the folder's README files are
// for the repository's readers) other than a license text, which stays next
// to the library it covers. Other methods get the protocol's error body: 405
// for a file, 404 for any other path.
func staticFiles(web fs.FS) http.Handler {
	files := http.FileServerFS(web)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := r.URL.Path[1:]
		if name == "" || name[len(name)-1] == '/' {
			name += "index.html"
		}
		if hiddenFile(name) {
			notFound(w, r)
			return
		}
		if f, err := fs.Stat(web, name); err != nil || f.IsDir() {
			notFound(w, r)
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			methodNotAllowed(w, r)
			return
		}
		w.Header().Set("Cache-Control", "no-cache")
		files.ServeHTTP(w, r)
	})
}

// hiddenFile reports whether the page's file name is kept from clients:
// markdown documents, except license texts (LICENSE.marked.md).
func hiddenFile(name string) bool {
	return strings.EqualFold(path.Ext(name), ".md") &&
		!strings.HasPrefix(path.Base(name), "LICENSE")
}

// codeNotFound is the error code of a request for a path the app does not
// serve.
const codeNotFound = "not_found"

// notFound answers a request for a path the app does not serve: a plain
// page to GET and HEAD, which browsers send, and the protocol's error body
// (404 not_found) to any other method, which API clients send.
func notFound(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		http.NotFound(w, r)
		return
	}
	chatproto.WriteError(w, &chatproto.Error{
		Status:  http.StatusNotFound,
		Code:    codeNotFound,
		Message: "no such route; POST to /chat or /chat/stream",
	})
}

// methodNotAllowed answers a request to a GET route with another method:
// 405 with Allow and the protocol's error body, as the chat routes answer
// a method other than POST.
func methodNotAllowed(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Allow", "GET, HEAD")
	chatproto.WriteError(w, &chatproto.Error{
		Status:  http.StatusMethodNotAllowed,
		Code:    stream.CodeMethodNotAllowed,
		Message: "use GET",
	})
}
