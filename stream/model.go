package stream

import (
	"context"
	"encoding/json"
	"iter"

	"github.com/aoaiblocks/securechat/chatproto"
)

// Model answers a conversation with a sequence of deltas. The Handler depends
// on nothing else, so any backend plugs in the same way: AzureModel for Azure
// OpenAI, a wrapper around another OpenAI-compatible server, or a test double
// built with ModelFunc.
//
// Stream returns an iterator that, when ranged over, asks the backend and
// yields the answer piece by piece, in order:
//
//   - zero or more deltas with Content, the text to append to the answer;
//   - then exactly one last delta with FinishReason set (and Usage when the
//     backend reports token usage), after which the iterator returns;
//   - or, instead of the last delta, one error, after which it returns.
//
// A delta may carry both Content and FinishReason. The iterator must stop
// when yield returns false, and must honour ctx: when ctx is cancelled (the
// client went away, or the handler's upstream timeout fired) it stops talking
// to the backend at once and yields ctx's error or returns. It must leave no
// goroutine running after it returns. The Handler ranges over the iterator
// once, in the goroutine serving the request.
//
// Errors should be *Error or *chatproto.Error when the implementation knows
// what went wrong (see the package documentation for the codes); the Handler
// maps any other error itself, recognising openai-go's *openai.Error,
// keyless's *keyless.CredentialError and timeouts, and answers 502
// upstream_error for the rest. The error's text goes to the log only.
type Model interface {
	Stream(ctx context.Context, req *Request) iter.Seq2[Delta, error]
}

// ModelFunc adapts an ordinary function to the Model interface.
type ModelFunc func(ctx context.Context, req *Request) iter.Seq2[Delta, error]

// Stream calls f(ctx, req).
func (f ModelFunc) Stream(ctx context.Context, req *Request) iter.Seq2[Delta, error] {
	return f(ctx, req)
}

// Request is what the Handler asks a Model to answer: the conversation after
// the policy was applied (system prompt first, client system messages only
// when allowed, the oldest turns dropped to fit the history bound) and the
// sampling overrides the client asked for, already validated.
//
// A Model must not modify a Request or keep it after Stream's iterator
// returns.
type Request struct {
	// Messages is the conversation to answer, oldest first. It ends with the
	// client's last user message. Message context and files are passed as the
	// client sent them; AzureModel ignores both.
	Messages []chatproto.Message

	// Temperature is context.overrides.temperature, in [0, 2], or nil.
	Temperature *float64
	// TopP is context.overrides.top_p, in [0, 1], or nil.
	TopP *float64
	// MaxTokens is context.overrides.max_tokens, at least 1 and at most
	// Options.MaxTokensLimit, or nil.
	MaxTokens *int

	// Context is the request's context as the client sent it (an object), or
	// nil, for models that read app-defined keys of their own.
	Context json.RawMessage
}

// Delta is one piece of a Model's answer.
type Delta struct {
	// Content is text to append to the answer. It may be empty.
	Content string
	// FinishReason is set on the last delta only: why the answer ended, in
	// OpenAI's words ("stop", "length", "content_filter", ...). The Handler
	// turns "content_filter" into a content_filter error (the answer was
	// blocked by the content filter).
	FinishReason string
	// Usage is the token usage of the whole exchange, on the last delta, or
	// nil when the backend does not report it.
	Usage *Usage
}

// Usage counts the tokens of one exchange with a model, as billed.
type Usage struct {
	// PromptTokens counts the tokens of the messages sent.
	PromptTokens int64 `json:"prompt_tokens"`
	// CompletionTokens counts the tokens of the answer.
	CompletionTokens int64 `json:"completion_tokens"`
	// TotalTokens is their sum, as the backend reports it.
	TotalTokens int64 `json:"total_tokens"`
}
