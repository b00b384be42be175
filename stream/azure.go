package stream

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/aoaiblocks/securechat/chatproto"
)

// DefaultScope is the scope of the tokens Azure OpenAI accepts.
const DefaultScope = "https://cognitiveservices.azure.com/.default"

// Defaults of the AzureOptions retry fields.
const (
	// DefaultMaxRetries is how many times AzureModel retries a request that failed
	// before its answer began, as openai-go does by default.
	DefaultMaxRetries = 2
	// DefaultMaxRetryWait bounds each wait before a retry. An upstream that asks for
	// a longer wait is not retried: the client gets the error at once (a 429 with the
	// upstream's Retry-After) instead of a silent wait.
	DefaultMaxRetryWait = 10 * time.Second
)

// AzureOptions configures an AzureModel. A nil *AzureOptions means the
// defaults.
type AzureOptions struct {
	// Credential is the credential behind the client, if the caller has it.
	// When Azure OpenAI refuses a token (401 or 403) and the refused token
	// cannot be read from the failed request, AzureModel asks Credential for
	// a token to name, in the log, the principal that lacks the role. The
	// token itself is never logged.
	Credential azcore.TokenCredential
	// Scope is the scope asked of Credential. Empty means DefaultScope.
	Scope string

	// MaxRetries bounds the retries of a request that failed before its answer
	// began: throttled (429), 408, 409, any 5xx, or a connection that failed or
	// was cut before the response headers. Nothing is retried once the answer has
	// begun, so never after a byte has gone to the client. Zero means
	// DefaultMaxRetries; negative means no retries.
	MaxRetries int
	// MaxRetryWait bounds each wait before a retry. The wait is the one the
	// upstream asked for (retry-after-ms, else Retry-After), or else exponential
	// backoff from 0.5 s (doubling, less up to a quarter of jitter). When the
	// upstream asks for a longer wait than MaxRetryWait, the request is not
	// retried: its error (a 429 with Retry-After, for example) goes to the client
	// at once. Zero means DefaultMaxRetryWait.
	//
	// The waits before the first delta therefore add up to at most MaxRetries
	// times MaxRetryWait, and the Handler's Options.IdleTimeout bounds the whole
	// time before the first delta, retries included. Under a Handler, a wait is
	// also not begun when it would end after the first delta is due (by
	// Options.IdleTimeout or Options.Timeout), counting as long again as the
	// failed attempt took: the error goes to the client at once, as when the
	// upstream asks for more than MaxRetryWait, rather than being lost to a
	// timeout in the middle of the wait.
	MaxRetryWait time.Duration

	// RequestOptions are added to every chat completions call, after the retry
	// options above, which they override: for example option.WithMaxRetries or
	// option.WithHeader.
	RequestOptions []option.RequestOption
}

// AzureModel is the Model for an Azure OpenAI chat deployment, through an
// openai-go client such as the one keyless.NewClient returns (any client
// with its authorization and base URL set works). It streams chat
// completions with stream_options.include_usage, so that the last delta
// carries the token usage, and passes the request's overrides as
// temperature, top_p and max_completion_tokens (which the v1 API and dated
// API versions from 2024-10-21 on accept). It sends the text of the messages
// only: message context and files stay in the service.
//
// Errors come back as openai-go returns them, for the Handler to map; a
// refused token (401 or 403) comes back as an *Error with code
// upstream_auth whose log attributes name the principal and the missing
// role, with the command that assigns it.
//
// Throttling (429) and 5xx answers, and connections that fail before the
// response headers, are retried by the openai-go client before the first chunk,
// honouring retry-after-ms and Retry-After, within AzureOptions.MaxRetries and
// AzureOptions.MaxRetryWait (two retries, waits of up to 10 s, by default).
// An AzureModel is safe for concurrent use.
type AzureModel struct {
	client     openai.Client
	deployment string
	opts       AzureOptions
	call       []option.RequestOption // the retry options, then opts.RequestOptions
	maxWait    time.Duration          // MaxRetryWait, resolved
}

// NewAzureModel returns the Model for the chat deployment named deployment,
// called through client. opts may be nil.
func NewAzureModel(client openai.Client, deployment string, opts *AzureOptions) *AzureModel {
	m := &AzureModel{client: client, deployment: deployment}
	if opts != nil {
		m.opts = *opts
		m.opts.RequestOptions = append([]option.RequestOption(nil), opts.RequestOptions...)
	}
	if m.opts.Scope == "" {
		m.opts.Scope = DefaultScope
	}
	retries := m.opts.MaxRetries
	switch {
	case retries == 0:
		retries = DefaultMaxRetries
	case retries < 0:
		retries = 0
	}
	wait := m.opts.MaxRetryWait
	if wait <= 0 {
		wait = DefaultMaxRetryWait
	}
	m.maxWait = wait
	m.call = append([]option.RequestOption{
		option.WithMaxRetries(retries),
		option.WithMaxRetryDelay(wait),
	}, m.opts.RequestOptions...)
	return m
}

// Stream asks the deployment for a streamed chat completion and yields its
// content as it arrives, then one delta with the finish reason and usage.
// Leaving the loop early, or cancelling ctx, closes the upstream stream at
// once.
func (m *AzureModel) Stream(ctx context.Context, req *Request) iter.Seq2[Delta, error] {
	return func(yield func(Delta, error) bool) {
		call := m.call
		if by, ok := firstDeltaBy(ctx); ok {
			call = append(call[:len(call):len(call)], option.WithMiddleware(m.retryWithin(by)))
		}
		s := m.client.Chat.Completions.NewStreaming(ctx, m.params(req), call...)
		defer s.Close()

		var finish string
		var usage *Usage
		for s.Next() {
			chunk := s.Current()
			if chunk.JSON.Usage.Valid() {
				u := chunk.Usage
				usage = &Usage{
					PromptTokens:     u.PromptTokens,
					CompletionTokens: u.CompletionTokens,
					TotalTokens:      u.TotalTokens,
				}
			}
			for _, c := range chunk.Choices {
				if c.Index != 0 {
					continue
				}
				if c.Delta.Content != "" && !yield(Delta{Content: c.Delta.Content}, nil) {
					return
				}
				if c.FinishReason != "" {
					finish = c.FinishReason
				}
			}
		}
		err := s.Err()
		if (err != nil || finish == "") && ctx.Err() != nil {
			// Cancelled: the stream may read as cut, or as ended without a
			// finish reason; either way the cancellation is why it stopped.
			yield(Delta{}, ctx.Err())
			return
		}
		if err != nil {
			yield(Delta{}, m.explain(ctx, err))
			return
		}
		if finish == "" {
			yield(Delta{}, fmt.Errorf("stream: azure openai: %w", errTruncated))
			return
		}
		yield(Delta{FinishReason: finish, Usage: usage}, nil)
	}
}

// retryWithin returns an openai-go middleware that keeps the client from
// beginning a retry wait that would end after by, the Handler's bound on the
// first delta, counting as long again as the failed attempt took for the
// retry itself. It marks such an answer "x-should-retry: false", openai-go's
// own signal, so that its error (a 429 with the upstream's Retry-After, say)
// goes to the Handler at once, instead of a wait the Handler's bound would
// cut short as a timeout. The wait is the upstream's retry-after-ms or
// Retry-After, or else the longest the backoff may be.
func (m *AzureModel) retryWithin(by time.Time) option.Middleware {
	attempt := 0 // openai-go makes its attempts one after the other
	return func(req *http.Request, next option.MiddlewareNext) (*http.Response, error) {
		start := time.Now()
		resp, err := next(req)
		n := attempt
		attempt++
		if err != nil || resp == nil || !retryable(resp) {
			return resp, err
		}

		wait := retryAfter(resp.Header)
		if wait <= 0 {
			wait = min(firstBackoff<<min(n, 16), m.maxWait)
		}
		if now := time.Now(); now.Add(wait + now.Sub(start)).After(by) {
			resp.Header.Set("x-should-retry", "false")
		}
		return resp, err
	}
}

// firstBackoff is openai-go's wait before its first retry when the upstream
// did not say how long to wait; it doubles with each retry.
const firstBackoff = 500 * time.Millisecond

// retryable reports whether openai-go would retry after resp.
func retryable(resp *http.Response) bool {
	switch resp.Header.Get("x-should-retry") {
	case "true":
		return true
	case "false":
		return false
	}
	switch s := resp.StatusCode; {
	case s == http.StatusRequestTimeout, s == http.StatusConflict,
		s == http.StatusTooManyRequests, s >= http.StatusInternalServerError:
		return true
	}
	return false
}

// params builds the chat completions request.
func (m *AzureModel) params(req *Request) openai.ChatCompletionNewParams {
	msgs := make([]openai.ChatCompletionMessageParamUnion, 0, len(req.Messages))
	for _, msg := range req.Messages {
		switch msg.Role {
		case chatproto.RoleSystem:
			msgs = append(msgs, openai.SystemMessage(msg.Content))
		case chatproto.RoleAssistant:
			msgs = append(msgs, openai.AssistantMessage(msg.Content))
		default:
			msgs = append(msgs, openai.UserMessage(msg.Content))
		}
	}
	p := openai.ChatCompletionNewParams{
		Model:    m.deployment,
		Messages: msgs,
		StreamOptions: openai.ChatCompletionStreamOptionsParam{
			IncludeUsage: openai.Bool(true),
		},
	}
	if req.Temperature != nil {
		p.Temperature = openai.Float(*req.Temperature)
	}
	if req.TopP != nil {
		p.TopP = openai.Float(*req.TopP)
	}
	if req.MaxTokens != nil {
		p.MaxCompletionTokens = openai.Int(int64(*req.MaxTokens))
	}
	return p
}

// explain turns a refused token into an upstream_auth *Error naming the
// principal; other errors are returned as they are.
func (m *AzureModel) explain(ctx context.Context, err error) error {
	var oe *openai.Error
	if !errors.As(err, &oe) ||
		(oe.StatusCode != http.StatusUnauthorized && oe.StatusCode != http.StatusForbidden) {
		return err
	}

	token := ""
	if oe.Response != nil && oe.Response.Request != nil {
		token, _ = strings.CutPrefix(oe.Response.Request.Header.Get("Authorization"), "Bearer ")
	}
	if token == "" && m.opts.Credential != nil && ctx.Err() == nil {
		tok, terr := m.opts.Credential.GetToken(ctx, policy.TokenRequestOptions{
			Scopes: []string{m.opts.Scope},
		})
		if terr == nil {
			token = tok.Token
		}
	}

	attrs := []slog.Attr{
		slog.Int("upstream_status", oe.StatusCode),
		slog.String("missing_role", RoleOpenAIUser),
	}
	if oe.Code != "" {
		attrs = append(attrs, slog.String("upstream_code", oe.Code))
	}
	if oe.Response != nil {
		if id := upstreamRequestID(oe.Response.Header); id != "" {
			attrs = append(attrs, slog.String("upstream_request_id", id))
		}
	}
	p := principalOf(token)
	if p.ObjectID != "" {
		attrs = append(attrs, slog.String("principal_id", p.ObjectID))
		if p.TenantID != "" {
			attrs = append(attrs, slog.String("tenant_id", p.TenantID))
		}
	}
	attrs = append(attrs, slog.String("fix", roleAssignmentCommand(p)))
	return &Error{Code: CodeUpstreamAuth, Attrs: attrs, Err: err}
}

// principal is what a token says about whom it was issued to.
type principal struct {
	ObjectID string `json:"oid"`
	TenantID string `json:"tid"`
	IDType   string `json:"idtyp"` // "app" or "user", when present
}

// principalOf reads the claims of a JWT access token without verifying it:
// the token is only used to tell an operator whose role is missing. It
// returns the zero principal for anything that is not a JWT.
func principalOf(token string) principal {
	var p principal
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return p
	}
	payload, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil {
		return p
	}
	if json.Unmarshal(payload, &p) != nil {
		return principal{}
	}
	return p
}

// roleAssignmentCommand is the Azure CLI command that gives p the role to
// call Azure OpenAI. The scope is left for the operator to fill in.
func roleAssignmentCommand(p principal) string {
	assignee := "<principal object id>"
	if p.ObjectID != "" {
		assignee = p.ObjectID
	}
	cmd := "az role assignment create --role \"" + RoleOpenAIUser + "\"" +
		" --assignee-object-id " + assignee
	switch p.IDType {
	case "app":
		cmd += " --assignee-principal-type ServicePrincipal"
	case "user":
		cmd += " --assignee-principal-type User"
	}
	return cmd + " --scope <resource id of the Azure OpenAI account>" +
		" (role assignments can take a few minutes to apply)"
}
