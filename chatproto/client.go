package chatproto

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"net/url"
	"strings"
)

// Bounds on what a Client reads, so that a misbehaving server cannot make it
// hold unbounded memory.
const (
	maxCompletionBytes = 16 << 20 // a complete answer
	maxErrorBodyBytes  = 1 << 20  // the body of a non-2xx answer
	maxLineBytes       = 4 << 20  // one line of a stream
)

// ClientOptions configures a Client. A nil *ClientOptions means the defaults.
type ClientOptions struct {
	// HTTPClient sends the requests. Nil means http.DefaultClient.
	HTTPClient *http.Client
	// Header is added to every request, for example Authorization with a
	// bearer token for apps that sign users in. The client sets Content-Type
	// itself, and Accept unless Header has one.
	Header http.Header
	// RequireFinishReason makes Stream report a stream as truncated unless
	// the context of its last line has a "finish_reason" string, as the
	// last line of servers built with this module's stream package does.
	// Leave it false for servers that follow only the protocol, which has no
	// end marker.
	RequireFinishReason bool
}

// Client calls a chat endpoint that speaks the protocol. It is safe for
// concurrent use.
//
// A Client reads at most 16 MiB of a complete answer and 4 MiB of one line
// of a stream (more is a CodeInvalidResponse error), and the first 1 MiB of
// an error body.
type Client struct {
	endpoint      string
	hc            *http.Client
	header        http.Header
	requireFinish bool
}

// NewClient returns a client for the complete endpoint at endpoint, such as
// "http://127.0.0.1:8080/chat". The streaming endpoint is endpoint with
// "/stream" appended to its path, as the official JavaScript client builds
// it. A malformed endpoint is reported by the first call.
func NewClient(endpoint string, opts *ClientOptions) *Client {
	c := &Client{endpoint: endpoint, hc: http.DefaultClient}
	if opts != nil {
		if opts.HTTPClient != nil {
			c.hc = opts.HTTPClient
		}
		c.header = opts.Header.Clone()
		c.requireFinish = opts.RequireFinishReason
	}
	return c
}

// Complete posts req to the complete endpoint and returns the answer.
//
// A request whose messages have files is sent as multipart/form-data, any
// other as application/json. When the server answers a status other than
// 2xx, the error is an *Error with that Status and the code and message of
// the body's error in either shape ({"error":{...}} or {"error":"text"}), or
// CodeHTTPError when the body has none. A 2xx answer that holds an error
// returns it (with Status 0); one that is not a completion is an *Error with
// CodeInvalidResponse, and one cut off is an *Error with CodeTruncated.
// Failures to send the request, and the context ending, are returned wrapped
// as they are.
func (c *Client) Complete(ctx context.Context, req *Request) (*Completion, error) {
	resp, err := c.post(ctx, c.endpoint, req, "application/json")
	if err != nil {
		return nil, err
	}
	defer drainAndClose(resp.Body)

	b, err := io.ReadAll(io.LimitReader(resp.Body, maxCompletionBytes+1))
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("chatproto: reading the answer: %w", ctx.Err())
		}
		return nil, &Error{Code: CodeTruncated, Message: "the answer was cut off", Err: err}
	}
	if len(b) > maxCompletionBytes {
		return nil, errResponse("the answer is larger than %d bytes", maxCompletionBytes)
	}

	b = bytes.TrimSpace(b)
	if len(b) == 0 || b[0] != '{' || !json.Valid(b) {
		return nil, errResponse("the answer is not a JSON object")
	}
	var v struct {
		Completion
		Error json.RawMessage `json:"error"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return nil, &Error{Code: CodeInvalidResponse, Message: "the answer is not a completion",
			Err: err}
	}
	if e := errorMember(v.Error); e != nil {
		return nil, e
	}
	return &v.Completion, nil
}

// Stream posts req to the streaming endpoint and yields the deltas of the
// answer as they arrive, each with a nil error. Ranging over the result again
// sends the request again. Leaving the loop early closes the response.
//
// A failure ends the sequence with one last pair whose error is not nil:
//   - a failure before the stream starts, as for Complete;
//   - an error line ({"error":{...}} or {"error":"text"}): an *Error with
//     its code and message (and Status 0), even if more lines follow;
//   - a line that is not a JSON object, or not a delta: an *Error with
//     CodeInvalidResponse;
//   - a truncated stream: an *Error with CodeTruncated;
//   - the context ending: its error, wrapped.
//
// Lines are split on LF; a CR before the LF is dropped and blank lines are
// skipped. A stream is truncated when the body ends before its first line,
// when reading the body fails (a connection cut before the server ended the
// response), or when the body ends inside a line that is not a whole JSON
// object. With ClientOptions.RequireFinishReason, a stream whose last line's
// context has no finish_reason is truncated too.
func (c *Client) Stream(ctx context.Context, req *Request) iter.Seq2[CompletionDelta, error] {
	return func(yield func(CompletionDelta, error) bool) {
		u, err := url.Parse(c.endpoint)
		if err != nil {
			yield(CompletionDelta{}, fmt.Errorf("chatproto: endpoint: %w", err))
			return
		}
		resp, err := c.post(ctx, u.JoinPath("stream").String(), req, "application/jsonl")
		if err != nil {
			yield(CompletionDelta{}, err)
			return
		}
		defer resp.Body.Close()

		for d, err := range readDeltas(resp.Body, c.requireFinish) {
			if err != nil && ctx.Err() != nil {
				err = fmt.Errorf("chatproto: reading the stream: %w", ctx.Err())
			}
			if !yield(d, err) || err != nil {
				return
			}
		}
	}
}

// post sends req to u and returns the response when its status is 2xx.
func (c *Client) post(ctx context.Context, u string, req *Request,
	accept string) (*http.Response, error) {
	if req == nil {
		return nil, errors.New("chatproto: nil request")
	}
	body, contentType, err := encodeRequest(req)
	if err != nil {
		return nil, err
	}
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("chatproto: %w", err)
	}
	for k, vs := range c.header {
		for _, v := range vs {
			hreq.Header.Add(k, v)
		}
	}
	hreq.Header.Set("Content-Type", contentType)
	if hreq.Header.Get("Accept") == "" {
		hreq.Header.Set("Accept", accept)
	}

	resp, err := c.hc.Do(hreq)
	if err != nil {
		return nil, fmt.Errorf("chatproto: %w", err)
	}
	if resp.StatusCode/100 != 2 {
		defer drainAndClose(resp.Body)
		return nil, statusError(resp)
	}
	return resp, nil
}

// statusError returns the error of a non-2xx response.
func statusError(resp *http.Response) *Error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBodyBytes))
	var v struct {
		Error json.RawMessage `json:"error"`
	}
	if json.Unmarshal(b, &v) == nil {
		if e := errorMember(v.Error); e != nil && e.Code != CodeInvalidResponse {
			e.Status = resp.StatusCode
			return e
		}
	}
	return &Error{
		Status: resp.StatusCode,
		Code:   CodeHTTPError,
		Message: fmt.Sprintf("the server answered %d %s", resp.StatusCode,
			http.StatusText(resp.StatusCode)),
	}
}

// errorMember returns the error in the value of an "error" member, or nil
// when raw is absent or null.
func errorMember(raw json.RawMessage) *Error {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || isNull(raw) {
		return nil
	}
	if raw[0] != '{' && raw[0] != '"' {
		return errResponse("the error is %s, not an object or a string", kind(raw))
	}
	e := new(Error)
	if err := json.Unmarshal(raw, e); err != nil {
		return &Error{Code: CodeInvalidResponse, Message: "the error cannot be read", Err: err}
	}
	return e
}

// encodeRequest returns the body and content type for req: multipart when a
// message has files, JSON otherwise.
func encodeRequest(req *Request) ([]byte, string, error) {
	var js bytes.Buffer
	enc := json.NewEncoder(&js)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(req); err != nil {
		return nil, "", fmt.Errorf("chatproto: encoding the request: %w", err)
	}
	jsonBody := bytes.TrimSuffix(js.Bytes(), []byte("\n"))

	hasFiles := false
	for _, m := range req.Messages {
		hasFiles = hasFiles || len(m.Files) > 0
	}
	if !hasFiles {
		return jsonBody, "application/json", nil
	}

	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	h := textproto.MIMEHeader{}
	h.Set("Content-Disposition", `form-data; name="json"`)
	h.Set("Content-Type", "application/json")
	w, _ := mw.CreatePart(h)
	_, _ = w.Write(jsonBody)
	for i, m := range req.Messages {
		for j, f := range m.Files {
			cd := fmt.Sprintf(`form-data; name="messages[%d].files[%d]"`, i, j)
			if f.Name != "" {
				cd += `; filename="` + quoteEscaper.Replace(f.Name) + `"`
			}
			ct := f.ContentType
			if ct == "" {
				ct = "application/octet-stream"
			}
			h := textproto.MIMEHeader{}
			h.Set("Content-Disposition", cd)
			h.Set("Content-Type", ct)
			w, _ := mw.CreatePart(h)
			_, _ = w.Write(f.Data)
		}
	}
	_ = mw.Close()
	return buf.Bytes(), mw.FormDataContentType(), nil
}

var quoteEscaper = strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\r", "", "\n", "")

// drainAndClose reads a little of what is left of body, so the connection
// can be reused, and closes it.
func drainAndClose(body io.ReadCloser) {
	_, _ = io.Copy(io.Discard, io.LimitReader(body, 64<<10))
	_ = body.Close()
}

// readDeltas yields the deltas of the JSON Lines stream in r; see
// Client.Stream for the rules. A non-nil error is always the last pair.
func readDeltas(r io.Reader, requireFinish bool) iter.Seq2[CompletionDelta, error] {
	return func(yield func(CompletionDelta, error) bool) {
		lr := &lineReader{br: bufio.NewReader(r), max: maxLineBytes}
		var last CompletionDelta
		seen := 0
		for {
			line, err := lr.next()
			if errors.Is(err, io.EOF) {
				switch {
				case seen == 0:
					yield(CompletionDelta{}, errTruncated(nil,
						"the stream ended before its first line"))
				case requireFinish && !hasFinishReason(last.Context):
					yield(CompletionDelta{}, errTruncated(nil, "the stream ended after "+
						"line %d, which has no finish_reason", lr.n))
				}
				return
			}
			if err != nil {
				yield(CompletionDelta{}, err)
				return
			}

			d, e := parseLine(line, lr.n)
			if e != nil {
				yield(CompletionDelta{}, e)
				return
			}
			seen++
			last = d
			if !yield(d, nil) {
				return
			}
		}
	}
}

// parseLine decodes line n of a stream: a delta, or an error line returned
// as its *Error.
func parseLine(line []byte, n int) (CompletionDelta, *Error) {
	if line[0] != '{' || !json.Valid(line) {
		return CompletionDelta{}, errResponse("line %d: not a JSON object", n)
	}
	var v struct {
		CompletionDelta
		Error json.RawMessage `json:"error"`
	}
	if err := json.Unmarshal(line, &v); err != nil {
		return CompletionDelta{}, &Error{Code: CodeInvalidResponse,
			Message: fmt.Sprintf("line %d: not a delta", n), Err: err}
	}
	if e := errorMember(v.Error); e != nil {
		return CompletionDelta{}, e
	}
	return v.CompletionDelta, nil
}

// hasFinishReason reports whether the context of a delta is an object with
// a non-empty "finish_reason" string.
func hasFinishReason(dctx json.RawMessage) bool {
	var v struct {
		FinishReason string `json:"finish_reason"`
	}
	return len(dctx) > 0 && json.Unmarshal(dctx, &v) == nil && v.FinishReason != ""
}

// lineReader splits a stream into lines.
type lineReader struct {
	br  *bufio.Reader
	max int
	n   int // number of the last line read, counting from 1
	buf []byte
}

// next returns the next line that is not blank, without its LF, a CR before
// it, or surrounding white space. At the clean end of the stream it returns
// io.EOF; any other error is an *Error.
func (lr *lineReader) next() ([]byte, error) {
	for {
		lr.buf = lr.buf[:0]
		var err error
		for {
			var chunk []byte
			chunk, err = lr.br.ReadSlice('\n')
			lr.buf = append(lr.buf, chunk...)
			if len(lr.buf) > lr.max {
				return nil, errResponse("line %d: longer than %d bytes", lr.n+1, lr.max)
			}
			if !errors.Is(err, bufio.ErrBufferFull) {
				break
			}
		}
		if len(lr.buf) > 0 {
			lr.n++
		}

		switch {
		case err == nil:
			line := bytes.TrimSpace(lr.buf)
			if len(line) == 0 {
				continue
			}
			return line, nil
		case errors.Is(err, io.EOF):
			line := bytes.TrimSpace(lr.buf)
			if len(line) == 0 {
				return nil, io.EOF
			}
			// A last line without its LF counts only when it is whole.
			if line[0] == '{' && json.Valid(line) {
				return line, nil
			}
			return nil, errTruncated(nil, "the stream ended inside line %d", lr.n)
		default:
			if len(bytes.TrimSpace(lr.buf)) > 0 {
				return nil, errTruncated(err, "the stream was cut off inside line %d", lr.n)
			}
			return nil, errTruncated(err, "the stream was cut off after line %d", lr.n)
		}
	}
}

func errResponse(format string, args ...any) *Error {
	return &Error{Code: CodeInvalidResponse, Message: fmt.Sprintf(format, args...)}
}

func errTruncated(cause error, format string, args ...any) *Error {
	return &Error{Code: CodeTruncated, Message: fmt.Sprintf(format, args...), Err: cause}
}
