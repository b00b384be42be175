package keyless_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"net/http"
	"os"
	"strings"

	"github.com/openai/openai-go/v3"

	"github.com/aoaiblocks/securechat/aoaitest"
	"github.com/aoaiblocks/securechat/keyless"
)

// The examples inject their environment through Getenv, so that they run the same on
// any machine. They contact nothing but the aoaitest stand-ins on loopback.

// A laptop: no managed identity is advertised, so the chain holds the Azure Developer
// CLI alone and start-up sends nothing anywhere.
func ExampleNewCredential() {
	env := map[string]string{"AZURE_TENANT_ID": "contoso.onmicrosoft.com"}
	cred, err := keyless.NewCredential(&keyless.CredentialOptions{
		Getenv: func(name string) string { return env[name] },
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(cred)
	// Output:
	// keyless credential chain: AzureDeveloperCLICredential (tenant contoso.onmicrosoft.com)
}

// AZURE_TOKEN_CREDENTIALS=prod on a host without a managed identity: the error says
// what was looked for and what to do.
func ExampleCredentialError() {
	env := map[string]string{"AZURE_TOKEN_CREDENTIALS": "prod"}
	_, err := keyless.NewCredential(&keyless.CredentialOptions{
		Getenv: func(name string) string { return env[name] },
	})
	var ce *keyless.CredentialError
	if errors.As(err, &ce) {
		for _, s := range ce.Sources {
			fmt.Println(s.Source, "skipped:")
			fmt.Println(" ", s.Err)
		}
	}
	// Output:
	// WorkloadIdentityCredential skipped:
	//   AZURE_FEDERATED_TOKEN_FILE is not set
	// ManagedIdentityCredential skipped:
	//   the host advertises no managed identity (IDENTITY_ENDPOINT and MSI_ENDPOINT are not set)
}

// Nothing configured: every problem is reported at once, each with where to find the
// value.
func ExampleLoadConfig() {
	_, err := keyless.LoadConfig(&keyless.ConfigOptions{
		Getenv: func(string) string { return "" },
	})
	fmt.Println(err)
	// Output:
	// keyless: 2 configuration problems:
	// 	AZURE_OPENAI_ENDPOINT is not set (azd env get-value AZURE_OPENAI_ENDPOINT)
	// 	AZURE_OPENAI_CHAT_DEPLOYMENT is not set (azd env get-value AZURE_OPENAI_CHAT_DEPLOYMENT)
}

// The client from the environment of a Container App, played here by the aoaitest
// stand-ins for Azure OpenAI and for the platform's managed identity endpoint.
func ExampleNewClient() {
	srv := aoaitest.NewAzureOpenAI()
	defer srv.Close()
	id := aoaitest.NewIdentity()
	defer id.Close()

	// What azd's infrastructure and the platform set for the app.
	env := map[string]string{
		"AZURE_OPENAI_ENDPOINT":        srv.URL,
		"AZURE_OPENAI_CHAT_DEPLOYMENT": "chat",
		"AZURE_TOKEN_CREDENTIALS":      "prod",
	}
	for k, v := range id.Env() {
		env[k] = v
	}
	getenv := func(name string) string { return env[name] }
	// azidentity reads the managed identity endpoint from the process environment.
	defer setenv(id.Env())()

	cfg, err := keyless.LoadConfig(&keyless.ConfigOptions{Getenv: getenv})
	if err != nil {
		log.Fatal(err)
	}
	client, err := keyless.NewClient(cfg, &keyless.ClientOptions{
		HTTPClient:        srv.Client(), // trusts the stand-in's certificate
		CredentialOptions: &keyless.CredentialOptions{Getenv: getenv},
	})
	if err != nil {
		log.Fatal(err)
	}

	resp, err := client.Chat.Completions.New(context.Background(),
		openai.ChatCompletionNewParams{
			Model:    openai.ChatModel(cfg.Deployment),
			Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Hello")},
		})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(resp.Choices[0].Message.Content)
	// Output: You said: "Hello"
}

// A token provider authorizing a plain net/http request.
func ExampleNewTokenProvider() {
	srv := aoaitest.NewAzureOpenAI()
	defer srv.Close()
	id := aoaitest.NewIdentity()
	defer id.Close()
	defer setenv(id.Env())() // as the platform does
	env := map[string]string{"AZURE_TOKEN_CREDENTIALS": "prod"}
	for k, v := range id.Env() {
		env[k] = v
	}

	cred, err := keyless.NewCredential(&keyless.CredentialOptions{
		Getenv: func(name string) string { return env[name] },
	})
	if err != nil {
		log.Fatal(err)
	}
	token := keyless.NewTokenProvider(cred, "") // "" means keyless.DefaultScope

	ctx := context.Background()
	body := `{"model":"chat","messages":[{"role":"user","content":"Hello"}]}`
	req, err := http.NewRequestWithContext(ctx, http.MethodPost,
		srv.URL+"/openai/v1/chat/completions", strings.NewReader(body))
	if err != nil {
		log.Fatal(err)
	}
	tok, err := token(ctx)
	if err != nil {
		log.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", "application/json")

	resp, err := srv.Client().Do(req)
	if err != nil {
		log.Fatal(err)
	}
	defer resp.Body.Close()
	var answer struct {
		Choices []struct {
			Message struct{ Content string }
		}
	}
	if err := json.NewDecoder(resp.Body).Decode(&answer); err != nil {
		log.Fatal(err)
	}
	fmt.Println(resp.Status)
	fmt.Println(answer.Choices[0].Message.Content)
	// Output:
	// 200 OK
	// You said: "Hello"
}

// setenv sets the variables in the process environment and returns a function that
// restores it.
func setenv(vars map[string]string) (restore func()) {
	old := map[string]*string{}
	for k, v := range vars {
		if prev, ok := os.LookupEnv(k); ok {
			old[k] = &prev
		} else {
			old[k] = nil
		}
		os.Setenv(k, v)
	}
	return func() {
		for k, v := range old {
			if v == nil {
				os.Unsetenv(k)
			} else {
				os.Setenv(k, *v)
			}
		}
	}
}
