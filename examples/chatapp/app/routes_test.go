package app

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/aoaiblocks/securechat/chatproto"
)

func TestRequestsOffTheRoutesGetTheProtocolsErrorBody(t *testing.T) {
	type answer struct {
		Status int
		Code   string // "" for a body that is not a protocol error
		Allow  string
	}
	withPage, _ := newTestApp(t, Options{})
	apiOnly, err := New(Options{Model: wordsModel("hi")}) // no Web: no page
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		app            *App
		method, target string
		want           answer
	}{
		{withPage, "POST", "/api/chat", answer{404, "not_found", ""}},
		{withPage, "POST", "/chat/", answer{404, "not_found", ""}},
		{withPage, "POST", "/chat/stream/", answer{404, "not_found", ""}},
		{withPage, "PUT", "/no/such/file", answer{404, "not_found", ""}},
		{withPage, "DELETE", "/", answer{405, "method_not_allowed", "GET, HEAD"}},
		{withPage, "POST", "/app.js", answer{405, "method_not_allowed", "GET, HEAD"}},
		{withPage, "POST", "/healthz", answer{405, "method_not_allowed", "GET, HEAD"}},
		{withPage, "PUT", "/readyz", answer{405, "method_not_allowed", "GET, HEAD"}},
		{withPage, "POST", "/config.json", answer{405, "method_not_allowed", "GET, HEAD"}},
		{withPage, "GET", "/chat", answer{405, "method_not_allowed", "POST"}},
		{withPage, "GET", "/no/such/file", answer{404, "", ""}}, // a page, for browsers
		{apiOnly, "POST", "/api/chat", answer{404, "not_found", ""}},
		{apiOnly, "POST", "/healthz", answer{405, "method_not_allowed", "GET, HEAD"}},
	}
	for _, tt := range tests {
		r := httptest.NewRequest(tt.method, tt.target, strings.NewReader("{}"))
		r.Header.Set("Content-Type", "application/json")
		w := serve(tt.app, r)

		got := answer{Status: w.Code, Allow: w.Header().Get("Allow")}
		var body chatproto.ErrorResponse
		if json.Unmarshal(w.Body.Bytes(), &body) == nil && body.Error != nil {
			got.Code = body.Error.Code
			if ct := w.Header().Get("Content-Type"); ct != "application/json" {
				t.Errorf("%s %s: Content-Type %q, want application/json", tt.method,
					tt.target, ct)
			}
		}
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("%s %s (-want +got):\n%s", tt.method, tt.target, diff)
		}
	}
}

func TestThePagesDocumentationIsNotServed(t *testing.T) {
	a, _ := newTestApp(t, Options{Web: os.DirFS(filepath.Join("..", "web"))})
	tests := []struct {
		target string
		want   int
	}{
		{"/", http.StatusOK},
		{"/app.js", http.StatusOK},
		{"/vendor/marked.esm.js", http.StatusOK},
		{"/README.md", http.StatusNotFound},
		{"/vendor/README.md", http.StatusNotFound},
		// The license texts of the libraries the page loads stay next to them.
		{"/vendor/LICENSE.marked.md", http.StatusOK},
		{"/vendor/LICENSE.dompurify", http.StatusOK},
	}
	for _, tt := range tests {
		for _, method := range []string{"GET", "HEAD"} {
			if w := serve(a, httptest.NewRequest(method, tt.target, nil)); w.Code != tt.want {
				t.Errorf("%s %s: status %d, want %d", method, tt.target, w.Code, tt.want)
			}
		}
	}
}

func TestHiddenFileKeepsMarkdownButNotLicensesFromClients(t *testing.T) {
	for name, want := range map[string]bool{
		"README.md": true, "vendor/README.md": true, "notes.MD": true,
		"vendor/LICENSE.marked.md": false, "LICENSE-MPL.dompurify": false,
		"app.js": false, "index.html": false, "md": false,
	} {
		if got := hiddenFile(name); got != want {
			t.Errorf("hiddenFile(%q) = %v, want %v", name, got, want)
		}
	}
}
