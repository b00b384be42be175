package browsertest

import (
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/aoaiblocks/securechat/aoaitest"
	"github.com/aoaiblocks/securechat/examples/chatapp/app"
	"github.com/aoaiblocks/securechat/keyless"
)

// webDir is the page the app embeds, read from the source tree.
var webDir = filepath.Join("..", "examples", "chatapp", "web")

// serveApp serves the example app, its real handler and page, on a free
// loopback port. Chat requests take the production path: the keyless
// credential chain gets a token from an aoaitest.Identity (found through
// IDENTITY_ENDPOINT, as in Azure Container Apps) and the openai-go
// client sends it to an aoaitest.AzureOpenAI that answers with script.
//
// It calls aoaitest.Guard first, so the test cannot leave loopback or read the
// developer's Azure sign-in. Everything stops when the test ends.
func serveApp(t *testing.T, script func(*aoaitest.ChatRequest) aoaitest.Reply,
) (*httptest.Server, *aoaitest.AzureOpenAI) {
	t.Helper()
	aoaitest.Guard(t)

	id := aoaitest.NewIdentity()
	t.Cleanup(id.Close)
	aoai := aoaitest.NewAzureOpenAI()
	aoai.Script = script
	t.Cleanup(aoai.Close)

	// azidentity reads the managed identity variables from the process
	// environment only; Guard restores it when the test ends.
	id.Setenv(t)
	t.Setenv("AZURE_OPENAI_ENDPOINT", aoai.URL)
	t.Setenv("AZURE_OPENAI_CHAT_DEPLOYMENT", "browsertest-chat")
	cfg, err := keyless.LoadConfig(nil)
	if err != nil {
		t.Fatalf("browsertest: configuration: %v", err)
	}
	a, err := app.New(app.Options{
		Config:     cfg,
		HTTPClient: aoai.Client(),
		Web:        os.DirFS(webDir),
		Logger:     slog.New(slog.NewTextHandler(t.Output(), nil)),
	})
	if err != nil {
		t.Fatalf("browsertest: app.New: %v", err)
	}

	srv := httptest.NewServer(a)
	t.Cleanup(srv.Close)
	return srv, aoai
}
