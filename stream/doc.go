// Package stream is the HTTP side of a chat service: a Handler that speaks
// the Microsoft AI Chat Protocol to browsers and other clients, and asks a
// Model for the answers. AzureModel is the Model for Azure OpenAI, called
// keylessly through the openai-go client that keyless.NewClient builds.
//
//	client, err := keyless.NewClient(cfg, nil)
//	...
//	h := stream.NewHandler(stream.NewAzureModel(client, cfg.Deployment, nil), nil)
//	mux.Handle("/chat", h)
//	mux.Handle("/chat/stream", h)
//
// # Mounting
//
// One Handler serves both endpoints: POST <base> answers with a complete
// message and POST <base>/stream with JSON Lines. It tells them apart by the
// last segment of the path ("stream"), so it works under any base, in any
// router: http.ServeMux patterns ("/chat", "POST /chat/stream", "/api/"),
// behind http.StripPrefix, or at "/". Other methods get 405 with
// "Allow: POST" (a ServeMux pattern with a method answers that itself).
//
// # Complete answers
//
// POST <base> answers 200 with Content-Type application/json:
//
//	{"message":{"role":"assistant","content":"Hello!"},
//	 "context":{"finish_reason":"stop",
//	   "usage":{"prompt_tokens":12,"completion_tokens":3,"total_tokens":15}},
//	 "sessionState":...}
//
// (on one line). The context carries the model's finish reason and, when the
// model reports it, the token usage; sessionState is the request's, passed
// back untouched, and absent when the request had none.
//
// # Streamed answers
//
// POST <base>/stream answers 200 with Content-Type application/jsonl,
// Cache-Control no-store, X-Accel-Buffering no (so proxies such as nginx do
// not hold lines back) and X-Content-Type-Options nosniff. The body is one
// JSON object per line, each line flushed as soon as it is written:
//
//	{"delta":{"role":"assistant"},"sessionState":...}
//	{"delta":{"content":"Hel"}}
//	{"delta":{"content":"lo!"}}
//	{"delta":{},"context":{"finish_reason":"stop","usage":{...}}}
//
// The first line carries the role, and the request's sessionState when it
// had one. Then comes one line per delta of content, in the order the model
// produced them, and a last line whose context carries the finish reason
// and usage. Joining the content of the lines gives the complete answer.
// Strings are escaped as encoding/json escapes them (<, > and & included).
//
// The status and the first line wait for the model's first delta, so that a
// failure before it (throttling, a refused token, a filtered prompt) is
// still an HTTP error with a status. Every response carries X-Request-Id.
//
// # Errors
//
// A failure before the first byte of the body is an HTTP status with the
// protocol's error body, {"error":{"code":"...","message":"..."}}, as
// application/json. A failure after it is one error line of that same shape,
// after which the stream ends without a last line.
//
//	cause                                        status  code
//	-------------------------------------------  ------  --------------------------
//	not POST                                     405     method_not_allowed
//	request rejected by chatproto.DecodeRequest  400     invalid_json, invalid_request,
//	                                                     invalid_multipart
//	                                             413     too_large
//	                                             415     unsupported_media_type
//	no user message, a last message not the      400     invalid_request
//	  user's or empty, bad context.overrides
//	a system message, not allowed                400     system_message_not_allowed
//	prompt filtered by Azure                     400     content_filter
//	answer filtered (finish_reason               400 or  content_filter
//	  content_filter)                            line
//	upstream throttled after the retries, or     429     rate_limited
//	  asking a longer wait than MaxRetryWait;
//	  its Retry-After passed on
//	upstream refused the token (401/403)         502     upstream_auth
//	no credential could get a token              503     credential_unavailable
//	Timeout, IdleTimeout, upstream 408/504       504     upstream_timeout
//	any other upstream failure (5xx, cut         502     upstream_error
//	  connection, malformed chunk, ...)
//	the server shutting down stopped it (its     503 or  unavailable
//	  context's cause is ErrShuttingDown)        line
//	a panic while serving (logged with stack)    500     internal_error
//
// Messages shown to clients are generic: they never carry upstream bodies,
// tokens or stack traces. The full cause goes to the log line. When the
// client goes away, the upstream request is cancelled at once and nothing
// more is written; the log line says status 499, code client_closed, and
// gives the cancellation as the error (context canceled), whatever the model
// made of it. A client that stops reading is treated the same once a write
// has waited Options.WriteTimeout (up to a quarter more: the write deadline
// is moved a few times per period, not at every line); the error is then the
// failed write's.
//
// # Shutting down
//
// A server that stops must not leave a stream looking complete. The Handler
// cannot tell, from a cancelled request context alone, a client that left
// from a server that cancelled its requests; the cause of the cancellation
// tells them apart. When the context of a request ends with ErrShuttingDown
// as its cause (see context.WithCancelCause, and ErrShuttingDown for how an
// app's graceful shutdown sets it), the upstream request is cancelled as for
// a client that left, and the client gets 503 unavailable, or, if the answer
// has begun, one unavailable error line, after which the stream ends. The
// log line says code unavailable, at level Warn. A request cancelled with
// any other cause is treated as one the client left.
//
// # Retries and timeouts
//
// AzureModel retries a request that failed before its answer began (429, 408,
// 409, 5xx, a connection failed or cut before the response headers) up to
// AzureOptions.MaxRetries times (default 2), waiting what the upstream asks
// in retry-after-ms or Retry-After, or else 0.5 s, then 1 s, ... of backoff;
// no wait is longer than AzureOptions.MaxRetryWait (default 10 s), and an
// upstream that asks for a longer one gets no retry: its error goes to the
// client at once, a 429 with the upstream's Retry-After. Nothing is retried
// once the answer has begun, so never after a byte has gone to the client. A
// request that could not get a token is not retried either: it is answered
// 503 credential_unavailable at once.
//
// The Handler bounds the exchange: Options.IdleTimeout (default 90 s) the wait
// for the first delta, retries included, and between two deltas;
// Options.Timeout (default 5 min) the whole answer. Either firing is a 504
// upstream_timeout before the first byte, or an upstream_timeout error line
// after it. The idle bound is checked a few times per period, not reset at
// every delta: it fires between IdleTimeout and 1.25 times IdleTimeout after
// the last delta. A retry wait never runs into these bounds: AzureModel does
// not begin a wait that would end after the first delta is due (counting as
// long again as the failed attempt took, for the retry itself); the upstream's
// error goes to the client at once instead, a 429 with its Retry-After rather
// than a 504 that would lose it.
//
// # The Model interface
//
// The Handler depends only on Model: a Request (the conversation after the
// policy, and validated overrides) in, an iterator of Delta values out,
// honouring context cancellation. AzureModel implements it for Azure OpenAI;
// ModelFunc turns a function into one, for test doubles, local
// OpenAI-compatible servers or retrieval steps in front of a model. A Model
// reports failures as *Error (a code from the table above), as
// *chatproto.Error (sent to the client as it is), or as any error the
// Handler knows how to map: openai-go's *openai.Error, a
// *keyless.CredentialError, a timeout. Anything else is upstream_error.
//
// # Policy
//
// Before asking the model, the Handler
//
//   - rejects a conversation whose last message is not the user's (the
//     model answers the last user message), and a last user message with
//     no text but white space and no file, with 400 invalid_request;
//   - rejects system messages from the client with 400
//     system_message_not_allowed, unless Options.AllowSystemMessages;
//   - puts the system prompt (Options.SystemPrompt, by default
//     DefaultSystemPrompt) first;
//   - bounds the history sent upstream (Options.MaxHistory messages,
//     Options.MaxHistoryBytes of content) by dropping the oldest turns,
//     never a system message or the last user message;
//   - reads context.overrides: temperature (0 to 2), top_p (0 to 1) and
//     max_tokens (1 to Options.MaxTokensLimit). A value out of range or of
//     the wrong type is a 400 naming it; other keys are ignored.
//
// Message context from the client (for example the context of an earlier
// answer sent back with the history) is accepted and not sent upstream.
//
// # Logging
//
// Each request gets one log line, "chat request", at level Info (Warn for a
// 4xx and for unavailable, Error for the other 5xx), with request_id, route
// (complete or stream), method, status, duration, code, messages (sent
// upstream), dropped_messages, finish_reason, prompt_tokens,
// completion_tokens, total_tokens and error (the full cause) as they apply. An
// upstream_auth line adds principal_id (the oid claim of the refused token,
// read without verifying it), missing_role and fix, the az role assignment
// command that grants the role. The line never holds a token or the text of a
// message. The request id is the client's X-Request-Id when it is a plain id
// of up to 128 letters, digits and - _ . : characters, and otherwise a new id
// of 32 random lowercase hexadecimal digits (128 bits, as the example app's
// middleware makes them); models get it from RequestID.
//
// BUG(stream): AzureModel sends the text of messages only; files attached to
// messages (multipart requests) are accepted by the Handler but not passed to
// Azure OpenAI. A Model of your own can read them from Request.Messages.
package stream
