package chatproto

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"testing/iotest"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// FuzzDecodeRequest checks that DecodeRequest never panics, that every
// rejection is an *Error with a status and code from the package's table,
// and that every request it accepts is valid and survives the client's
// encoding and a second decoding.
func FuzzDecodeRequest(f *testing.F) {
	f.Add("application/json", []byte(oneMessage))
	f.Add("application/json", []byte(`{"messages":[{"role":"assistant","content":"a",`+
		`"context":{"x":[1,{"y":null}]}}],"context":{},"sessionState":"s"}`))
	f.Add(officialClientType, []byte(officialClientBody))
	f.Add(mpType, []byte(mp(jsonPart(oneMessage), filePart("messages[0].files[0]", "x"))))
	f.Add(mpType, []byte(mp(jsonPart(oneMessage),
		part("y", "Content-Disposition: form-data; name=messages[0].files[0]"))))
	for _, tt := range badRequests() {
		if len(tt.body) < 4096 {
			f.Add(tt.ct, []byte(tt.body))
		}
	}

	codes := map[string]int{
		CodeUnsupportedMediaType: http.StatusUnsupportedMediaType,
		CodeTooLarge:             http.StatusRequestEntityTooLarge,
		CodeInvalidJSON:          http.StatusBadRequest,
		CodeInvalidRequest:       http.StatusBadRequest,
		CodeInvalidMultipart:     http.StatusBadRequest,
	}
	// Small limits, so that the fuzzer reaches every one of them.
	lim := &Limits{MaxBodyBytes: 2048, MaxMultipartBytes: 4096, MaxMessages: 8,
		MaxContentBytes: 256, MaxFiles: 3, MaxFileBytes: 512}

	f.Fuzz(func(t *testing.T, ct string, body []byte) {
		r := httptest.NewRequest(http.MethodPost, "/chat", bytes.NewReader(body))
		r.Header.Set("Content-Type", ct)
		req, err := DecodeRequest(r, lim)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("error %v (%T) is not an *Error", err, err)
			}
			if want, ok := codes[e.Code]; !ok || e.Status != want || e.Message == "" {
				t.Fatalf("unexpected error %d %q %q", e.Status, e.Code, e.Message)
			}
			return
		}

		checkValid(t, req, lim)

		// What the client sends for it decodes to the same request.
		again, ct2 := encodeOrFail(t, req)
		r2 := httptest.NewRequest(http.MethodPost, "/chat", bytes.NewReader(again))
		r2.Header.Set("Content-Type", ct2)
		req2, err := DecodeRequest(r2, nil)
		if err != nil {
			t.Fatalf("re-encoded request rejected: %v\n%s", err, again)
		}
		ignore := cmpopts.IgnoreFields(File{}, "Name", "ContentType")
		if diff := cmp.Diff(req, req2, compactRaw, ignore); diff != "" {
			t.Fatalf("round trip (-first +second):\n%s", diff)
		}
	})
}

func checkValid(t *testing.T, req *Request, lim *Limits) {
	t.Helper()
	if len(req.Messages) == 0 || len(req.Messages) > lim.MaxMessages {
		t.Fatalf("accepted %d messages", len(req.Messages))
	}
	files := 0
	for i, m := range req.Messages {
		if !m.Role.Valid() {
			t.Fatalf("messages[%d]: accepted role %q", i, m.Role)
		}
		if len(m.Content) > lim.MaxContentBytes {
			t.Fatalf("messages[%d]: accepted %d bytes of content", i, len(m.Content))
		}
		if m.Context != nil && m.Context[0] != '{' {
			t.Fatalf("messages[%d]: accepted context %s", i, m.Context)
		}
		for _, f := range m.Files {
			if int64(len(f.Data)) > lim.MaxFileBytes {
				t.Fatalf("messages[%d]: accepted a file of %d bytes", i, len(f.Data))
			}
		}
		files += len(m.Files)
	}
	if files > lim.MaxFiles {
		t.Fatalf("accepted %d files", files)
	}
	if req.Context != nil && req.Context[0] != '{' {
		t.Fatalf("accepted context %s", req.Context)
	}
	if string(req.SessionState) == "null" {
		t.Fatal("kept a null sessionState")
	}
}

func encodeOrFail(t *testing.T, req *Request) ([]byte, string) {
	t.Helper()
	b, ct, err := encodeRequest(req)
	if err != nil {
		t.Fatalf("encoding an accepted request: %v", err)
	}
	return b, ct
}

// FuzzLineReader checks that reading a stream never panics, that an error
// is always the last pair and an *Error, and that the result does not depend
// on how the bytes arrive.
func FuzzLineReader(f *testing.F) {
	f.Add([]byte(`{"delta":{"role":"assistant"}}` + "\n" + `{"delta":{"content":"Hi"}}` +
		"\n" + `{"delta":{},"context":{"finish_reason":"stop"}}` + "\n"))
	f.Add([]byte("\r\n\r\n{\"delta\":{\"content\":\"a\"}}\r\n\n{\"delta\":{}}"))
	f.Add([]byte(`{"delta":{"role":"assistant"}}` + "\n" +
		`{"error":{"code":"upstream_error","message":"failed"}}` + "\n"))
	f.Add([]byte(`{"error":"overloaded"}`))
	f.Add([]byte(`{"delta":{"content":"cut`))
	f.Add([]byte("not json\n"))
	f.Add([]byte("[1]\nnull\n\"s\"\n"))
	f.Add([]byte(`{"delta":"x","error":7}`))
	f.Add([]byte(""))
	f.Add([]byte("\n \t\r\n"))

	type result struct {
		Deltas []CompletionDelta
		Code   string
		Msg    string
	}
	read := func(t *testing.T, data []byte, oneByte bool) result {
		var r = bytes.NewReader(data)
		var res result
		var in = readDeltas(r, false)
		if oneByte {
			in = readDeltas(iotest.OneByteReader(r), false)
		}
		for d, err := range in {
			if res.Code != "" {
				t.Fatalf("a pair after the error %s", res.Code)
			}
			if err == nil {
				res.Deltas = append(res.Deltas, d)
				continue
			}
			var e *Error
			if !errors.As(err, &e) || e.Code == "" {
				t.Fatalf("error %v (%T) is not an *Error with a code", err, err)
			}
			res.Code, res.Msg = e.Code, e.Message
		}
		if res.Code == "" && len(res.Deltas) == 0 {
			t.Fatal("a stream with no deltas ended without an error")
		}
		return res
	}

	f.Fuzz(func(t *testing.T, data []byte) {
		whole := read(t, data, false)
		bytewise := read(t, data, true)
		if diff := cmp.Diff(whole, bytewise, compactRaw); diff != "" {
			t.Fatalf("read whole vs one byte at a time (-whole +bytewise):\n%s", diff)
		}
		if whole.Code == CodeTruncated && !slices.Contains([]string{
			"the stream ended before its first line",
		}, whole.Msg) && bytes.HasSuffix(bytes.TrimRight(data, " \t\r"), []byte("\n")) {
			t.Fatalf("a stream ending with a whole line reported %q", whole.Msg)
		}
	})
}

// FuzzCountMembers checks countMembers, the fast member count behind the
// rejection of duplicate keys, against encoding/json's tokenizer on every
// well-formed JSON object.
func FuzzCountMembers(f *testing.F) {
	f.Add([]byte(oneMessage))
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"a:\"}":"{:}","b\\":[":",{"c":1}],"d":{"e":"\\\""}}`))
	f.Add([]byte(`{"role":"user","r\u006fle":"x"}`))
	f.Fuzz(func(t *testing.T, obj []byte) {
		obj = bytes.TrimSpace(obj)
		if len(obj) == 0 || obj[0] != '{' || !json.Valid(obj) {
			return
		}
		if got, want := countMembers(obj), tokenMembers(t, obj); got != want {
			t.Fatalf("countMembers(%s) = %d, want %d", obj, got, want)
		}
	})
}

// tokenMembers counts the members of the object obj with json.Decoder.
func tokenMembers(t *testing.T, obj []byte) int {
	dec := json.NewDecoder(bytes.NewReader(obj))
	if _, err := dec.Token(); err != nil { // {
		t.Fatal(err)
	}
	n := 0
	for dec.More() {
		if _, err := dec.Token(); err != nil { // the name
			t.Fatal(err)
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			t.Fatal(err)
		}
		n++
	}
	return n
}
