// Package keyless calls Azure OpenAI without keys: Microsoft Entra ID tokens authorize
// every request, from the app's managed identity in Azure and from the developer's own
// sign-in (azd auth login) on a laptop, with no code change between the two.
//
// An app deployed with azd up needs three calls:
//
//	cfg, err := keyless.LoadConfig(&keyless.ConfigOptions{AzdEnv: true})
//	// handle err: it lists every missing or malformed variable
//	client, err := keyless.NewClient(cfg, nil)
//	// ...
//	resp, err := client.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{
//		Model:    openai.ChatModel(cfg.Deployment),
//		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Hello")},
//	})
//
// Make the client once, at start-up, and share it: it holds the token cache.
//
// # Credentials
//
// [NewCredential] builds a chain of credential sources from what the host offers,
// asking each in turn until one produces a token, then keeping to that one:
//
//	source                       used when
//	WorkloadIdentityCredential   AZURE_FEDERATED_TOKEN_FILE is set (AKS workload identity)
//	ManagedIdentityCredential    IDENTITY_ENDPOINT and IDENTITY_HEADER, or MSI_ENDPOINT, are
//	                             set (Container Apps, App Service, Functions, Cloud Shell),
//	                             or CredentialOptions.ManagedIdentity is set (a VM)
//	AzureDeveloperCLICredential  always: azd auth token, in AZURE_TENANT_ID if set
//	AzureCLICredential           CredentialOptions.AzureCLI is set: az account get-access-token
//
// The managed identity is the user-assigned one whose client ID is AZURE_CLIENT_ID, or
// the system-assigned one when that is unset. A source the host does not offer is not
// even constructed: on a laptop the chain sends nothing to any managed identity endpoint
// or to the instance metadata service, so start-up has no probe delay, and the first
// token comes from azd.
//
// AZURE_TOKEN_CREDENTIALS narrows the chain as it does for azidentity's
// DefaultAzureCredential:
//
//	dev                          the command-line sources only
//	prod                         workload identity and managed identity only
//	ManagedIdentityCredential    (or another source's name, in any case) that source only;
//	                             for ManagedIdentityCredential, even with no endpoint
//	                             advertised, that is on a VM
//
// Set prod in Azure, so that a missing identity fails at start-up with a clear error
// rather than falling through to developer tools that are not there.
//
// # When no source works
//
// Every failure of the chain is a [*CredentialError]. It names each source considered,
// why it failed or was skipped, and the fix, for example:
//
//	keyless: no credential source produced a token
//		ManagedIdentityCredential skipped: the host advertises no managed identity (...)
//			fix: attach a managed identity to the app (...)
//		AzureDeveloperCLICredential failed: not logged in, run `azd auth login` to login. ...
//			fix: run: azd auth login --tenant-id 72f988bf-...
//
// Find it with [errors.As], including in the errors that openai-go calls return, to
// answer "credential unavailable" (HTTP 503) instead of a generic failure.
//
// # Tokens
//
// [NewTokenProvider] turns a credential into a func(ctx) (string, error) for HTTP
// clients that are not Azure SDK clients. Tokens are cached until shortly before they
// expire and refreshed in the background; concurrent callers share one token request.
// [NewClient] uses the same cache. The chain itself caches nothing, and azd runs a
// process for every token: always put a provider or a client in front of it.
//
// # Configuration
//
// [LoadConfig] reads the variables azd provisions (AZURE_OPENAI_ENDPOINT,
// AZURE_OPENAI_CHAT_DEPLOYMENT or its older name AZURE_OPENAI_CHATGPT_DEPLOYMENT,
// AZURE_OPENAI_API_VERSION, AZURE_CLIENT_ID, AZURE_TENANT_ID) from the environment and,
// with ConfigOptions.AzdEnv, from the current azd environment's .azure/<name>/.env, so
// that go run works right after azd up. The environment wins over the file. Validation
// reports every problem at once, each with the command that shows the value (azd env
// get-value NAME).
//
// # The client
//
// [NewClient] returns an openai-go client for the v1 API (<endpoint>/openai/v1/, the
// deployment name as the model), or for the dated deployments API when
// AZURE_OPENAI_API_VERSION is a date. It sends only the Entra token: it ignores the
// OPENAI_* variables that openai.NewClient reads (base URL, key, organization, project,
// custom headers), and attaches the token only to requests for the configured endpoint.
//
// # Testing
//
// Everything that reads the environment or the network can be redirected:
// CredentialOptions.Getenv and ConfigOptions.Getenv take the environment as a function,
// CredentialOptions.ClientOptions.Transport carries the credentials' HTTP requests, and
// ClientOptions.HTTPClient the client's. The package
// github.com/aoaiblocks/securechat/aoaitest provides local stand-ins for Azure OpenAI,
// the managed identity endpoint and azd, and a guard that keeps a test on loopback.
package keyless

// BUG(keyless): The managed identity source cannot be fed through
// CredentialOptions.Getenv alone. azidentity's ManagedIdentityCredential (through the
// Microsoft Authentication Library) reads IDENTITY_ENDPOINT, IDENTITY_HEADER,
// MSI_ENDPOINT and their kin from the process environment, when it is built and at
// every token request, and without them it asks the instance metadata service. So
// NewCredential refuses an injected environment whose managed identity variables differ
// from the process environment's. A program that starts its own identity endpoint, such
// as a demo with aoaitest.Identity, must set those variables with os.Setenv before
// calling NewCredential. azidentity also reads AZURE_REGIONAL_AUTHORITY_NAME for
// workload identity from the process environment only.
