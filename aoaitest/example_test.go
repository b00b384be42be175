package aoaitest_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/azure"
	"github.com/openai/openai-go/v3/option"

	"github.com/aoaiblocks/securechat/aoaitest"
)

// A keyless round trip: the managed identity endpoint issues a token to azidentity,
// openai-go sends it to the Azure OpenAI stand-in, which checks it and answers.
// (In a test, call aoaitest.Guard(t) first and use id.Setenv(t).)
func Example() {
	id, srv := aoaitest.NewIdentity(), aoaitest.NewAzureOpenAI()
	defer id.Close()
	defer srv.Close()
	os.Setenv("IDENTITY_ENDPOINT", id.URL) // what App Service and Container Apps set
	os.Setenv("IDENTITY_HEADER", id.Secret)
	defer os.Unsetenv("IDENTITY_ENDPOINT")
	defer os.Unsetenv("IDENTITY_HEADER")

	cred, _ := azidentity.NewManagedIdentityCredential(
		&azidentity.ManagedIdentityCredentialOptions{ID: azidentity.ClientID(id.ClientID)})
	client := openai.NewClient(azure.WithEndpoint(srv.URL, "2024-10-21"),
		azure.WithTokenCredential(cred), option.WithHTTPClient(srv.Client()))
	res, err := client.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{
		Model:    "chat", // the deployment
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Hello")},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(res.Choices[0].Message.Content)
	fmt.Println(srv.Requests()[0].Principal == id.PrincipalID)
	// Output:
	// You said: "Hello"
	// true
}

// A script answers each request; this one throttles non-streamed requests.
func ExampleAzureOpenAI_Script() {
	id, srv := aoaitest.NewIdentity(), aoaitest.NewAzureOpenAI()
	defer id.Close()
	defer srv.Close()
	srv.Script = func(r *aoaitest.ChatRequest) aoaitest.Reply {
		if !r.Stream {
			return aoaitest.Reply{Status: 429, RetryAfter: 2 * time.Second}
		}
		return aoaitest.Text("Hello from " + r.Deployment)
	}

	token := id.Token(id.PrincipalID, time.Hour) // or a credential, as in the package example
	client := openai.NewClient(option.WithBaseURL(srv.URL+"/openai/v1/"),
		option.WithHTTPClient(srv.Client()), option.WithMaxRetries(0),
		option.WithHeader("Authorization", "Bearer "+token))
	_, err := client.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{
		Model:    "chat",
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Hi")},
	})
	var apiErr *openai.Error
	if errors.As(err, &apiErr) {
		fmt.Println(apiErr.StatusCode, apiErr.Code, apiErr.Response.Header.Get("Retry-After"))
	}
	// Output: 429 429 2
}

func ExampleText() {
	fmt.Printf("%q\n", aoaitest.Text("Hello from  chat").Deltas)
	// Output: ["Hello" " from" "  chat"]
}
