// Command chatapp is securechat's deployable chat app: an embedded web page
// and the AI Chat Protocol endpoints in one process, answering with Azure
// OpenAI through a keyless (Microsoft Entra ID) credential.
//
// Try it without Azure:
//
//	go run ./examples/chatapp -demo
//
// and open the address it prints. Demo mode starts local stand-ins for Azure
// OpenAI and the managed identity endpoint inside the process; answers are
// simulated, but every request takes the production path: a token from the
// credential chain, the official openai-go client, the stream handler.
//
// Against your own Azure OpenAI, after `azd up` (or `azd auth login` and an
// azd environment that names an existing account):
//
//	go run ./examples/chatapp
//
// The configuration comes from the environment or, locally, from the current
// azd environment's .env file. Without it, and without -demo, the command
// exits with status 2 and lists each missing value with how to get it; a
// credential setting that cannot work (such as an unknown
// AZURE_TOKEN_CREDENTIALS) exits with status 2 too.
//
// # Flags and environment
//
// Each flag has an environment variable; a flag given on the command line
// wins.
//
//	-demo              SECURECHAT_DEMO=1             answer with in-process
//	                                                 stand-ins, no Azure needed
//	-addr host:port    PORT (the port only)          where to listen; default
//	                                                 :8080, and 127.0.0.1:8080
//	                                                 for a demo outside Azure
//	-shutdown-timeout  SECURECHAT_SHUTDOWN_TIMEOUT   how long answers in flight
//	                                                 may finish after SIGTERM
//	                                                 (25s), before they are
//	                                                 cancelled
//	-require-sign-in   SECURECHAT_REQUIRE_SIGN_IN=1  demand the principal of
//	                                                 Container Apps built-in
//	                                                 authentication
//	-body-timeout      SECURECHAT_BODY_TIMEOUT       how long a request's body
//	                                                 may take to arrive (30s);
//	                                                 slower clients get 408, 0
//	                                                 turns the bound off
//	-upstream-timeout  SECURECHAT_UPSTREAM_TIMEOUT   how long a whole answer from
//	                                                 Azure OpenAI may take (5m)
//	-idle-timeout      SECURECHAT_IDLE_TIMEOUT       how long to wait for the
//	                                                 first or next piece of an
//	                                                 answer (90s)
//	-max-retries       SECURECHAT_MAX_RETRIES        retries of an upstream request
//	                                                 that failed before its answer
//	                                                 began (2); 0 turns them off
//	-log-level         SECURECHAT_LOG_LEVEL          debug, info, warn, error
//	-demo-pace         SECURECHAT_DEMO_PACE          delay between the words of
//	                                                 a demo answer (45ms)
//
// Azure OpenAI is named by AZURE_OPENAI_ENDPOINT and
// AZURE_OPENAI_CHAT_DEPLOYMENT, with AZURE_OPENAI_API_VERSION (optional),
// AZURE_CLIENT_ID (a user-assigned managed identity) and AZURE_TENANT_ID, as
// azd provisions them. Logs are JSON when RUNNING_IN_PRODUCTION or
// CONTAINER_APP_NAME is set, text otherwise, on standard error.
//
// In demo mode the process points its own IDENTITY_ENDPOINT and
// IDENTITY_HEADER at the managed identity stand-in (azidentity reads them
// from the process environment only); nothing outside the process changes.
package main

import (
	"context"
	"embed"
	"io/fs"
	"os"
	"os/signal"
	"syscall"
)

// webFiles holds the page: index.html, its script, styles and the vendored
// libraries, served from the binary itself.
//
//go:embed web
var webFiles embed.FS

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	// After the first signal, a second one ends the process at once.
	context.AfterFunc(ctx, stop)

	web, err := fs.Sub(webFiles, "web")
	if err != nil {
		panic(err) // the embed pattern above guarantees the directory
	}
	os.Exit(run(ctx, os.Args[1:], os.Getenv, web, os.Stderr))
}
