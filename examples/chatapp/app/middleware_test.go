package app

import (
	"encoding/base64"
	"net"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func principal(json string) string {
	return base64.StdEncoding.EncodeToString([]byte(json))
}

func TestPrincipalNameReadsTheNameClaim(t *testing.T) {
	tests := []struct {
		name     string
		header   string
		wantName string
		wantOK   bool
	}{
		{"name_typ names the claim",
			principal(`{"auth_typ":"aad","name_typ":"preferred_username","claims":[` +
				`{"typ":"name","val":"Ada L."},{"typ":"preferred_username","val":"ada@x"}]}`),
			"ada@x", true},
		{"name claim",
			principal(`{"auth_typ":"aad","claims":[{"typ":"name","val":"Ada Lovelace"}]}`),
			"Ada Lovelace", true},
		{"preferred_username when no name",
			principal(`{"claims":[{"typ":"preferred_username","val":"ada@x"}]}`),
			"ada@x", true},
		{"signed in without a name", principal(`{"claims":[]}`), "", true},
		{"unpadded base64",
			base64.RawStdEncoding.EncodeToString(
				[]byte(`{"claims":[{"typ":"name","val":"Bo"}]}`)),
			"Bo", true},
		{"missing header", "", "", false},
		{"not base64", "%%%", "", false},
		{"not JSON", principal("hello"), "", false},
		{"no claims", principal(`{"auth_typ":"aad"}`), "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			name, ok := principalName(tt.header)
			if name != tt.wantName || ok != tt.wantOK {
				t.Errorf("principalName = %q, %v; want %q, %v", name, ok, tt.wantName, tt.wantOK)
			}
		})
	}
}

func TestURLNamesAnAddressABrowserCanOpen(t *testing.T) {
	tests := []struct {
		addr net.Addr
		want string
	}{
		{&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 8080}, "http://127.0.0.1:8080/"},
		{&net.TCPAddr{IP: net.IPv6unspecified, Port: 8080}, "http://localhost:8080/"},
		{&net.TCPAddr{IP: net.IPv4zero, Port: 80}, "http://localhost:80/"},
		{&net.TCPAddr{IP: net.IPv6loopback, Port: 9}, "http://[::1]:9/"},
	}
	for _, tt := range tests {
		if got := URL(tt.addr); got != tt.want {
			t.Errorf("URL(%v) = %q, want %q", tt.addr, got, tt.want)
		}
	}
}

func TestProductionFollowsTheAzureVariables(t *testing.T) {
	tests := []struct {
		env  map[string]string
		want bool
	}{
		{map[string]string{}, false},
		{map[string]string{"RUNNING_IN_PRODUCTION": "1"}, true},
		{map[string]string{"RUNNING_IN_PRODUCTION": "true"}, true},
		{map[string]string{"RUNNING_IN_PRODUCTION": "yes"}, true},
		{map[string]string{"RUNNING_IN_PRODUCTION": "false", "CONTAINER_APP_NAME": "x"},
			false},
		{map[string]string{"CONTAINER_APP_NAME": "securechat"}, true},
	}
	for _, tt := range tests {
		got := Production(func(k string) string { return tt.env[k] })
		if got != tt.want {
			t.Errorf("Production(%v) = %v, want %v", tt.env, got, tt.want)
		}
	}
}

func TestRequestIDKeepsOnlySafeClientIDs(t *testing.T) {
	tests := []struct {
		sent string
		keep bool
	}{
		{"abc-123_X.y", true},
		{"", false},
		{"has space", false},
		{"line\nbreak", false},
		{"é", false},
		{string(make([]byte, 65)), false},
	}
	for _, tt := range tests {
		r := newRequest("GET", "/healthz")
		r.Header.Set(requestIDHeader, tt.sent)
		got := requestID(r)
		if (got == tt.sent) != tt.keep {
			t.Errorf("requestID with %q = %q; keep = %v", tt.sent, got, tt.keep)
		}
		if got == "" {
			t.Errorf("requestID with %q is empty", tt.sent)
		}
	}
}

func TestEscapeMarkdownQuotesTheQuestionAsTyped(t *testing.T) {
	got := escapeMarkdown("<b>*hi*</b> [x](y)")
	want := `\<b\>\*hi\*\</b\> \[x\]\(y\)`
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("escapeMarkdown (-want +got):\n%s", diff)
	}
}
