package aoaitest

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"time"
)

// ModelName is the model name AzureOpenAI reports in its answers, as Azure reports the
// model behind a deployment rather than the deployment's name.
const ModelName = "gpt-4o-mini-2024-07-18"

// AzureOpenAI is a TLS server speaking the Azure OpenAI chat completions API on
// loopback, on both the v1 path and the dated deployments path:
//
//	POST /openai/v1/chat/completions                            (deployment in "model")
//	POST /openai/deployments/{deployment}/chat/completions?api-version=...
//
// It answers with and without streaming. A streamed answer has Azure's shape: a first
// chunk with prompt_filter_results and no choices, a chunk with the assistant role,
// one chunk per delta, each choice carrying content_filter_results, a chunk with the
// finish reason, a usage chunk with no choices when the request sets
// stream_options.include_usage, then "data: [DONE]".
//
// Every request must carry "Authorization: Bearer <token>" with a token minted by a
// stand-in of this process for [Audience] and not expired; anything else, and any
// request with an api-key header, is answered 401 with an Azure-shaped error body
// {"error":{"code":...,"message":...}}. A principal passed to Deny is answered 403
// PermissionDenied, as when it lacks the Cognitive Services OpenAI User role.
//
// Answers come from Script, a function of the request. Every request is recorded.
//
// Set Script before the first request, or between requests, never while one is in
// flight; the methods are safe for concurrent use.
type AzureOpenAI struct {
	URL string // endpoint, e.g. https://127.0.0.1:PORT

	// Script returns the reply to a request, faults included. When nil, every request
	// gets the default answer: [Text] of `You said: "<last user message>"`.
	Script func(*ChatRequest) Reply

	srv *httptest.Server

	mu       sync.Mutex
	requests []*ChatRequest
	denied   map[string]bool
	conns    int
	open     int
}

// ChatRequest is a chat completions request as the server saw it, and what it
// answered. Status and Canceled are final once Done is closed; [AzureOpenAI.Requests]
// returns copies, so call it again after waiting on Done.
//
// (*) The server notices a client going away while it waits (FirstDelay,
// ChunkDelay) or when a write fails; an answer written at once into the
// connection's buffers may count as complete.
type ChatRequest struct {
	Method     string      // HTTP method
	Path       string      // URL path, e.g. /openai/v1/chat/completions
	Deployment string      // from the path, or the model field on the v1 path
	APIVersion string      // api-version query parameter; empty if none
	Header     http.Header // request headers, Authorization included
	Body       []byte      // the request body as received

	Model        string        // the model field
	Messages     []ChatMessage // the messages, in order
	Stream       bool          // the stream field
	IncludeUsage bool          // stream_options.include_usage
	Temperature  *float64      // temperature, if set
	TopP         *float64      // top_p, if set
	MaxTokens    *int          // max_tokens, or max_completion_tokens, if set

	Principal string          // oid of the verified token; empty if refused before
	Status    int             // HTTP status answered; 0 if the connection was cut first
	Canceled  bool            // the client went away before the answer was complete (*)
	Done      <-chan struct{} // closed when the server has finished with the request

	done chan struct{}
}

// ChatMessage is one message of a request. Content holds the text; the text parts of
// an array content are joined.
type ChatMessage struct {
	Role    string // system, user, assistant, ...
	Content string // the text
}

// Reply scripts one answer and the faults it comes with. The zero value is the
// default answer.
type Reply struct {
	// Deltas is the content, one streamed chunk each, joined when not streaming.
	// Nil means the default answer; an empty non-nil slice an empty one.
	Deltas []string

	// FinishReason is the finish reason of the choice; "stop" when empty.
	FinishReason string

	// Status, when not 0, answers that HTTP status with an Azure-shaped error body
	// whose code is ErrorCode (the status number when empty).
	Status    int
	ErrorCode string

	// RetryAfter, with a Status, sets the Retry-After (whole seconds, rounded up) and
	// retry-after-ms headers, as Azure does on 429 and some 503 answers.
	RetryAfter time.Duration

	// FirstDelay delays the answer (its headers included); ChunkDelay delays each
	// streamed chunk after the first. Both end early when the client goes away.
	FirstDelay, ChunkDelay time.Duration

	// CutAfter, when > 0, closes the connection after that many content chunks
	// without ending the stream. Without streaming, the body is cut in the middle.
	CutAfter int

	// CutBeforeHeaders closes the connection without answering.
	CutBeforeHeaders bool

	// MalformedAfter, when > 0, sends a chunk that is not JSON after that many content
	// chunks and ends the answer there. Without streaming, the body is not JSON.
	MalformedAfter int

	// PromptFiltered answers 400 with error code content_filter, as Azure does when
	// the prompt trips the content filter.
	PromptFiltered bool

	// AnswerFiltered ends the answer with finish_reason content_filter and a filtered
	// content_filter_results, as Azure does when the completion trips the filter.
	AnswerFiltered bool
}

// Text returns a Reply streaming s in word-sized deltas: each delta is a word with
// the white space before it. Joining the deltas gives s back.
func Text(s string) Reply {
	deltas := []string{}
	start := 0
	for i := 1; i < len(s); i++ {
		if isSpace(s[i]) && !isSpace(s[i-1]) {
			deltas = append(deltas, s[start:i])
			start = i
		}
	}
	if start < len(s) {
		deltas = append(deltas, s[start:])
	}
	return Reply{Deltas: deltas}
}

func isSpace(b byte) bool { return b == ' ' || b == '\n' || b == '\t' || b == '\r' }

// NewAzureOpenAI starts an AzureOpenAI with a TLS certificate for 127.0.0.1. The
// caller must Close it.
func NewAzureOpenAI() *AzureOpenAI {
	s := &AzureOpenAI{denied: map[string]bool{}}
	s.srv = httptest.NewUnstartedServer(http.HandlerFunc(s.serve))
	s.srv.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		s.mu.Lock()
		defer s.mu.Unlock()
		switch st {
		case http.StateNew:
			s.conns++
			s.open++
		case http.StateClosed, http.StateHijacked:
			s.open--
		}
	}
	s.srv.Config.ErrorLog = discardLog
	s.srv.StartTLS()
	s.URL = s.srv.URL
	return s
}

// Close shuts the server down, cutting open streams, and waits for its handlers.
func (s *AzureOpenAI) Close() {
	s.srv.CloseClientConnections()
	s.srv.Close()
}

// Client returns an HTTP client that trusts the server's certificate and dials
// nothing but loopback addresses; an attempt to dial another fails the test of the
// active [Guard], if any. It is a new client, with its own connections, on every
// call.
func (s *AzureOpenAI) Client() *http.Client {
	base := s.srv.Client().Transport.(*http.Transport)
	tr := newLoopbackTransport(nil)
	tr.TLSClientConfig = &tls.Config{RootCAs: base.TLSClientConfig.RootCAs}
	return &http.Client{Transport: tr}
}

// Certificate returns the certificate of the server, for clients built without
// [AzureOpenAI.Client].
func (s *AzureOpenAI) Certificate() *x509.Certificate { return s.srv.Certificate() }

// Requests returns copies of the requests received so far, in arrival order.
func (s *AzureOpenAI) Requests() []*ChatRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*ChatRequest, len(s.requests))
	for i, r := range s.requests {
		c := *r
		c.Header = r.Header.Clone()
		c.Messages = append([]ChatMessage(nil), r.Messages...)
		c.Body = append([]byte(nil), r.Body...)
		out[i] = &c
	}
	return out
}

// TLSConnections reports how many connections clients have opened to the server.
func (s *AzureOpenAI) TLSConnections() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.conns
}

// OpenConnections reports how many client connections to the server are open now, idle
// ones included. The server sees a connection close when it next reads from it, at once
// for an idle one, so poll for a while: after the clients have closed their idle
// connections (http.Client.CloseIdleConnections), what stays open is held by a
// request, such as a response body nobody closed.
func (s *AzureOpenAI) OpenConnections() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.open
}

// Deny makes the server answer 403 PermissionDenied to the principal (an oid), as
// Azure does for an identity without the Cognitive Services OpenAI User role.
func (s *AzureOpenAI) Deny(principalID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.denied[principalID] = true
}

// Allow undoes [AzureOpenAI.Deny]: the principal is served again, as after its role
// assignment has taken effect.
func (s *AzureOpenAI) Allow(principalID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.denied, principalID)
}

// finish records the outcome of rec under the lock.
func (s *AzureOpenAI) finish(rec *ChatRequest, status int, canceled bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if status != 0 {
		rec.Status = status
	}
	rec.Canceled = rec.Canceled || canceled
}

func (s *AzureOpenAI) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(r.Body, 16<<20))
	done := make(chan struct{})
	rec := &ChatRequest{
		Method:     r.Method,
		Path:       r.URL.Path,
		APIVersion: r.URL.Query().Get("api-version"),
		Header:     r.Header.Clone(),
		Body:       body,
		Done:       done,
		done:       done,
	}
	s.mu.Lock()
	s.requests = append(s.requests, rec)
	script := s.Script
	s.mu.Unlock()
	defer close(done)

	rw := &recorder{ResponseWriter: w, s: s, rec: rec}
	reply, ok := s.admit(rw, r, rec, body)
	if !ok {
		return
	}
	if script != nil {
		reply = script(rec.snapshot(s))
	}
	answer(r.Context(), rw, rec, reply)
}

// snapshot copies rec for the script, under the lock.
func (rec *ChatRequest) snapshot(s *AzureOpenAI) *ChatRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := *rec
	c.Header = rec.Header.Clone()
	c.Messages = append([]ChatMessage(nil), rec.Messages...)
	return &c
}

// recorder records the status written through it.
type recorder struct {
	http.ResponseWriter
	s   *AzureOpenAI
	rec *ChatRequest
}

func (rw *recorder) WriteHeader(code int) {
	rw.s.finish(rw.rec, code, false)
	rw.ResponseWriter.WriteHeader(code)
}

func (rw *recorder) Flush() { rw.ResponseWriter.(http.Flusher).Flush() }

// wireRequest is the part of a chat completions request body the server reads.
type wireRequest struct {
	Model    string `json:"model"`
	Messages []struct {
		Role    string          `json:"role"`
		Content json.RawMessage `json:"content"`
	} `json:"messages"`
	Stream        bool `json:"stream"`
	StreamOptions *struct {
		IncludeUsage bool `json:"include_usage"`
	} `json:"stream_options"`
	Temperature         *float64 `json:"temperature"`
	TopP                *float64 `json:"top_p"`
	MaxTokens           *int     `json:"max_tokens"`
	MaxCompletionTokens *int     `json:"max_completion_tokens"`
}

// admit routes, authenticates, authorizes and decodes the request. It answers and
// returns false when the request goes no further.
func (s *AzureOpenAI) admit(w http.ResponseWriter, r *http.Request, rec *ChatRequest,
	body []byte) (Reply, bool) {
	setRequestIDs(w)
	deployment, ok := route(r)
	if !ok {
		writeAzureError(w, http.StatusNotFound, "404", "Resource not found")
		return Reply{}, false
	}
	if r.Method != http.MethodPost {
		writeAzureError(w, http.StatusMethodNotAllowed, "405", "Method not allowed")
		return Reply{}, false
	}
	if deployment != "" && rec.APIVersion == "" {
		writeAzureError(w, http.StatusNotFound, "404", "Resource not found")
		return Reply{}, false
	}

	if r.Header.Get("api-key") != "" {
		writeAzureError(w, http.StatusUnauthorized, "AuthenticationTypeDisabled",
			"Key based authentication is disabled for this resource.")
		return Reply{}, false
	}
	claims, err := bearer(r)
	if err != nil {
		writeAzureError(w, http.StatusUnauthorized, "401", "Unauthorized. Access token is "+
			"missing, invalid, audience is incorrect ("+Audience+"), or have expired.")
		return Reply{}, false
	}
	s.mu.Lock()
	rec.Principal = claims.ObjectID
	denied := s.denied[claims.ObjectID]
	s.mu.Unlock()
	if denied {
		writeAzureError(w, http.StatusForbidden, "PermissionDenied", fmt.Sprintf(
			"The principal `%s` lacks the required data action "+
				"`Microsoft.CognitiveServices/accounts/OpenAI/deployments/chat/completions/action`"+
				" to perform `POST /openai/deployments/{deployment-id}/chat/completions` operation.",
			claims.ObjectID))
		return Reply{}, false
	}

	var wr wireRequest
	if err := json.Unmarshal(body, &wr); err != nil {
		writeAzureError(w, http.StatusBadRequest, "BadRequest",
			"The request body is not valid JSON: "+err.Error())
		return Reply{}, false
	}
	if deployment == "" {
		deployment = wr.Model
	}
	msgs := make([]ChatMessage, 0, len(wr.Messages))
	for _, m := range wr.Messages {
		msgs = append(msgs, ChatMessage{Role: m.Role, Content: contentText(m.Content)})
	}
	s.mu.Lock()
	rec.Deployment = deployment
	rec.Model = wr.Model
	rec.Messages = msgs
	rec.Stream = wr.Stream
	rec.IncludeUsage = wr.StreamOptions != nil && wr.StreamOptions.IncludeUsage
	rec.Temperature, rec.TopP = wr.Temperature, wr.TopP
	rec.MaxTokens = wr.MaxTokens
	if rec.MaxTokens == nil {
		rec.MaxTokens = wr.MaxCompletionTokens
	}
	s.mu.Unlock()
	if deployment == "" {
		writeAzureError(w, http.StatusBadRequest, "BadRequest",
			"The model field is required on the v1 API.")
		return Reply{}, false
	}
	if len(msgs) == 0 {
		writeAzureError(w, http.StatusBadRequest, "BadRequest",
			"'messages' is a required property.")
		return Reply{}, false
	}
	return defaultReply(msgs), true
}

// route returns the deployment named by the path ("" on the v1 path) and whether
// the path is a chat completions path.
func route(r *http.Request) (string, bool) {
	p := r.URL.Path
	if p == "/openai/v1/chat/completions" {
		return "", true
	}
	rest, ok := strings.CutPrefix(p, "/openai/deployments/")
	if !ok {
		return "", false
	}
	d, ok := strings.CutSuffix(rest, "/chat/completions")
	if !ok || d == "" || strings.Contains(d, "/") {
		return "", false
	}
	return d, true
}

// bearer verifies the request's bearer token.
func bearer(r *http.Request) (*Claims, error) {
	h := r.Header.Get("Authorization")
	tok, ok := strings.CutPrefix(h, "Bearer ")
	if !ok {
		return nil, ErrInvalidToken
	}
	return VerifyToken(strings.TrimSpace(tok))
}

// contentText returns the text of a message content: a string, or an array of parts
// whose text parts are joined.
func contentText(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var parts []struct {
		Type string `json:"type"`
		Text string `json:"text"`
	}
	if json.Unmarshal(raw, &parts) != nil {
		return ""
	}
	var b strings.Builder
	for _, p := range parts {
		if p.Type == "text" {
			b.WriteString(p.Text)
		}
	}
	return b.String()
}

// defaultReply quotes the last user message.
func defaultReply(msgs []ChatMessage) Reply {
	last := ""
	for _, m := range msgs {
		if m.Role == "user" {
			last = m.Content
		}
	}
	return Text(`You said: "` + last + `"`)
}

func setRequestIDs(w http.ResponseWriter) {
	id := newID()
	w.Header().Set("apim-request-id", id)
	w.Header().Set("x-request-id", id)
	w.Header().Set("x-ms-region", "Sweden Central")
}

// azureError is Azure's error body.
type azureError struct {
	Error azureErrorBody `json:"error"`
}

type azureErrorBody struct {
	Code       string          `json:"code"`
	Message    string          `json:"message"`
	Param      *string         `json:"param,omitempty"`
	Type       *string         `json:"type,omitempty"`
	Status     int             `json:"status,omitempty"`
	InnerError json.RawMessage `json:"innererror,omitempty"`
}

func writeAzureError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, azureError{Error: azureErrorBody{Code: code, Message: msg}})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, _ := json.Marshal(v)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	w.Write(b)
}

// filterResults is content_filter_results with every category safe, or the first
// one filtered.
func filterResults(filtered bool) map[string]any {
	safe := map[string]any{"filtered": false, "severity": "safe"}
	out := map[string]any{
		"hate": safe, "self_harm": safe, "sexual": safe, "violence": safe,
	}
	if filtered {
		out["violence"] = map[string]any{"filtered": true, "severity": "high"}
	}
	return out
}

func promptFilterResults() []any {
	return []any{map[string]any{
		"prompt_index":           0,
		"content_filter_results": filterResults(false),
	}}
}

// sleep waits d or until ctx ends; it reports whether the wait ran to its end.
func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// answer writes reply to an admitted request.
func answer(ctx context.Context, w *recorder, rec *ChatRequest, reply Reply) {
	if !sleep(ctx, reply.FirstDelay) {
		w.s.finish(rec, 0, true)
		return
	}
	if reply.CutBeforeHeaders {
		panic(http.ErrAbortHandler)
	}
	if reply.Status != 0 {
		writeFault(w, reply)
		return
	}
	if reply.PromptFiltered {
		writePromptFiltered(w)
		return
	}
	if reply.Deltas == nil {
		reply.Deltas = defaultReply(rec.Messages).Deltas
	}
	if reply.FinishReason == "" {
		reply.FinishReason = "stop"
	}
	if reply.AnswerFiltered {
		reply.FinishReason = "content_filter"
	}
	if rec.Stream {
		stream(ctx, w, rec, reply)
		return
	}
	complete(w, rec, reply)
}

func writeFault(w http.ResponseWriter, reply Reply) {
	code := reply.ErrorCode
	if code == "" {
		code = strconv.Itoa(reply.Status)
	}
	msg := http.StatusText(reply.Status)
	if reply.RetryAfter > 0 {
		secs := int64((reply.RetryAfter + time.Second - 1) / time.Second)
		w.Header().Set("Retry-After", strconv.FormatInt(secs, 10))
		w.Header().Set("retry-after-ms", strconv.FormatInt(reply.RetryAfter.Milliseconds(), 10))
		if reply.Status == http.StatusTooManyRequests {
			msg = fmt.Sprintf("Requests to the ChatCompletions_Create Operation have exceeded "+
				"the token rate limit of your current deployment. Please retry after %d "+
				"seconds.", secs)
		}
	}
	writeAzureError(w, reply.Status, code, msg)
}

func writePromptFiltered(w http.ResponseWriter) {
	param, typ := "prompt", "invalid_request_error"
	inner, _ := json.Marshal(map[string]any{
		"code":                  "ResponsibleAIPolicyViolation",
		"content_filter_result": filterResults(true),
	})
	writeJSON(w, http.StatusBadRequest, azureError{Error: azureErrorBody{
		Code: "content_filter",
		Message: "The response was filtered due to the prompt triggering Azure OpenAI's " +
			"content management policy. Please modify your prompt and retry.",
		Param:      &param,
		Type:       &typ,
		Status:     http.StatusBadRequest,
		InnerError: inner,
	}})
}

// usage counts words of the prompt and deltas of the answer, deterministically.
func usage(rec *ChatRequest, reply Reply) map[string]int {
	prompt := 0
	for _, m := range rec.Messages {
		prompt += len(strings.Fields(m.Content)) + 4
	}
	n := len(reply.Deltas)
	return map[string]int{"prompt_tokens": prompt, "completion_tokens": n,
		"total_tokens": prompt + n}
}

func complete(w *recorder, rec *ChatRequest, reply Reply) {
	content := strings.Join(reply.Deltas, "")
	b, _ := json.Marshal(map[string]any{
		"id":                    "chatcmpl-" + newID(),
		"object":                "chat.completion",
		"created":               time.Now().Unix(),
		"model":                 ModelName,
		"system_fingerprint":    "fp_aoaitest",
		"prompt_filter_results": promptFilterResults(),
		"choices": []any{map[string]any{
			"index":                  0,
			"finish_reason":          reply.FinishReason,
			"logprobs":               nil,
			"message":                map[string]any{"role": "assistant", "content": content},
			"content_filter_results": filterResults(reply.AnswerFiltered),
		}},
		"usage": usage(rec, reply),
	})
	switch {
	case reply.MalformedAfter > 0:
		b = b[:len(b)/2]
	case reply.CutAfter > 0:
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", strconv.Itoa(len(b)))
		w.WriteHeader(http.StatusOK)
		w.Write(b[:len(b)/2])
		w.Flush()
		panic(http.ErrAbortHandler)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(http.StatusOK)
	w.Write(b)
}

// stream writes reply as server-sent events in Azure's chunk shapes.
func stream(ctx context.Context, w *recorder, rec *ChatRequest, reply Reply) {
	id, created := "chatcmpl-"+newID(), time.Now().Unix()
	chunk := func(choices []any, extra map[string]any) map[string]any {
		c := map[string]any{
			"id": id, "object": "chat.completion.chunk", "created": created,
			"model": ModelName, "system_fingerprint": "fp_aoaitest", "choices": choices,
		}
		for k, v := range extra {
			c[k] = v
		}
		return c
	}
	choice := func(delta map[string]any, finish any, filter map[string]any) []any {
		return []any{map[string]any{
			"index": 0, "delta": delta, "finish_reason": finish, "logprobs": nil,
			"content_filter_results": filter,
		}}
	}

	w.Header().Set("Content-Type", "text/event-stream; charset=utf-8")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	first := map[string]any{
		"id": "", "object": "", "created": 0, "model": "", "choices": []any{},
		"prompt_filter_results": promptFilterResults(),
	}
	send := func(v any, delay time.Duration) bool {
		if !sleep(ctx, delay) {
			w.s.finish(rec, 0, true)
			return false
		}
		b, _ := json.Marshal(v)
		return event(w, rec, b)
	}
	if !send(first, 0) {
		return
	}
	role := map[string]any{"role": "assistant", "content": ""}
	if !send(chunk(choice(role, nil, map[string]any{}), nil), reply.ChunkDelay) {
		return
	}
	for i, d := range reply.Deltas {
		if reply.CutAfter > 0 && i == reply.CutAfter {
			panic(http.ErrAbortHandler)
		}
		if reply.MalformedAfter > 0 && i == reply.MalformedAfter {
			if sleep(ctx, reply.ChunkDelay) {
				event(w, rec, []byte(`{"id":"`+id+`","choices":[{"delta":{"content":`))
			}
			return
		}
		c := chunk(choice(map[string]any{"content": d}, nil, filterResults(false)), nil)
		if !send(c, reply.ChunkDelay) {
			return
		}
	}
	if reply.CutAfter > 0 && len(reply.Deltas) == reply.CutAfter {
		panic(http.ErrAbortHandler)
	}
	end := chunk(choice(map[string]any{}, reply.FinishReason,
		filterResults(reply.AnswerFiltered)), nil)
	if !send(end, reply.ChunkDelay) {
		return
	}
	if rec.IncludeUsage {
		u := chunk([]any{}, map[string]any{"usage": usage(rec, reply)})
		if !send(u, reply.ChunkDelay) {
			return
		}
	}
	event(w, rec, []byte("[DONE]"))
}

// event writes one server-sent event and flushes it; it reports whether the client
// is still there.
func event(w *recorder, rec *ChatRequest, data []byte) bool {
	var b bytes.Buffer
	b.WriteString("data: ")
	b.Write(data)
	b.WriteString("\n\n")
	if _, err := w.Write(b.Bytes()); err != nil {
		w.s.finish(rec, 0, true)
		return false
	}
	w.Flush()
	return true
}
