package chatproto

import (
	"context"
	"errors"
	"iter"
	"net/http"
)

// ClientOptions configures a Client. A nil *ClientOptions means the defaults.
type ClientOptions struct {
	// HTTPClient sends the requests. Nil means http.DefaultClient.
	HTTPClient *http.Client
	// Header is added to every request, for example Authorization.
	Header http.Header
}

// Client calls a chat endpoint that speaks the protocol. It is safe for
// concurrent use.
type Client struct {
	endpoint string
	hc       *http.Client
	header   http.Header
}

// NewClient returns a client for the complete endpoint at endpoint; the
// streaming endpoint is endpoint with "/stream" appended to its path.
// A malformed endpoint is reported by the first call.
func NewClient(endpoint string, opts *ClientOptions) *Client {
	c := &Client{endpoint: endpoint, hc: http.DefaultClient}
	if opts != nil {
		if opts.HTTPClient != nil {
			c.hc = opts.HTTPClient
		}
		c.header = opts.Header.Clone()
	}
	return c
}

// Complete posts req to the complete endpoint and returns the answer.
func (c *Client) Complete(ctx context.Context, req *Request) (*Completion, error) {
	return nil, errors.New("chatproto: not implemented yet")
}

// Stream posts req to the streaming endpoint and yields the answer's deltas.
func (c *Client) Stream(ctx context.Context, req *Request) iter.Seq2[CompletionDelta, error] {
	return func(yield func(CompletionDelta, error) bool) {
		yield(CompletionDelta{}, errors.New("chatproto: not implemented yet"))
	}
}
