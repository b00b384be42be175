package app_test

import (
	"context"
	"fmt"
	"iter"
	"net/http/httptest"
	"strings"

	"github.com/aoaiblocks/securechat/chatproto"
	"github.com/aoaiblocks/securechat/examples/chatapp/app"
	"github.com/aoaiblocks/securechat/stream"
)

// The app serves any stream.Model; here one that echoes the question, so the
// example needs no Azure and no stand-ins. Without Model, New builds the
// keyless Azure OpenAI model from Options.Config.
func ExampleNew() {
	echo := stream.ModelFunc(func(ctx context.Context, req *stream.Request) iter.Seq2[
		stream.Delta, error] {
		return func(yield func(stream.Delta, error) bool) {
			last := req.Messages[len(req.Messages)-1].Content
			if yield(stream.Delta{Content: "You said: "}, nil) {
				yield(stream.Delta{Content: last, FinishReason: "stop"}, nil)
			}
		}
	})
	a, err := app.New(app.Options{Model: echo})
	if err != nil {
		panic(err)
	}
	srv := httptest.NewServer(a)
	defer srv.Close()

	client := chatproto.NewClient(srv.URL+"/chat", nil)
	var answer strings.Builder
	for d, err := range client.Stream(context.Background(), &chatproto.Request{
		Messages: []chatproto.Message{{Role: chatproto.RoleUser, Content: "hello"}},
	}) {
		if err != nil {
			panic(err)
		}
		answer.WriteString(d.Delta.Content)
	}
	fmt.Println(answer.String())
	// Output: You said: hello
}
