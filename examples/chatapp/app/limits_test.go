package app

import (
	"bytes"
	"encoding/json"
	"fmt"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/aoaiblocks/securechat/chatproto"
	"github.com/aoaiblocks/securechat/stream"
)

// uploadRequest returns a multipart chat request with one user message and
// one file of each given size.
func uploadRequest(t *testing.T, sizes ...int) *http.Request {
	t.Helper()
	var b bytes.Buffer
	mw := multipart.NewWriter(&b)
	part, err := mw.CreateFormField("json")
	if err != nil {
		t.Fatal(err)
	}
	_, _ = part.Write([]byte(`{"messages":[{"role":"user","content":"see the files"}]}`))
	for j, n := range sizes {
		f, err := mw.CreateFormFile(fmt.Sprintf("messages[0].files[%d]", j), "f.txt")
		if err != nil {
			t.Fatal(err)
		}
		_, _ = f.Write(bytes.Repeat([]byte("x"), n))
	}
	if err := mw.Close(); err != nil {
		t.Fatal(err)
	}
	r := httptest.NewRequest("POST", "/chat", &b)
	r.Header.Set("Content-Type", mw.FormDataContentType())
	return r
}

func TestUploadsAreBoundedByTheAppsSmallMultipartLimits(t *testing.T) {
	a, _ := newTestApp(t, Options{})
	const mib = 1 << 20
	tests := []struct {
		name  string
		sizes []int
		want  int
	}{
		{"a small file", []int{1500}, http.StatusOK},
		{"four files at the file limit's half", []int{mib / 2, mib / 2, mib / 2, mib / 2},
			http.StatusOK},
		{"a file over 2 MiB", []int{2*mib + 1}, http.StatusRequestEntityTooLarge},
		{"five files", []int{1, 1, 1, 1, 1}, http.StatusRequestEntityTooLarge},
		{"a body over 4 MiB", []int{2 * mib, 2 * mib, 64}, http.StatusRequestEntityTooLarge},
		{"16 MiB in eight files, as chatproto's defaults allow", []int{2 * mib, 2 * mib, 2 * mib, 2 * mib,
			2 * mib, 2 * mib, 2 * mib, 2 * mib}, http.StatusRequestEntityTooLarge},
	}
	for _, tt := range tests {
		w := serve(a, uploadRequest(t, tt.sizes...))
		if w.Code != tt.want {
			t.Errorf("%s: status %d, want %d: %s", tt.name, w.Code, tt.want, w.Body)
			continue
		}
		if tt.want == http.StatusRequestEntityTooLarge {
			var body chatproto.ErrorResponse
			if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil ||
				body.Error == nil || body.Error.Code != chatproto.CodeTooLarge {
				t.Errorf("%s: body %s, want a too_large error", tt.name, w.Body)
			}
		}
	}
}

func TestStreamLimitsReplaceTheAppsUploadLimits(t *testing.T) {
	a, _ := newTestApp(t, Options{Stream: &stream.Options{Limits: &chatproto.Limits{
		MaxMultipartBytes: 16 << 20, MaxFileBytes: 8 << 20,
	}}})
	if w := serve(a, uploadRequest(t, 3<<20)); w.Code != http.StatusOK {
		t.Errorf("a 3 MiB file under the caller's 8 MiB limit: status %d: %s", w.Code,
			strings.TrimSpace(w.Body.String()))
	}
}
