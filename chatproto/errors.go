package chatproto

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
)

// Codes of the errors this package produces. They are stable: clients may
// switch on them. Other packages add their own codes (for example a server's
// "rate_limited"); Error is open to any code.
const (
	// CodeUnsupportedMediaType: the request's Content-Type is neither
	// application/json nor multipart/form-data, the json part's is not
	// application/json, or a charset is not UTF-8. Status 415.
	CodeUnsupportedMediaType = "unsupported_media_type"
	// CodeTooLarge: the body, the json part, a file, the number of messages or
	// files, or a message's content is over its limit. Status 413.
	CodeTooLarge = "too_large"
	// CodeInvalidJSON: the body or json part is not one well-formed JSON value
	// in UTF-8 (syntax error, invalid UTF-8, data after the value, a leading
	// byte order mark). Status 400.
	CodeInvalidJSON = "invalid_json"
	// CodeInvalidRequest: well-formed JSON that is not a valid request (no
	// messages, an unknown role, content that is missing or not a string, a
	// context that is not an object, a member name given twice, ...). Status
	// 400.
	CodeInvalidRequest = "invalid_request"
	// CodeInvalidMultipart: a multipart body that is malformed, lacks its json
	// part or has two, has a part with an unexpected name, or a file whose
	// index matches no message. Status 400.
	CodeInvalidMultipart = "invalid_multipart"
	// CodeRequestTimeout: the body did not arrive before the server's read
	// deadline, which a server sets to cut off clients that send too slowly.
	// Status 408.
	CodeRequestTimeout = "request_timeout"
	// CodeClientClosed: the connection ended before the whole body arrived;
	// the client went away and no one reads the answer. Status 499, which
	// proxies log for such requests.
	CodeClientClosed = "client_closed"
	// CodeInternal: the failure is the server's own. WriteError uses it for
	// every error that is not an *Error. Status 500.
	CodeInternal = "internal_error"

	// CodeHTTPError: a client got a status other than 2xx with no error in
	// the body. Error.Status holds the status.
	CodeHTTPError = "http_error"
	// CodeUnknown: a client got an error that carried no code, such as the
	// older shape {"error":"text"}.
	CodeUnknown = "unknown"
	// CodeInvalidResponse: a client got an answer that breaks the protocol,
	// such as a stream line that is not a JSON object.
	CodeInvalidResponse = "invalid_response"
	// CodeTruncated: a client got an answer that was cut off, or a stream
	// that ended without its final line (see Client.Stream).
	CodeTruncated = "truncated"
)

// Error is a failure that the protocol reports to a client: an HTTP status, a
// stable code and a message a person can read. It is the error type of every
// protocol failure in this package, on the server side (DecodeRequest) and on
// the client side (Client), and other packages construct their own.
//
// Message is sent to clients as it is, so it must not carry internals such
// as upstream errors, tokens or stack traces; put those in Err, which is
// never sent.
type Error struct {
	// Status is the HTTP status that goes with the error: the one WriteError
	// answers, or the status other than 2xx that a Client received. It is 0
	// for errors a Client found in a 2xx answer (an error line of a stream,
	// a truncated stream, ...).
	Status int `json:"-"`
	// Code is a stable, machine-readable code such as CodeTooLarge.
	Code string `json:"code"`
	// Message says what went wrong, naming the field at fault when there is
	// one (messages[3].role: "robot" is not a role).
	Message string `json:"message"`
	// Err is the underlying cause, if any, for logs and errors.Is. It is never
	// sent to clients.
	Err error `json:"-"`
}

// Error returns "chatproto: " followed by the code, the message and the
// cause, if any.
func (e *Error) Error() string {
	s := "chatproto: " + e.Code
	if e.Message != "" {
		s += ": " + e.Message
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

// Unwrap returns the underlying cause, Err.
func (e *Error) Unwrap() error { return e.Err }

// UnmarshalJSON decodes the value of an "error" member in either of the
// protocol's shapes: an object {"code":"...","message":"..."}, or the older
// plain string, which becomes the Message with Code CodeUnknown. An object
// without a code also gets CodeUnknown.
func (e *Error) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '"' {
		var msg string
		if err := json.Unmarshal(b, &msg); err != nil {
			return err
		}
		*e = Error{Code: CodeUnknown, Message: msg}
		return nil
	}
	var v struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	if v.Code == "" {
		v.Code = CodeUnknown
	}
	*e = Error{Code: v.Code, Message: v.Message}
	return nil
}

// WriteError answers a request with err as the protocol's error body,
// {"error":{"code":"...","message":"..."}}, with Content-Type
// application/json (the official JavaScript client ignores an error body
// without it).
//
// When err is or wraps an *Error, WriteError answers its Status (500 when
// that is not a 4xx or 5xx status), Code and Message. Any other error
// becomes 500 with CodeInternal and a generic message: its text is never
// sent, so log it before calling WriteError. Headers already set on w, such
// as Retry-After, are kept.
//
// WriteError is for answering before any of the body has been written; once
// a stream has started, write the ErrorResponse as a line instead.
func WriteError(w http.ResponseWriter, err error) {
	e := &Error{
		Status:  http.StatusInternalServerError,
		Code:    CodeInternal,
		Message: "internal server error",
	}
	var pe *Error
	if errors.As(err, &pe) && pe != nil {
		e = &Error{Status: pe.Status, Code: pe.Code, Message: pe.Message}
		if e.Status < 400 || e.Status > 599 {
			e.Status = http.StatusInternalServerError
		}
	}

	body, merr := json.Marshal(ErrorResponse{Error: e})
	if merr != nil {
		// Strings always marshal; this cannot happen.
		body = []byte(`{"error":{"code":"internal_error","message":"internal server error"}}`)
	}

	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Del("Content-Length")
	w.WriteHeader(e.Status)
	_, _ = w.Write(append(body, '\n'))
}
