package chatproto

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// TestDecodeRequestReadsMembersAsUnmarshalDoes pins the cases where
// DecodeRequest's own scanning of the body must agree with encoding/json:
// escaped member names, exact name case, members it does not know, white
// space, and escapes in strings.
func TestDecodeRequestReadsMembersAsUnmarshalDoes(t *testing.T) {
	tests := []struct {
		name, body string
		want       []Message // nil: the request is rejected with wantErr
		wantErr    string
	}{
		{
			name: "escaped member name",
			body: `{"messages":[{"r\u006fle":"user","content":"a"}]}`,
			want: []Message{{Role: RoleUser, Content: "a"}},
		},
		{
			name:    "name case matters",
			body:    `{"messages":[{"Role":"user","content":"a"}]}`,
			wantErr: "messages[0].role: missing",
		},
		{
			name: "unknown members ignored",
			body: `{"id":1,"messages":[{"name":"x","role":"user","content":"a"}]}`,
			want: []Message{{Role: RoleUser, Content: "a"}},
		},
		{
			name: "white space everywhere",
			body: " \r\n{ \"messages\" :\t[ { \"content\" : \"a\" , \"role\" : \"user\" ," +
				" \"context\" : { \"k\" : [ 1 , \"]}\" ] } } , {\"role\":\"user\"," +
				"\"content\":\"\",\"context\":null} ] }\n",
			want: []Message{
				{Role: RoleUser, Content: "a", Context: json.RawMessage(`{ "k" : [ 1 , "]}" ] }`)},
				{Role: RoleUser},
			},
		},
		{
			name: "escapes and surrogates",
			body: `{"messages":[{"role":"user","content":` +
				`"\"\\\/\b\f\n\r\t\u00e9\ud83d\ude00\ud800\ud800x\udc00\ud83d"}]}`,
			want: []Message{{Role: RoleUser,
				Content: "\"\\/\b\f\n\r\té😀\uFFFD\uFFFDx\uFFFD\uFFFD"}},
		},
		{
			name:    "a number where a string belongs",
			body:    `{"messages":[{"role":"user","content":-1.5e3}]}`,
			wantErr: "messages[0].content: must be a string, got a number",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodPost, "/chat", strings.NewReader(tt.body))
			r.Header.Set("Content-Type", "application/json")
			req, err := DecodeRequest(r, nil)
			if tt.want == nil {
				e, ok := err.(*Error)
				if !ok || e.Message != tt.wantErr {
					t.Fatalf("got error %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, req.Messages); diff != "" {
				t.Errorf("messages (-want +got):\n%s", diff)
			}
		})
	}
}

// FuzzScanMatchesUnmarshal checks the helpers DecodeRequest uses instead of
// encoding/json on a well-formed body: knownMembers and arrayItems give the
// values json.Unmarshal gives, and unquote the same string.
func FuzzScanMatchesUnmarshal(f *testing.F) {
	f.Add([]byte(`{"role":"user","content":"a\n\u00e9","context":{"x":[1,"}"]}}`))
	f.Add([]byte(`{ "content" : null , "role":true}`))
	f.Add([]byte(`{"role":"a","r\u006fle":"b"}`))
	f.Add([]byte(`{"role":"a","role":"b"}`))
	f.Add([]byte(`[ {"a":1} , "x\"]" ,[[]], -0.5e+3 ,null]`))
	f.Add([]byte(`"\ud83d\ude00\ud800\ud800\udc00\/\\"`))
	f.Add([]byte(`{}`))
	f.Add([]byte(`[]`))

	f.Fuzz(func(t *testing.T, b []byte) {
		if !json.Valid(b) || !utf8.Valid(b) {
			return
		}
		v := bytes.Trim(b, " \t\r\n")
		switch v[0] {
		case '{':
			var m map[string]json.RawMessage
			if err := json.Unmarshal(v, &m); err != nil {
				t.Fatal(err)
			}
			var got [3]json.RawMessage
			if !knownMembers(v, &messageMembers, &got) {
				return
			}
			want := [3]json.RawMessage{m["role"], m["content"], m["context"]}
			if diff := cmp.Diff(want, got); diff != "" || len(m) != countNonNil(got) {
				t.Fatalf("knownMembers(%s): %d members (-want +got):\n%s", v, len(m), diff)
			}
		case '[':
			var want []json.RawMessage
			if err := json.Unmarshal(v, &want); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(want, arrayItems(v), cmpopts.EquateEmpty()); diff != "" {
				t.Fatalf("arrayItems(%s) (-want +got):\n%s", v, diff)
			}
		case '"':
			var want string
			if err := json.Unmarshal(v, &want); err != nil {
				t.Fatal(err)
			}
			if got := unquote(v); got != want {
				t.Fatalf("unquote(%s) = %q, want %q", v, got, want)
			}
		}
	})
}

func countNonNil(vals [3]json.RawMessage) int {
	n := 0
	for _, v := range vals {
		if v != nil {
			n++
		}
	}
	return n
}
