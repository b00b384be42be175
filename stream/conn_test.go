package stream_test

import (
	"bufio"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"

	"github.com/aoaiblocks/securechat/aoaitest"
	"github.com/aoaiblocks/securechat/keyless"
	"github.com/aoaiblocks/securechat/stream"
)

// TestSequentialChatsReuseTheUpstreamConnection pins connection reuse: 100
// chats one after the other, each streamed through the Handler, AzureModel
// and the keyless openai-go client to the Azure OpenAI stand-in, open at
// most 2 TLS connections to it (a TLS handshake per chat would cost more
// than the chat's own work) and ask the identity endpoint for one token.
func TestSequentialChatsReuseTheUpstreamConnection(t *testing.T) {
	for _, apiVersion := range []string{"", "2024-10-21"} { // v1 and the dated path
		t.Run("api-version="+apiVersion, func(t *testing.T) {
			hc := aoaitest.Guard(t)
			id := aoaitest.NewIdentity()
			t.Cleanup(id.Close)
			id.Setenv(t)
			aoai := aoaitest.NewAzureOpenAI()
			t.Cleanup(aoai.Close)

			cfg := keyless.Config{Endpoint: aoai.URL, Deployment: "chat", APIVersion: apiVersion}
			client, err := keyless.NewClient(cfg, &keyless.ClientOptions{
				HTTPClient: aoai.Client(),
				CredentialOptions: &keyless.CredentialOptions{
					ClientOptions: azcore.ClientOptions{Transport: hc},
				},
			})
			if err != nil {
				t.Fatalf("keyless.NewClient: %v", err)
			}
			h := stream.NewHandler(stream.NewAzureModel(client, cfg.Deployment, nil),
				&stream.Options{Logger: slog.New(slog.DiscardHandler)})
			srv := httptest.NewServer(h)
			t.Cleanup(srv.Close)

			const chats = 100
			for i := range chats {
				q := "question " + strconv.Itoa(i)
				resp, err := srv.Client().Post(srv.URL+"/chat/stream", "application/json",
					strings.NewReader(`{"messages":[{"role":"user","content":"`+q+`"}]}`))
				if err != nil {
					t.Fatalf("chat %d: %v", i, err)
				}
				last := lastLine(t, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK || !strings.Contains(last, `"finish_reason":"stop"`) {
					t.Fatalf("chat %d: status %d, last line %s", i, resp.StatusCode, last)
				}
			}

			if n := aoai.TLSConnections(); n > 2 {
				t.Errorf("%d sequential chats opened %d TLS connections to Azure OpenAI, want at "+
					"most 2", chats, n)
			}
			if n := id.Calls(); n != 1 {
				t.Errorf("%d sequential chats made %d token requests, want 1", chats, n)
			}
		})
	}
}

// lastLine reads r to its end and returns its last line.
func lastLine(t *testing.T, r io.Reader) string {
	t.Helper()
	sc := bufio.NewScanner(r)
	last := ""
	for sc.Scan() {
		last = sc.Text()
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return last
}
