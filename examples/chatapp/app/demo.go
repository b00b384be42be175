package app

import (
	"fmt"
	"os"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/aoaiblocks/securechat/aoaitest"
	"github.com/aoaiblocks/securechat/keyless"
)

// DefaultDemoPace is the delay between the words of a demo answer: about
// the pace of a real model, slow enough to watch the answer stream in.
const DefaultDemoPace = 45 * time.Millisecond

// demoDeployment is the deployment name the demo's configuration uses.
const demoDeployment = "demo-chat"

// Demo is the app's demo mode: stand-ins for the managed identity endpoint
// and Azure OpenAI, running in this process on loopback. The app reaches
// them through the same code it uses in Azure: the keyless credential chain
// finds the managed identity endpoint the way it does in Container Apps,
// azidentity gets a token from it, and the openai-go client sends the token
// to the Azure OpenAI stand-in over TLS.
//
// The configuration and the chain read an injected environment (see
// Options), so AZURE_* variables of the developer's shell play no part. One
// thing cannot be injected: azidentity's managed identity credential, through
// the Microsoft Authentication Library, reads IDENTITY_ENDPOINT and
// IDENTITY_HEADER from the process environment only, and keyless refuses an
// injected environment that disagrees with it. So before New, the process
// environment must hold the stand-in's values: a program of its own calls
// SetProcessEnv, a test calls d.Identity.Setenv(t).
type Demo struct {
	// Identity is the managed identity stand-in.
	Identity *aoaitest.Identity
	// AzureOpenAI is the Azure OpenAI stand-in; its Script writes the demo's
	// answers.
	AzureOpenAI *aoaitest.AzureOpenAI
	// Config points at AzureOpenAI with the user-assigned identity of
	// Identity.
	Config keyless.Config
}

// StartDemo starts the stand-ins. Answers stream one word every pace; zero
// means DefaultDemoPace. Call Close when done.
func StartDemo(pace time.Duration) (*Demo, error) {
	if pace <= 0 {
		pace = DefaultDemoPace
	}
	id := aoaitest.NewIdentity()
	aoai := aoaitest.NewAzureOpenAI()
	aoai.Script = func(req *aoaitest.ChatRequest) aoaitest.Reply {
		return DemoReply(req, pace)
	}

	cfg, err := keyless.LoadConfig(&keyless.ConfigOptions{Getenv: demoEnv(id, aoai.URL)})
	if err == nil {
		err = cfg.Validate()
	}
	if err != nil {
		aoai.Close()
		id.Close()
		return nil, fmt.Errorf("app: demo configuration: %w", err)
	}
	return &Demo{Identity: id, AzureOpenAI: aoai, Config: cfg}, nil
}

// managedIdentityVars are the variables through which the Microsoft
// Authentication Library picks a managed identity endpoint, besides
// IDENTITY_ENDPOINT and IDENTITY_HEADER.
var managedIdentityVars = []string{
	"MSI_ENDPOINT", "MSI_SECRET", "IDENTITY_SERVER_THUMBPRINT", "IMDS_ENDPOINT",
	"DEFAULT_IDENTITY_CLIENT_ID",
}

// SetProcessEnv points the process's managed identity variables at the
// Identity stand-in: it sets IDENTITY_ENDPOINT and IDENTITY_HEADER and unsets
// the variables that would select another managed identity endpoint. It
// changes this process's environment only (and that of any child it starts
// later); call it from a program's main, never from a test (use
// d.Identity.Setenv(t) there) or a library.
func (d *Demo) SetProcessEnv() error {
	for _, k := range managedIdentityVars {
		if err := os.Unsetenv(k); err != nil {
			return fmt.Errorf("app: demo environment: %w", err)
		}
	}
	for _, k := range []string{"IDENTITY_ENDPOINT", "IDENTITY_HEADER"} {
		if err := os.Setenv(k, d.Identity.Env()[k]); err != nil {
			return fmt.Errorf("app: demo environment: %w", err)
		}
	}
	return nil
}

// demoEnv is the environment the demo's configuration and credential chain
// see: what Azure Container Apps would set for an app with a user-assigned
// identity, pointing at the stand-ins.
func demoEnv(id *aoaitest.Identity, endpoint string) func(string) string {
	env := map[string]string{
		"AZURE_OPENAI_ENDPOINT":        endpoint,
		"AZURE_OPENAI_CHAT_DEPLOYMENT": demoDeployment,
		// Only the managed identity source: the demo never runs the
		// developer's azd, so no real token can reach the stand-ins.
		"AZURE_TOKEN_CREDENTIALS": "ManagedIdentityCredential",
	}
	for k, v := range id.Env() {
		env[k] = v
	}
	return func(name string) string { return env[name] }
}

// Options returns base with what the app needs to use the stand-ins: their
// configuration, the injected environment for the credential chain, an HTTP
// client that trusts the Azure OpenAI stand-in's certificate, and Demo set.
func (d *Demo) Options(base Options) Options {
	base.Config = d.Config
	base.Getenv = demoEnv(d.Identity, d.AzureOpenAI.URL)
	base.HTTPClient = d.AzureOpenAI.Client()
	base.Demo = true
	return base
}

// Close stops the stand-ins.
func (d *Demo) Close() {
	d.AzureOpenAI.Close()
	d.Identity.Close()
}

// maxQuoted is how many characters of the question a demo answer quotes.
const maxQuoted = 280

// DemoReply is the demo's answer to req: it quotes the question and says
// what the request went through on its way, streamed one word every pace.
func DemoReply(req *aoaitest.ChatRequest, pace time.Duration) aoaitest.Reply {
	question, turns := "", 0
	for _, m := range req.Messages {
		if m.Role == "user" {
			question = m.Content
			turns++
		}
	}
	question = strings.Join(strings.Fields(question), " ")
	if utf8.RuneCountInString(question) > maxQuoted {
		question = string([]rune(question)[:maxQuoted]) + "…"
	}

	var b strings.Builder
	b.WriteString("This answer is **simulated**: securechat is running in demo mode, " +
		"so no model wrote it.\n\n")
	if question == "" {
		b.WriteString("Your message was empty.\n\n")
	} else {
		fmt.Fprintf(&b, "You asked:\n\n> %s\n\n", escapeMarkdown(question))
	}
	b.WriteString("Here is what that question just went through, " +
		"the same way it would in Azure:\n\n")
	b.WriteString("1. **Keyless token.** The app's credential chain found a managed " +
		"identity endpoint (a local stand-in of the one Azure Container Apps " +
		"provides) and got a Microsoft Entra ID token for Azure OpenAI from it. " +
		"No API key exists anywhere in this app.\n")
	fmt.Fprintf(&b, "2. **Azure OpenAI.** The official openai-go client sent the "+
		"conversation (%s) to a local stand-in of Azure OpenAI over TLS, with the "+
		"token as its bearer credential, and streamed this answer back.\n",
		plural(turns, "user turn"))
	// The stand-in sees the upstream request, which is the same for both
	// routes, so this step names both rather than guess which was used.
	b.WriteString("3. **AI Chat Protocol.** The conversation came to this app as an " +
		"AI Chat Protocol request. Posted to `/chat/stream`, as the page does, the " +
		"answer comes back as JSON Lines, one line per piece as it arrives, and " +
		"cancelling it (the page's Stop button) stops the upstream call too. " +
		"Posted to `/chat`, it comes back whole, as one JSON object.\n\n")
	b.WriteString("To get real answers, run `azd up` (or point " +
		"`AZURE_OPENAI_ENDPOINT` and `AZURE_OPENAI_CHAT_DEPLOYMENT` at your own " +
		"deployment and run `azd auth login`), then start the app without `-demo`.")

	r := aoaitest.Text(b.String())
	r.FirstDelay = 4 * pace
	r.ChunkDelay = pace
	return r
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

// escapeMarkdown makes the quoted question render as the text the user
// typed: markdown and HTML characters are escaped with a backslash.
func escapeMarkdown(s string) string {
	var b strings.Builder
	for _, c := range s {
		if strings.ContainsRune("\\`*_{}[]()<>#+-.!|~&", c) {
			b.WriteByte('\\')
		}
		b.WriteRune(c)
	}
	return b.String()
}
