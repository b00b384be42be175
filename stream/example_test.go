package stream_test

import (
	"context"
	"io"
	"iter"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"

	"github.com/aoaiblocks/securechat/keyless"
	"github.com/aoaiblocks/securechat/stream"
)

// Mount the chat endpoints into a mux the service already has. The model
// here is a stand-in that always says "Hello, world."; in production it is
// stream.NewAzureModel (see the next example).
func Example() {
	hi := stream.ModelFunc(func(context.Context, *stream.Request) iter.Seq2[stream.Delta, error] {
		return func(yield func(stream.Delta, error) bool) {
			_ = yield(stream.Delta{Content: "Hello, "}, nil) &&
				yield(stream.Delta{Content: "world."}, nil) &&
				yield(stream.Delta{FinishReason: "stop"}, nil)
		}
	})

	mux := http.NewServeMux() // the service's own mux, with its own routes
	mux.HandleFunc("GET /healthz", func(http.ResponseWriter, *http.Request) {})
	chat := stream.NewHandler(hi, &stream.Options{Logger: slog.New(slog.DiscardHandler)})
	mux.Handle("POST /chat", chat)
	mux.Handle("POST /chat/stream", chat)

	srv := httptest.NewServer(mux)
	defer srv.Close()
	resp, err := http.Post(srv.URL+"/chat/stream", "application/json",
		strings.NewReader(`{"messages":[{"role":"user","content":"Hi!"}]}`))
	if err != nil {
		log.Fatal(err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(os.Stdout, resp.Body)
	// Output:
	// {"delta":{"role":"assistant"}}
	// {"delta":{"content":"Hello, "}}
	// {"delta":{"content":"world."}}
	// {"delta":{},"context":{"finish_reason":"stop"}}
}

// Serve Azure OpenAI keylessly: the configuration azd provisions, the
// credential chain and the openai-go client come from package keyless.
func ExampleNewAzureModel() {
	cfg, err := keyless.LoadConfig(nil)
	if err != nil {
		log.Fatal(err) // says which variable is missing and how to get it
	}
	client, err := keyless.NewClient(cfg, nil)
	if err != nil {
		log.Fatal(err)
	}

	model := stream.NewAzureModel(client, cfg.Deployment, nil)
	chat := stream.NewHandler(model, &stream.Options{
		SystemPrompt: "You are a helpful assistant. Answer in at most three sentences.",
	})
	http.Handle("/chat", chat)
	http.Handle("/chat/stream", chat)
	log.Fatal(http.ListenAndServe(":8080", nil))
}
