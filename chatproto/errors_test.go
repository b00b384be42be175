package chatproto

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestWriteErrorAnswersTheProtocolsErrorBody(t *testing.T) {
	secret := errors.New("dial tcp 10.1.2.3:443: token eyJhbGciOi expired")
	tests := []struct {
		name       string
		err        error
		wantStatus int
		wantBody   string
	}{
		{
			name:       "an *Error",
			err:        &Error{Status: 413, Code: CodeTooLarge, Message: "body: too big"},
			wantStatus: 413,
			wantBody:   `{"error":{"code":"too_large","message":"body: too big"}}`,
		},
		{
			name: "a wrapped *Error, whose cause stays private",
			err: fmt.Errorf("handler: %w", &Error{Status: 429, Code: "rate_limited",
				Message: "try again later", Err: secret}),
			wantStatus: 429,
			wantBody:   `{"error":{"code":"rate_limited","message":"try again later"}}`,
		},
		{
			name:       "any other error, whose text stays private",
			err:        secret,
			wantStatus: 500,
			wantBody:   `{"error":{"code":"internal_error","message":"internal server error"}}`,
		},
		{
			name:       "an *Error without a status",
			err:        &Error{Code: "upstream_error", Message: "the model failed"},
			wantStatus: 500,
			wantBody:   `{"error":{"code":"upstream_error","message":"the model failed"}}`,
		},
		{
			name:       "an *Error with a success status",
			err:        &Error{Status: 200, Code: "odd", Message: "<b>&</b>"},
			wantStatus: 500,
			wantBody:   `{"error":{"code":"odd","message":"\u003cb\u003e\u0026\u003c/b\u003e"}}`,
		},
		{
			name:       "nil",
			err:        nil,
			wantStatus: 500,
			wantBody:   `{"error":{"code":"internal_error","message":"internal server error"}}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := httptest.NewRecorder()
			w.Header().Set("Retry-After", "7")
			WriteError(w, tt.err)

			if w.Code != tt.wantStatus {
				t.Errorf("status %d, want %d", w.Code, tt.wantStatus)
			}
			if got := w.Body.String(); got != tt.wantBody+"\n" {
				t.Errorf("body:\n got %s\nwant %s", got, tt.wantBody)
			}
			for k, want := range map[string]string{
				"Content-Type":           "application/json",
				"X-Content-Type-Options": "nosniff",
				"Retry-After":            "7",
			} {
				if got := w.Header().Get(k); got != want {
					t.Errorf("%s: %q, want %q", k, got, want)
				}
			}
		})
	}
}

func TestErrorTextNamesCodeMessageAndCause(t *testing.T) {
	tests := []struct {
		err  *Error
		want string
	}{
		{&Error{Status: 400, Code: CodeInvalidRequest, Message: "messages: missing"},
			"chatproto: invalid_request: messages: missing"},
		{&Error{Code: CodeTruncated, Message: "the stream was cut off after line 2",
			Err: errors.New("unexpected EOF")},
			"chatproto: truncated: the stream was cut off after line 2: unexpected EOF"},
		{&Error{Code: "rate_limited"}, "chatproto: rate_limited"},
	}
	for _, tt := range tests {
		if got := tt.err.Error(); got != tt.want {
			t.Errorf("got %q, want %q", got, tt.want)
		}
	}
}

func TestErrorUnwrapsToItsCause(t *testing.T) {
	err := fmt.Errorf("x: %w", &Error{Code: CodeTruncated, Err: http.ErrBodyReadAfterClose})
	if !errors.Is(err, http.ErrBodyReadAfterClose) {
		t.Error("errors.Is does not find the cause")
	}
}

func TestErrorUnmarshalJSONAcceptsBothShapes(t *testing.T) {
	tests := []struct {
		in      string
		want    Error
		wantErr bool
	}{
		{`{"code":"rate_limited","message":"slow down"}`,
			Error{Code: "rate_limited", Message: "slow down"}, false},
		{`"slow down"`, Error{Code: CodeUnknown, Message: "slow down"}, false},
		{`{"message":"no code"}`, Error{Code: CodeUnknown, Message: "no code"}, false},
		{` {"code":"c"} `, Error{Code: "c"}, false},
		{`{"code":1}`, Error{}, true},
		{`"unterminated`, Error{}, true},
	}
	for _, tt := range tests {
		var got Error
		err := got.UnmarshalJSON([]byte(tt.in))
		if (err != nil) != tt.wantErr {
			t.Errorf("%s: error %v, want error %v", tt.in, err, tt.wantErr)
			continue
		}
		if err == nil && got != tt.want {
			t.Errorf("%s: got %+v, want %+v", tt.in, got, tt.want)
		}
	}
}
