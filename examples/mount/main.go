// Command mount shows the few lines it takes to add keyless Azure OpenAI chat
// to a service that already has its own http.ServeMux: build the client from
// azd's variables, wrap it in stream's handler, mount it under a path.
//
//	azd up    # or set AZURE_OPENAI_ENDPOINT and AZURE_OPENAI_CHAT_DEPLOYMENT
//	go run ./examples/mount
//	curl -N localhost:8080/api/chat/stream -H 'Content-Type: application/json' \
//	  -d '{"messages":[{"role":"user","content":"Hello"}]}'
//
// Locally the token comes from `azd auth login`; in Azure from the app's
// managed identity. No key is involved anywhere.
package main

import (
	"fmt"
	"log"
	"net/http"
	"os"

	"github.com/aoaiblocks/securechat/keyless"
	"github.com/aoaiblocks/securechat/stream"
)

func main() {
	cfg, err := keyless.LoadConfig(&keyless.ConfigOptions{AzdEnv: true})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	client, err := keyless.NewClient(cfg, nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	model := stream.NewAzureModel(client, cfg.Deployment, nil)

	log.Println("listening on http://localhost:8080/")
	log.Fatal(http.ListenAndServe(":8080", newMux(model)))
}

// newMux is the service's existing mux, with the chat endpoints added under
// /api/chat.
func newMux(model stream.Model) *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/status", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "ok")
	})

	chat := stream.NewHandler(model, &stream.Options{
		SystemPrompt: "You are the help desk of an online bookshop. Answer briefly.",
	})
	mux.Handle("POST /api/chat", chat)        // a complete answer as JSON
	mux.Handle("POST /api/chat/stream", chat) // the answer as JSON Lines
	return mux
}
