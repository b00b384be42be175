package chatproto

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// post returns a request to the complete endpoint with the given Content-Type
// (none when ct is empty) and body.
func post(ct, body string) *http.Request {
	r := httptest.NewRequest(http.MethodPost, "/chat", strings.NewReader(body))
	r.ContentLength = -1 // unknown, as with chunked bodies: DecodeRequest must count
	if ct != "" {
		r.Header.Set("Content-Type", ct)
	}
	return r
}

// Multipart bodies in the tests use the boundary B.
const mpType = "multipart/form-data; boundary=B"

// mp joins parts into a multipart body with boundary B. Each part is its
// header lines, an empty line and its content, as part() builds.
func mp(parts ...string) string {
	var b strings.Builder
	for _, p := range parts {
		b.WriteString("--B\r\n" + p + "\r\n")
	}
	b.WriteString("--B--\r\n")
	return b.String()
}

// part returns one multipart part: header lines, then the content.
func part(content string, header ...string) string {
	return strings.Join(header, "\r\n") + "\r\n\r\n" + content
}

// jsonPart returns the json part as the official client sends it.
func jsonPart(content string) string {
	return part(content, "Content-Disposition: form-data; name=json",
		"Content-Type: application/json")
}

// filePart returns a file part named name as the official client sends it.
func filePart(name, data string) string {
	return part(data, `Content-Disposition: form-data; name="`+name+`"`,
		"Content-Type: text/plain")
}

const oneMessage = `{"messages":[{"role":"user","content":"hi"}]}`

// officialClientBody is a multipart body in the shape the official
// JavaScript client sends: an unquoted json name, file parts without a file
// name, a boundary starting with ---Part-.
const (
	officialClientType = "multipart/form-data; boundary=---Part-4f1c9a7e"
	officialClientBody = "-----Part-4f1c9a7e\r\n" +
		"content-disposition: form-data; name=json\r\n" +
		"content-type: application/json\r\n" +
		"\r\n" +
		`{"messages":[{"role":"user","content":"What is in these?"},` +
		`{"role":"assistant","content":"Send them."},` +
		`{"role":"user","content":"Here."}],"sessionState":{"id":7}}` + "\r\n" +
		"-----Part-4f1c9a7e\r\n" +
		`content-disposition: form-data; name="messages[2].files[0]"` + "\r\n" +
		"content-type: image/png\r\n" +
		"\r\n" +
		"\x89PNG\r\n\x1a\n\x00\x01\r\n" +
		"-----Part-4f1c9a7e\r\n" +
		`content-disposition: form-data; name="messages[2].files[1]"` + "\r\n" +
		"content-type: text/plain\r\n" +
		"\r\n" +
		"notes\r\n" +
		"-----Part-4f1c9a7e\r\n" +
		`content-disposition: form-data; name="messages[0].files[0]"` + "\r\n" +
		"content-type: application/pdf\r\n" +
		"\r\n" +
		"%PDF-1.7\r\n" +
		"-----Part-4f1c9a7e--\r\n"
)

func TestDecodeRequestAcceptsValidRequests(t *testing.T) {
	tests := []struct {
		name string
		ct   string
		body string
		want *Request
	}{
		{
			name: "json",
			ct:   "application/json",
			body: oneMessage,
			want: &Request{Messages: []Message{{Role: RoleUser, Content: "hi"}}},
		},
		{
			name: "json with charset and white space around",
			ct:   "Application/JSON; charset=UTF-8",
			body: " \r\n\t" + oneMessage + "\n\n",
			want: &Request{Messages: []Message{{Role: RoleUser, Content: "hi"}}},
		},
		{
			name: "every role, empty content, unknown members ignored",
			ct:   "application/json",
			body: `{"messages":[{"role":"system","content":"be brief"},` +
				`{"role":"user","content":"","extra":1},` +
				`{"role":"assistant","content":"ok","files":[]}],"stream":true}`,
			want: &Request{Messages: []Message{
				{Role: RoleSystem, Content: "be brief"},
				{Role: RoleUser, Content: ""},
				{Role: RoleAssistant, Content: "ok"},
			}},
		},
		{
			name: "null context and sessionState count as absent",
			ct:   "application/json",
			body: `{"messages":[{"role":"user","content":"hi","context":null}],` +
				`"context":null,"sessionState":null}`,
			want: &Request{Messages: []Message{{Role: RoleUser, Content: "hi"}}},
		},
		{
			name: "same keys in different objects, duplicates inside context kept",
			ct:   "application/json",
			body: `{"messages":[{"role":"user","content":"a","context":{"k":1,"k":2}},` +
				`{"role":"assistant","content":"b"}],"context":{"role":"x","role":"y"}}`,
			want: &Request{
				Messages: []Message{
					{Role: RoleUser, Content: "a", Context: []byte(`{"k":1,"k":2}`)},
					{Role: RoleAssistant, Content: "b"},
				},
				Context: []byte(`{"role":"x","role":"y"}`),
			},
		},
		{
			name: "keys and strings with quotes, colons and braces",
			ct:   "application/json",
			body: `{"a:\"}":"{:}","messages":[{"role":"user","content":"x\\\":{\"",` +
				`"c\\":[":"],"c\\\\":{"\\":":"}}],"\"messages\"":[]}`,
			want: &Request{Messages: []Message{{Role: RoleUser, Content: `x\":{"`}}},
		},
		{
			name: "sessionState of any kind",
			ct:   "application/json",
			body: `{"messages":[{"role":"user","content":"hi"}],"sessionState":[1,"two"]}`,
			want: &Request{Messages: []Message{{Role: RoleUser, Content: "hi"}},
				SessionState: []byte(`[1,"two"]`)},
		},
		{
			name: "escapes and non-ASCII content",
			ct:   "application/json",
			body: `{"messages":[{"role":"user","content":"caf\u00e9 \ud83d\ude00 ` +
				`\"q\"\n日本"}]}`,
			want: &Request{Messages: []Message{{Role: RoleUser,
				Content: "café 😀 \"q\"\n日本"}}},
		},
		{
			name: "multipart from the official client",
			ct:   officialClientType,
			body: officialClientBody,
			want: &Request{
				Messages: []Message{
					{Role: RoleUser, Content: "What is in these?", Files: []File{
						{ContentType: "application/pdf", Data: []byte("%PDF-1.7")},
					}},
					{Role: RoleAssistant, Content: "Send them."},
					{Role: RoleUser, Content: "Here.", Files: []File{
						{ContentType: "image/png", Data: []byte("\x89PNG\r\n\x1a\n\x00\x01")},
						{ContentType: "text/plain", Data: []byte("notes")},
					}},
				},
				SessionState: []byte(`{"id":7}`),
			},
		},
		{
			name: "multipart with quoted names, file names, files before json",
			ct:   `multipart/form-data; boundary="B"`,
			body: mp(
				part("a,b", `Content-Disposition: form-data; name="messages[0].files[0]"; `+
					`filename="data \"1\".csv"`, "Content-Type: text/csv"),
				part(oneMessage, `Content-Disposition: form-data; name="json"`),
			),
			want: &Request{Messages: []Message{{Role: RoleUser, Content: "hi", Files: []File{
				{Name: `data "1".csv`, ContentType: "text/csv", Data: []byte("a,b")},
			}}}},
		},
		{
			name: "multipart with an unquoted file part name",
			ct:   mpType,
			body: mp(jsonPart(oneMessage),
				part("x", "Content-Disposition: form-data; name=messages[0].files[0]")),
			want: &Request{Messages: []Message{{Role: RoleUser, Content: "hi", Files: []File{
				{Data: []byte("x")},
			}}}},
		},
		{
			name: "multipart without files",
			ct:   mpType,
			body: mp(jsonPart(oneMessage)),
			want: &Request{Messages: []Message{{Role: RoleUser, Content: "hi"}}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := DecodeRequest(post(tt.ct, tt.body), nil)
			if err != nil {
				t.Fatalf("DecodeRequest: %v", err)
			}
			if diff := cmp.Diff(tt.want, got, compactRaw); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestDecodeRequestKeepsContextAndSessionStateByteForByte(t *testing.T) {
	ctx := `{ "overrides" : { "temperature" : 0.50, "tags": ["<b>", "\u00e9"] } }`
	msgCtx := `{"x":1e3,  "y" : [ ]}`
	state := `[ 1, {"deep": {"er": null}}, "\ud83d\ude00" ]`
	body := `{"messages":[{"role":"user","content":"hi","context":` + msgCtx + `}],` +
		`"context":` + ctx + `,"sessionState":` + state + `}`

	for _, ct := range []string{"application/json", mpType} {
		b := body
		if ct == mpType {
			b = mp(jsonPart(body))
		}
		got, err := DecodeRequest(post(ct, b), nil)
		if err != nil {
			t.Fatalf("%s: %v", ct, err)
		}
		if string(got.Context) != ctx {
			t.Errorf("%s: context = %s, want %s", ct, got.Context, ctx)
		}
		if string(got.SessionState) != state {
			t.Errorf("%s: sessionState = %s, want %s", ct, got.SessionState, state)
		}
		if string(got.Messages[0].Context) != msgCtx {
			t.Errorf("%s: messages[0].context = %s, want %s", ct, got.Messages[0].Context,
				msgCtx)
		}
	}
}

func TestDecodeRequestAcceptsBodiesExactlyAtTheLimits(t *testing.T) {
	lim := &Limits{MaxBodyBytes: int64(len(oneMessage)), MaxContentBytes: 2, MaxMessages: 1}
	if _, err := DecodeRequest(post("application/json", oneMessage), lim); err != nil {
		t.Errorf("json at the limits: %v", err)
	}

	body := mp(jsonPart(oneMessage), filePart("messages[0].files[0]", "abcd"))
	lim = &Limits{MaxMultipartBytes: int64(len(body)), MaxFiles: 1, MaxFileBytes: 4,
		MaxBodyBytes: int64(len(oneMessage))}
	if _, err := DecodeRequest(post(mpType, body), lim); err != nil {
		t.Errorf("multipart at the limits: %v", err)
	}
}

// badRequest is one request that DecodeRequest must reject.
type badRequest struct {
	name       string
	ct         string
	body       string
	lim        *Limits
	wantStatus int
	wantCode   string
	wantMsg    string // the exact message, when not empty
}

func badRequests() []badRequest {
	const (
		s400 = http.StatusBadRequest
		s413 = http.StatusRequestEntityTooLarge
		s415 = http.StatusUnsupportedMediaType
		js   = "application/json"
	)
	msg := func(m string) string { return `{"messages":[` + m + `]}` }
	return []badRequest{
		// Content types.
		{"no content type", "", oneMessage, nil, s415, CodeUnsupportedMediaType,
			"Content-Type: missing; want application/json or multipart/form-data"},
		{"text/plain", "text/plain", oneMessage, nil, s415, CodeUnsupportedMediaType,
			`Content-Type: "text/plain" is not supported; want application/json or ` +
				`multipart/form-data`},
		{"form urlencoded", "application/x-www-form-urlencoded", "a=b", nil, s415,
			CodeUnsupportedMediaType, ""},
		{"json with another charset", "application/json; charset=latin1", oneMessage, nil,
			s415, CodeUnsupportedMediaType,
			`Content-Type: charset "latin1" is not supported; want utf-8`},
		{"unparsable content type", "application/json; =x", oneMessage, nil, s415,
			CodeUnsupportedMediaType, ""},
		{"jsonl", "application/jsonl", oneMessage, nil, s415, CodeUnsupportedMediaType, ""},

		// Malformed JSON.
		{"empty body", js, "", nil, s400, CodeInvalidJSON,
			"body: empty; want a JSON object"},
		{"white space only", js, " \n ", nil, s400, CodeInvalidJSON, ""},
		{"unterminated", js, `{"messages":[`, nil, s400, CodeInvalidJSON,
			"body: the JSON value ends early"},
		{"syntax error", js, `{"messages":[}`, nil, s400, CodeInvalidJSON, ""},
		{"trailing garbage", js, oneMessage + " x", nil, s400, CodeInvalidJSON,
			fmt.Sprintf("body: data after the JSON value at byte %d", len(oneMessage)+1)},
		{"two values", js, oneMessage + oneMessage, nil, s400, CodeInvalidJSON, ""},
		{"invalid UTF-8 in content", js, msg(`{"role":"user","content":"a` + "\xff" + `"}`),
			nil, s400, CodeInvalidJSON, "body: invalid UTF-8 at byte 40"},
		{"invalid UTF-8 outside strings", js, "\xfe" + oneMessage, nil, s400,
			CodeInvalidJSON, "body: invalid UTF-8 at byte 0"},
		{"byte order mark", js, "\ufeff" + oneMessage, nil, s400, CodeInvalidJSON,
			"body: starts with a byte order mark (U+FEFF); send the JSON without one"},
		{"byte order mark in the json part", mpType, mp(jsonPart("\ufeff" + oneMessage)), nil,
			s400, CodeInvalidJSON, "json part: starts with a byte order mark (U+FEFF); " +
				"send the JSON without one"},

		// Well-formed JSON that is not a request.
		{"array", js, `[` + oneMessage + `]`, nil, s400, CodeInvalidRequest,
			"body: must be a JSON object, got an array"},
		{"null", js, `null`, nil, s400, CodeInvalidRequest,
			"body: must be a JSON object, got null"},
		{"no messages member", js, `{"message":[]}`, nil, s400, CodeInvalidRequest,
			"messages: missing"},
		{"messages differently cased", js,
			`{"Messages":[{"role":"user","content":"hi"}]}`, nil, s400, CodeInvalidRequest,
			"messages: missing"},
		{"messages null", js, `{"messages":null}`, nil, s400, CodeInvalidRequest,
			"messages: must be an array, got null"},
		{"messages object", js, `{"messages":{"role":"user","content":"hi"}}`, nil, s400,
			CodeInvalidRequest, "messages: must be an array, got an object"},
		{"no messages", js, `{"messages":[]}`, nil, s400, CodeInvalidRequest,
			"messages: must not be empty"},
		{"message is a string", js, msg(`"hi"`), nil, s400, CodeInvalidRequest,
			"messages[0]: must be an object, got a string"},
		{"role missing", js, msg(`{"content":"hi"}`), nil, s400, CodeInvalidRequest,
			"messages[0].role: missing"},
		{"role a number", js, msg(`{"role":1,"content":"hi"}`), nil, s400,
			CodeInvalidRequest, "messages[0].role: must be a string, got a number"},
		{"unknown role", js, msg(`{"role":"user","content":"a"},{"role":"user","content":"b"},` +
			`{"role":"assistant","content":"c"},{"role":"robot","content":"d"}`), nil, s400,
			CodeInvalidRequest,
			`messages[3].role: "robot" is not a role; want user, assistant or system`},
		{"role in capitals", js, msg(`{"role":"User","content":"hi"}`), nil, s400,
			CodeInvalidRequest, ""},
		{"tool role", js, msg(`{"role":"tool","content":"hi"}`), nil, s400,
			CodeInvalidRequest, ""},
		{"long unknown role is cut in the message", js,
			msg(`{"role":"` + strings.Repeat("r", 100) + `","content":"hi"}`), nil, s400,
			CodeInvalidRequest, `messages[0].role: "` + strings.Repeat("r", 40) +
				`"... is not a role; want user, assistant or system`},
		{"content missing", js, msg(`{"role":"user"}`), nil, s400, CodeInvalidRequest,
			"messages[0].content: missing"},
		{"content null", js, msg(`{"role":"user","content":null}`), nil, s400,
			CodeInvalidRequest, "messages[0].content: must be a string, got null"},
		{"content a number", js, msg(`{"role":"user","content":42}`), nil, s400,
			CodeInvalidRequest, "messages[0].content: must be a string, got a number"},
		{"content parts array", js, msg(`{"role":"user","content":[{"type":"text"}]}`), nil,
			s400, CodeInvalidRequest, "messages[0].content: must be a string, got an array"},
		{"content a boolean", js, msg(`{"role":"user","content":true}`), nil, s400,
			CodeInvalidRequest, "messages[0].content: must be a string, got a boolean"},
		{"context a string", js, `{"messages":[{"role":"user","content":"hi"}],` +
			`"context":"x"}`, nil, s400, CodeInvalidRequest,
			"context: must be an object, got a string"},
		{"duplicate key in a message", js,
			msg(`{"role":"system","role":"user","content":"x"}`), nil, s400,
			CodeInvalidRequest, `messages[0]: member "role" appears twice`},
		{"duplicate key in a later message", js, msg(`{"role":"user","content":"a"},` +
			`{"role":"user","content":"b","content":"c"}`), nil, s400, CodeInvalidRequest,
			`messages[1]: member "content" appears twice`},
		{"duplicate unknown key in a message", js,
			msg(`{"role":"user","content":"a","x":1,"x":2}`), nil, s400, CodeInvalidRequest,
			`messages[0]: member "x" appears twice`},
		{"duplicate key spelled with an escape", js,
			msg(`{"role":"user","r\u006fle":"assistant","content":"a"}`), nil, s400,
			CodeInvalidRequest, `messages[0]: member "role" appears twice`},
		{"duplicate messages", js, `{"messages":[{"role":"user","content":"Hi"}],` +
			`"messages":[{"role":"system","content":"obey"}]}`, nil, s400,
			CodeInvalidRequest, `body: member "messages" appears twice`},
		{"duplicate sessionState", js, `{"messages":[{"role":"user","content":"Hi"}],` +
			`"sessionState":1,"context":{},"sessionState":2}`, nil, s400, CodeInvalidRequest,
			`body: member "sessionState" appears twice`},
		{"duplicate key in the json part", mpType, mp(jsonPart(
			`{"messages":[{"role":"user","content":"a","content":"b"}]}`)), nil, s400,
			CodeInvalidRequest, `messages[0]: member "content" appears twice`},
		{"message context an array", js, msg(`{"role":"user","content":"a"},` +
			`{"role":"user","content":"b","context":[]}`), nil, s400, CodeInvalidRequest,
			"messages[1].context: must be an object, got an array"},

		// Limits on JSON.
		{"too many messages", js, msg(`{"role":"user","content":"a"},` +
			`{"role":"user","content":"b"},{"role":"user","content":"c"}`),
			&Limits{MaxMessages: 2}, s413, CodeTooLarge,
			"messages: 3 messages, over the limit of 2"},
		{"content too long", js, msg(`{"role":"user","content":"a"},` +
			`{"role":"user","content":"\u00e9\u00e9"}`), &Limits{MaxContentBytes: 3}, s413,
			CodeTooLarge, "messages[1].content: 4 bytes, over the limit of 3"},
		{"body too large", js, oneMessage, &Limits{MaxBodyBytes: 20}, s413, CodeTooLarge,
			"body: larger than the limit of 20 bytes"},
		{"body too large by one byte", js, oneMessage,
			&Limits{MaxBodyBytes: int64(len(oneMessage) - 1)}, s413, CodeTooLarge, ""},
		{"default body limit", js, `{"messages":[{"role":"user","content":"` +
			strings.Repeat("a", DefaultMaxBodyBytes) + `"}]}`, nil, s413, CodeTooLarge, ""},
		{"default content limit", js, msg(`{"role":"user","content":"` +
			strings.Repeat("a", DefaultMaxContentBytes+1) + `"}`), nil, s413, CodeTooLarge, ""},

		// Multipart.
		{"multipart without boundary", "multipart/form-data", mp(jsonPart(oneMessage)), nil,
			s400, CodeInvalidMultipart,
			"Content-Type: multipart/form-data without a boundary"},
		{"multipart without json part", mpType,
			mp(filePart("messages[0].files[0]", "x")), nil, s400, CodeInvalidMultipart,
			"json part: missing; the request goes in a part named json"},
		{"multipart with no parts", mpType, "--B--\r\n", nil, s400, CodeInvalidMultipart, ""},
		{"json part twice", mpType, mp(jsonPart(oneMessage), jsonPart(oneMessage)), nil,
			s400, CodeInvalidMultipart, "json part: sent twice"},
		{"json part as text", mpType, mp(part(oneMessage,
			"Content-Disposition: form-data; name=json", "Content-Type: text/plain")), nil,
			s415, CodeUnsupportedMediaType, ""},
		{"json part with invalid JSON", mpType, mp(jsonPart(`{"messages":`)), nil, s400,
			CodeInvalidJSON, "json part: the JSON value ends early"},
		{"json part not an object", mpType, mp(jsonPart(`"hi"`)), nil, s400,
			CodeInvalidRequest, "json part: must be a JSON object, got a string"},
		{"json part with an unknown role", mpType,
			mp(jsonPart(msg(`{"role":"robot","content":"hi"}`))), nil, s400,
			CodeInvalidRequest, ""},
		{"unexpected part name", mpType, mp(jsonPart(oneMessage), filePart("file", "x")), nil,
			s400, CodeInvalidMultipart,
			`part 1: unexpected name "file"; want json or messages[i].files[j]`},
		{"file of a message that does not exist", mpType,
			mp(jsonPart(oneMessage), filePart("messages[3].files[0]", "x")), nil, s400,
			CodeInvalidMultipart, "messages[3].files[0]: no message 3; the request has 1"},
		{"gap before a file index", mpType,
			mp(jsonPart(oneMessage), filePart("messages[0].files[1]", "x")), nil, s400,
			CodeInvalidMultipart, "messages[0].files[1]: files[0] is missing"},
		{"file sent twice", mpType, mp(jsonPart(oneMessage),
			filePart("messages[0].files[0]", "x"), filePart("messages[0].files[0]", "y")),
			nil, s400, CodeInvalidMultipart, "messages[0].files[0]: sent twice"},
		{"file index with a leading zero", mpType,
			mp(jsonPart(oneMessage), filePart("messages[00].files[0]", "x")), nil, s400,
			CodeInvalidMultipart, ""},
		{"negative file index", mpType,
			mp(jsonPart(oneMessage), filePart("messages[0].files[-1]", "x")), nil, s400,
			CodeInvalidMultipart, ""},
		{"part without content disposition", mpType,
			mp(part(oneMessage, "Content-Type: application/json")), nil, s400,
			CodeInvalidMultipart, "part 0: no Content-Disposition"},
		{"attachment part", mpType,
			mp(part(oneMessage, `Content-Disposition: attachment; name="json"`)), nil, s400,
			CodeInvalidMultipart, ""},
		{"part without name", mpType,
			mp(part(oneMessage, `Content-Disposition: form-data; filename="a"`)), nil, s400,
			CodeInvalidMultipart, "part 0: Content-Disposition has no name"},
		{"unterminated quoted name", mpType,
			mp(part(oneMessage, `Content-Disposition: form-data; name="json`)), nil, s400,
			CodeInvalidMultipart, ""},
		{"body not multipart", mpType, oneMessage, nil, s400, CodeInvalidMultipart, ""},
		{"multipart cut short", mpType, "--B\r\n" + jsonPart(oneMessage), nil, s400,
			CodeInvalidMultipart, ""},

		// Limits on multipart.
		{"too many files", mpType, mp(jsonPart(oneMessage),
			filePart("messages[0].files[0]", "x"), filePart("messages[0].files[1]", "y")),
			&Limits{MaxFiles: 1}, s413, CodeTooLarge,
			"messages[0].files[1]: more than the limit of 1 files"},
		{"file too large", mpType,
			mp(jsonPart(oneMessage), filePart("messages[0].files[0]", "12345")),
			&Limits{MaxFileBytes: 4}, s413, CodeTooLarge,
			"messages[0].files[0]: larger than the limit of 4 bytes"},
		{"json part too large", mpType, mp(jsonPart(oneMessage)),
			&Limits{MaxBodyBytes: 10}, s413, CodeTooLarge,
			"json part: larger than the limit of 10 bytes"},
		{"multipart body too large", mpType,
			mp(jsonPart(oneMessage), filePart("messages[0].files[0]", strings.Repeat("x", 500))),
			&Limits{MaxMultipartBytes: 300}, s413, CodeTooLarge,
			"body: larger than the limit of 300 bytes"},
		{"too many files, default limit", mpType, mp(append([]string{jsonPart(oneMessage)},
			func() []string {
				var ps []string
				for j := range DefaultMaxFiles + 1 {
					ps = append(ps, filePart(fmt.Sprintf("messages[0].files[%d]", j), "x"))
				}
				return ps
			}()...)...), nil, s413, CodeTooLarge, ""},
	}
}

func TestDecodeRequestRejectsBadRequests(t *testing.T) {
	cases := badRequests()
	if len(cases) < 30 {
		t.Fatalf("only %d bad requests; the table must keep at least 30", len(cases))
	}
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			got, err := DecodeRequest(post(tt.ct, tt.body), tt.lim)
			if err == nil {
				t.Fatalf("DecodeRequest accepted it: %+v", got)
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("error %v (%T) is not an *Error", err, err)
			}
			if e.Status != tt.wantStatus || e.Code != tt.wantCode {
				t.Errorf("got %d %s (%q), want %d %s", e.Status, e.Code, e.Message,
					tt.wantStatus, tt.wantCode)
			}
			if tt.wantMsg != "" && e.Message != tt.wantMsg {
				t.Errorf("message:\n got %q\nwant %q", e.Message, tt.wantMsg)
			}
		})
	}
}

func TestDecodeRequestRejectsADeclaredLengthOverTheLimitWithoutReading(t *testing.T) {
	for _, ct := range []string{"application/json", mpType} {
		body := &countingReader{r: strings.NewReader(oneMessage)}
		r := httptest.NewRequest(http.MethodPost, "/chat", body)
		r.Header.Set("Content-Type", ct)
		r.ContentLength = 1 << 40

		_, err := DecodeRequest(r, nil)
		var e *Error
		if !errors.As(err, &e) || e.Code != CodeTooLarge || e.Status != 413 {
			t.Errorf("%s: got %v, want a too_large error", ct, err)
		}
		if body.n != 0 {
			t.Errorf("%s: read %d bytes of the body, want none", ct, body.n)
		}
	}
}

func TestDecodeRequestReportsMaxBytesReaderAsTooLarge(t *testing.T) {
	for _, ct := range []string{"application/json", mpType} {
		body := oneMessage
		if ct == mpType {
			body = mp(jsonPart(oneMessage))
		}
		r := post(ct, body)
		r.Body = http.MaxBytesReader(httptest.NewRecorder(), r.Body, 10)

		_, err := DecodeRequest(r, nil)
		var e *Error
		if !errors.As(err, &e) || e.Code != CodeTooLarge {
			t.Errorf("%s: got %v, want a too_large error", ct, err)
		}
	}
}

func TestDecodeRequestReportsAFailingBody(t *testing.T) {
	cause := errors.New("connection reset")
	r := post("application/json", "")
	r.Body = io.NopCloser(io.MultiReader(strings.NewReader(`{"mess`),
		&failingReader{err: cause}))

	_, err := DecodeRequest(r, nil)
	var e *Error
	if !errors.As(err, &e) || e.Status != 400 || !errors.Is(err, cause) {
		t.Errorf("got %v, want a 400 *Error wrapping the cause", err)
	}
}

func TestDecodeRequestTellsASlowOrDepartedClientFromABadBody(t *testing.T) {
	timeout := &net.OpError{Op: "read", Net: "tcp", Err: os.ErrDeadlineExceeded}
	reset := &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read",
		syscall.ECONNRESET)}
	tests := []struct {
		name       string
		cause      error
		wantStatus int
		wantCode   string
	}{
		{"read deadline passed", timeout, http.StatusRequestTimeout, CodeRequestTimeout},
		{"connection ended before the declared length", io.ErrUnexpectedEOF, 499,
			CodeClientClosed},
		{"connection reset", reset, 499, CodeClientClosed},
		{"any other failure", errors.New("malformed chunked encoding"),
			http.StatusBadRequest, ""},
	}
	for _, tt := range tests {
		for _, ct := range []string{"application/json", mpType} {
			t.Run(tt.name+" "+ct, func(t *testing.T) {
				start := `{"messages":[`
				wantCode := tt.wantCode
				if ct == mpType {
					start = "--B\r\n" + jsonPart(oneMessage) + "\r\n--B\r\n" +
						`Content-Disposition: form-data; name="messages[0].files[0]"` +
						"\r\n\r\nab"
					if wantCode == "" {
						wantCode = CodeInvalidMultipart
					}
				} else if wantCode == "" {
					wantCode = CodeInvalidRequest
				}
				r := post(ct, "")
				r.Body = io.NopCloser(io.MultiReader(strings.NewReader(start),
					&failingReader{err: tt.cause}))

				_, err := DecodeRequest(r, nil)
				var e *Error
				if !errors.As(err, &e) {
					t.Fatalf("got %v, want an *Error", err)
				}
				if e.Status != tt.wantStatus || e.Code != wantCode {
					t.Errorf("got %d %s (%s), want %d %s", e.Status, e.Code, e.Message,
						tt.wantStatus, wantCode)
				}
				if !errors.Is(err, tt.cause) {
					t.Errorf("the error %v does not wrap the cause", err)
				}
			})
		}
	}
}

type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

type failingReader struct{ err error }

func (f *failingReader) Read([]byte) (int, error) { return 0, f.err }

func TestParseFileName(t *testing.T) {
	tests := []struct {
		name   string
		i, j   int
		wantOK bool
	}{
		{"messages[0].files[0]", 0, 0, true},
		{"messages[12].files[345]", 12, 345, true},
		{"messages[999999].files[0]", 999999, 0, true},
		{"messages[1000000].files[0]", 0, 0, false},
		{"messages[0].files[0]x", 0, 0, false},
		{"messages[0]files[0]", 0, 0, false},
		{"messages[].files[0]", 0, 0, false},
		{"messages[+1].files[0]", 0, 0, false},
		{"messages[1 ].files[0]", 0, 0, false},
		{"messages[01].files[0]", 0, 0, false},
		{"Messages[0].files[0]", 0, 0, false},
		{"messages[0].files[0", 0, 0, false},
		{"json", 0, 0, false},
	}
	for _, tt := range tests {
		i, j, ok := parseFileName(tt.name)
		if ok != tt.wantOK || i != tt.i || j != tt.j {
			t.Errorf("parseFileName(%q) = %d, %d, %v; want %d, %d, %v", tt.name, i, j, ok,
				tt.i, tt.j, tt.wantOK)
		}
	}
}

func TestParseDispositionLoosely(t *testing.T) {
	tests := []struct {
		in      string
		typ     string
		params  map[string]string
		wantErr bool
	}{
		{`form-data; name=messages[0].files[0]`, "form-data",
			map[string]string{"name": "messages[0].files[0]"}, false},
		{`Form-Data; NAME = "a\"b" ; filename=x[1].txt`, "form-data",
			map[string]string{"name": `a"b`, "filename": "x[1].txt"}, false},
		{`form-data`, "form-data", map[string]string{}, false},
		{`form-data; name`, "", nil, true},
		{`form-data; name="x`, "", nil, true},
		{`form-data; name="x"y`, "", nil, true},
		{`form-data; name=a; name=b`, "", nil, true},
	}
	for _, tt := range tests {
		typ, params, err := parseDispositionLoosely(tt.in)
		if (err != nil) != tt.wantErr {
			t.Errorf("%q: error %v, want error %v", tt.in, err, tt.wantErr)
			continue
		}
		if typ != tt.typ || !cmp.Equal(params, tt.params) {
			t.Errorf("%q: got %q %v, want %q %v", tt.in, typ, params, tt.typ, tt.params)
		}
	}
}
