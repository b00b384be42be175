package keyless

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
)

// DefaultScope is the scope of tokens for Azure OpenAI (and the other Azure AI services):
// their audience is https://cognitiveservices.azure.com.
const DefaultScope = "https://cognitiveservices.azure.com/.default"

// CLITimeout bounds each run of the Azure Developer CLI or Azure CLI by the chain. A
// shorter deadline on the caller's context wins.
const CLITimeout = 60 * time.Second

// Names of the sources, as AZURE_TOKEN_CREDENTIALS and azidentity spell them.
const (
	workloadIdentitySource = "WorkloadIdentityCredential"
	managedIdentitySource  = "ManagedIdentityCredential"
	azdSource              = "AzureDeveloperCLICredential"
	azureCLISource         = "AzureCLICredential"
)

// Environment variables the chain reads.
const (
	envTokenCredentials   = "AZURE_TOKEN_CREDENTIALS"
	envClientID           = "AZURE_CLIENT_ID"
	envTenantID           = "AZURE_TENANT_ID"
	envFederatedTokenFile = "AZURE_FEDERATED_TOKEN_FILE"
	envAuthorityHost      = "AZURE_AUTHORITY_HOST"
	envIdentityEndpoint   = "IDENTITY_ENDPOINT"
	envIdentityHeader     = "IDENTITY_HEADER"
	envMSIEndpoint        = "MSI_ENDPOINT"
	envIMDSEndpoint       = "IMDS_ENDPOINT"
)

// managedIdentityProcessEnv lists the variables through which the Microsoft
// Authentication Library picks and calls a managed identity endpoint. It reads them
// from the process environment itself, at construction and at every token request.
var managedIdentityProcessEnv = []string{
	envIdentityEndpoint,
	envIdentityHeader,
	"IDENTITY_SERVER_THUMBPRINT",
	envMSIEndpoint,
	"MSI_SECRET",
	envIMDSEndpoint,
	"DEFAULT_IDENTITY_CLIENT_ID",
}

// CredentialOptions configures [NewCredential]. The zero value reads the process
// environment and uses azcore's default transport.
type CredentialOptions struct {
	// Getenv looks up an environment variable; it returns "" for a variable that is not
	// set. Nil means os.Getenv. Tests and demos inject a map here instead of changing the
	// process environment; see the package documentation for the one limit of that.
	Getenv func(string) string

	// ClientOptions configures the HTTP pipeline of the sources that call an endpoint
	// (workload identity and managed identity): transport, retries, logging. The
	// command-line sources ignore it.
	//
	// With ClientOptions.Retry left zero, the managed identity source retries a token
	// request to a platform endpoint (IDENTITY_ENDPOINT or MSI_ENDPOINT: App Service,
	// Container Apps, Functions, Cloud Shell) twice, about 0.2 s and 0.6 s after a
	// failure (408, 429, 5xx, or no answer), instead of azcore's three times over up to
	// about 9 s: a request waiting for a token learns within a second that the endpoint
	// is down. The token cache makes up for the shorter policy by refreshing tokens 5
	// minutes before they expire, and trying again on later calls when a refresh fails.
	// The instance metadata service of a virtual machine, and Azure Arc, keep
	// azidentity's own policy.
	ClientOptions azcore.ClientOptions

	// ManagedIdentity adds the managed identity source even where the host does not
	// advertise an endpoint, such as a virtual machine, where tokens come from the
	// instance metadata service. Setting AZURE_TOKEN_CREDENTIALS to
	// ManagedIdentityCredential does the same.
	ManagedIdentity bool

	// AzureCLI adds the Azure CLI source (az) after the Azure Developer CLI. Setting
	// AZURE_TOKEN_CREDENTIALS to AzureCLICredential selects it alone.
	AzureCLI bool
}

// selection is a set of sources, chosen by AZURE_TOKEN_CREDENTIALS.
type selection uint8

const (
	selWorkloadIdentity selection = 1 << iota
	selManagedIdentity
	selAzd
	selAzureCLI

	selAll  = selWorkloadIdentity | selManagedIdentity | selAzd | selAzureCLI
	selDev  = selAzd | selAzureCLI
	selProd = selWorkloadIdentity | selManagedIdentity
)

// parseTokenCredentials reads AZURE_TOKEN_CREDENTIALS the way azidentity's
// DefaultAzureCredential does: "dev" and "prod" exactly, a credential's name in any case.
// named is true when the value names a single credential.
func parseTokenCredentials(v string) (sel selection, named bool, err error) {
	switch {
	case v == "":
		return selAll, false, nil
	case v == "dev":
		return selDev, false, nil
	case v == "prod":
		return selProd, false, nil
	case strings.EqualFold(v, workloadIdentitySource):
		return selWorkloadIdentity, true, nil
	case strings.EqualFold(v, managedIdentitySource):
		return selManagedIdentity, true, nil
	case strings.EqualFold(v, azdSource):
		return selAzd, true, nil
	case strings.EqualFold(v, azureCLISource):
		return selAzureCLI, true, nil
	case strings.EqualFold(v, "EnvironmentCredential"),
		strings.EqualFold(v, "AzurePowerShellCredential"):
		return 0, false, fmt.Errorf("keyless: %s=%s selects a credential keyless does not offer; "+
			"use dev, prod, %s, %s, %s or %s", envTokenCredentials, v, workloadIdentitySource,
			managedIdentitySource, azdSource, azureCLISource)
	default:
		return 0, false, fmt.Errorf("keyless: %s=%q is not valid; use dev, prod, %s, %s, %s or %s",
			envTokenCredentials, v, workloadIdentitySource, managedIdentitySource, azdSource,
			azureCLISource)
	}
}

// NewCredential builds a credential chain from the sources the environment offers, in
// this order:
//
//   - workload identity, when AZURE_FEDERATED_TOKEN_FILE is set (AKS);
//   - managed identity, when the host advertises an endpoint (IDENTITY_ENDPOINT with
//     IDENTITY_HEADER, or MSI_ENDPOINT) or opts.ManagedIdentity is set; user-assigned
//     when AZURE_CLIENT_ID is set, system-assigned otherwise;
//   - the Azure Developer CLI (azd auth token), in the tenant AZURE_TENANT_ID when set,
//     each run bounded by [CLITimeout];
//   - the Azure CLI (az), when opts.AzureCLI is set.
//
// AZURE_TOKEN_CREDENTIALS narrows the list: "dev" keeps the command-line sources, "prod"
// the workload and managed identity sources, a credential's name (such as
// ManagedIdentityCredential) only that source.
//
// A source the environment does not offer is never constructed, so on a laptop nothing
// is sent to any managed identity or instance metadata endpoint. The first source to
// produce a token serves every later request; until one has, GetToken tries them all in
// order and returns a [*CredentialError] naming each.
//
// NewCredential returns a *CredentialError when the environment offers no source, and a
// plain error for a configuration that cannot work (an unknown AZURE_TOKEN_CREDENTIALS
// value, an invalid tenant ID, or an injected managed identity environment; see the
// package documentation). Pass nil opts to read the process environment.
//
// The chain does not cache tokens; the command-line sources run a process per call.
// Wrap it with [NewTokenProvider] or hand it to [NewClient], which do. Its String method
// names its sources (never a secret), for a start-up log line.
func NewCredential(opts *CredentialOptions) (azcore.TokenCredential, error) {
	if opts == nil {
		opts = &CredentialOptions{}
	}
	getenv := opts.Getenv
	if getenv == nil {
		getenv = os.Getenv
	}
	sel, named, err := parseTokenCredentials(getenv(envTokenCredentials))
	if err != nil {
		return nil, err
	}
	if !opts.AzureCLI && !named {
		sel &^= selAzureCLI
	}

	b := chainBuilder{opts: opts, getenv: getenv, sel: sel, named: named,
		selected: getenv(envTokenCredentials) != ""}
	if sel&selWorkloadIdentity != 0 {
		if err := b.addWorkloadIdentity(); err != nil {
			return nil, err
		}
	}
	if sel&selManagedIdentity != 0 {
		if err := b.addManagedIdentity(); err != nil {
			return nil, err
		}
	}
	if sel&selAzd != 0 {
		if err := b.addAzd(); err != nil {
			return nil, err
		}
	}
	if sel&selAzureCLI != 0 {
		if err := b.addAzureCLI(); err != nil {
			return nil, err
		}
	}

	if b.chain == nil || b.chain.sources == 0 {
		var skipped []SourceError
		if b.chain != nil {
			for _, e := range b.chain.entries {
				skipped = append(skipped, *e.skip)
			}
		}
		return nil, &CredentialError{Sources: skipped}
	}
	return b.chain, nil
}

type chainBuilder struct {
	opts   *CredentialOptions
	getenv func(string) string
	sel    selection
	named  bool // AZURE_TOKEN_CREDENTIALS names one source
	// selected is true when AZURE_TOKEN_CREDENTIALS is set.
	selected bool
	chain    *chain
}

func (b *chainBuilder) add(s *source) {
	if b.chain == nil {
		b.chain = &chain{}
	}
	b.chain.entries = append(b.chain.entries, entry{src: s})
	b.chain.sources++
}

func (b *chainBuilder) skip(name, reason, fix string) {
	if b.chain == nil {
		b.chain = &chain{}
	}
	b.chain.entries = append(b.chain.entries, entry{skip: &SourceError{
		Source:  name,
		Skipped: true,
		Err:     errors.New(reason),
		Fix:     fix,
	}})
}

func (b *chainBuilder) addWorkloadIdentity() error {
	file := b.getenv(envFederatedTokenFile)
	if file == "" {
		// Off AKS this is the normal case: mention it only when asked for explicitly.
		if b.selected {
			b.skip(workloadIdentitySource, envFederatedTokenFile+" is not set",
				"on AKS, enable workload identity for the pod (its webhook sets "+
					envFederatedTokenFile+", "+envClientID+" and "+envTenantID+")")
		}
		return nil
	}
	clientID, tenantID := b.getenv(envClientID), b.getenv(envTenantID)
	if clientID == "" || tenantID == "" {
		b.skip(workloadIdentitySource,
			envFederatedTokenFile+" is set but "+envClientID+" or "+envTenantID+" is not",
			"set "+envClientID+" and "+envTenantID+" for the workload identity, or check the "+
				"pod's azure.workload.identity/use label")
		return nil
	}

	o := &azidentity.WorkloadIdentityCredentialOptions{
		ClientOptions: b.opts.ClientOptions,
		ClientID:      clientID,
		TenantID:      tenantID,
		TokenFilePath: file,
	}
	// Resolve the authority host here, so azidentity need not read the process
	// environment for it.
	if o.Cloud.ActiveDirectoryAuthorityHost == "" && len(o.Cloud.Services) == 0 {
		o.Cloud.ActiveDirectoryAuthorityHost = cloud.AzurePublic.ActiveDirectoryAuthorityHost
		if host := b.getenv(envAuthorityHost); host != "" {
			o.Cloud.ActiveDirectoryAuthorityHost = host
		}
	}
	cred, err := azidentity.NewWorkloadIdentityCredential(o)
	if err != nil {
		return fmt.Errorf("keyless: workload identity: %w", err)
	}
	b.add(&source{
		name:   workloadIdentitySource,
		detail: "client ID " + clientID,
		cred:   cred,
		fix: func(error, []string) string {
			return "check the federated identity credential of client ID " + clientID +
				" and the pod's service account (azure.workload.identity/client-id annotation)"
		},
	})
	return nil
}

// managedIdentityAdvertised reports whether the host offers a managed identity endpoint
// the way the Microsoft Authentication Library detects one, and if not, why.
func managedIdentityAdvertised(getenv func(string) string) (bool, string) {
	endpoint, header := getenv(envIdentityEndpoint), getenv(envIdentityHeader)
	switch {
	case endpoint != "" && header != "":
		return true, "" // App Service, Container Apps, Functions, Service Fabric
	case getenv(envMSIEndpoint) != "":
		return true, "" // Cloud Shell, Azure ML
	case endpoint != "" && getenv(envIMDSEndpoint) != "":
		return true, "" // Azure Arc
	case endpoint != "":
		return false, envIdentityEndpoint + " is set but " + envIdentityHeader + " is not"
	default:
		return false, "the host advertises no managed identity (" + envIdentityEndpoint +
			" and " + envMSIEndpoint + " are not set)"
	}
}

func (b *chainBuilder) addManagedIdentity() error {
	advertised, why := managedIdentityAdvertised(b.getenv)
	forced := b.opts.ManagedIdentity || (b.named && b.sel == selManagedIdentity)
	if !advertised && !forced {
		b.skip(managedIdentitySource, why,
			"attach a managed identity to the app (the platform then sets "+envIdentityEndpoint+
				"); on a virtual machine set "+envTokenCredentials+"="+managedIdentitySource)
		return nil
	}
	if err := checkManagedIdentityEnv(b.opts.Getenv); err != nil {
		return err
	}

	o := &azidentity.ManagedIdentityCredentialOptions{ClientOptions: b.opts.ClientOptions}
	if advertised && b.getenv(envIMDSEndpoint) == "" && retryUnset(o.Retry) {
		o.Retry = platformIdentityRetry
	}
	clientID := b.getenv(envClientID)
	detail := "system-assigned"
	if clientID != "" {
		o.ID = azidentity.ClientID(clientID)
		detail = "user-assigned, client ID " + clientID
	}
	cred, err := azidentity.NewManagedIdentityCredential(o)
	if err != nil {
		return fmt.Errorf("keyless: managed identity: %w", err)
	}
	b.add(&source{
		name:   managedIdentitySource,
		detail: detail,
		cred:   cred,
		fix: func(error, []string) string {
			if clientID != "" {
				return "attach the user-assigned identity with client ID " + clientID +
					" to the app, or correct " + envClientID + " (azd env get-value " +
					envClientID + ")"
			}
			return "enable the app's system-assigned identity, or attach a user-assigned " +
				"identity and set " + envClientID + " to its client ID"
		},
	})
	return nil
}

// platformIdentityRetry is the retry policy of the managed identity source for a
// platform endpoint, unless the caller sets one (see CredentialOptions.ClientOptions).
var platformIdentityRetry = policy.RetryOptions{
	MaxRetries:    2,
	RetryDelay:    200 * time.Millisecond,
	MaxRetryDelay: time.Second,
}

// retryUnset reports whether o is the zero value: the caller chose no retry policy.
func retryUnset(o policy.RetryOptions) bool {
	return o.MaxRetries == 0 && o.TryTimeout == 0 && o.RetryDelay == 0 &&
		o.MaxRetryDelay == 0 && o.StatusCodes == nil && o.ShouldRetry == nil
}

// checkManagedIdentityEnv refuses an injected environment whose managed identity
// variables differ from the process environment's: azidentity (through MSAL) reads them
// only from the process environment, and with none there it would call the instance
// metadata service instead of the injected endpoint.
func checkManagedIdentityEnv(injected func(string) string) error {
	if injected == nil {
		return nil
	}
	var differ []string
	for _, name := range managedIdentityProcessEnv {
		if injected(name) != os.Getenv(name) {
			differ = append(differ, name)
		}
	}
	if len(differ) == 0 {
		return nil
	}
	return fmt.Errorf("keyless: managed identity: CredentialOptions.Getenv and the process "+
		"environment disagree on %s; azidentity reads these only from the process environment, "+
		"so set them there (os.Setenv) before NewCredential, or leave Getenv nil",
		strings.Join(differ, ", "))
}

func (b *chainBuilder) addAzd() error {
	tenantID := b.getenv(envTenantID)
	cred, err := azidentity.NewAzureDeveloperCLICredential(
		&azidentity.AzureDeveloperCLICredentialOptions{TenantID: tenantID})
	if err != nil {
		return fmt.Errorf("keyless: %s %q: %w", envTenantID, tenantID, err)
	}
	detail := ""
	login := "azd auth login"
	if tenantID != "" {
		detail = "tenant " + tenantID
		login += " --tenant-id " + tenantID
	}
	b.add(&source{
		name:   azdSource,
		detail: detail,
		cred:   &cliCredential{cred: cred, tool: "azd", timeout: CLITimeout},
		fix: func(err error, scopes []string) string {
			switch {
			case strings.Contains(err.Error(), "executable not found"):
				return "install the Azure Developer CLI (https://aka.ms/azd-install), then run: " +
					login
			case errors.As(err, new(*cliTimeoutError)):
				return "run azd auth token --output json --scope " + strings.Join(scopes, " ") +
					" to see why it does not answer"
			}
			return "run: " + login
		},
	})
	return nil
}

func (b *chainBuilder) addAzureCLI() error {
	tenantID := b.getenv(envTenantID)
	cred, err := azidentity.NewAzureCLICredential(
		&azidentity.AzureCLICredentialOptions{TenantID: tenantID})
	if err != nil {
		return fmt.Errorf("keyless: %s %q: %w", envTenantID, tenantID, err)
	}
	detail := ""
	login := "az login"
	if tenantID != "" {
		detail = "tenant " + tenantID
		login += " --tenant " + tenantID
	}
	b.add(&source{
		name:   azureCLISource,
		detail: detail,
		cred:   &cliCredential{cred: cred, tool: "az", timeout: CLITimeout},
		fix: func(err error, scopes []string) string {
			switch {
			case strings.Contains(err.Error(), "executable not found"):
				return "install the Azure CLI (https://aka.ms/installazurecli), then run: " + login
			case errors.As(err, new(*cliTimeoutError)):
				return "run az account get-access-token --scope " + strings.Join(scopes, " ") +
					" to see why it does not answer"
			}
			return "run: " + login
		},
	})
	return nil
}

// cliCredential bounds each run of a command-line credential. azidentity applies a
// 10 s default only when the context has no deadline; this gives the tool CLITimeout.
type cliCredential struct {
	cred    azcore.TokenCredential
	tool    string
	timeout time.Duration
}

func (c *cliCredential) GetToken(ctx context.Context, opts policy.TokenRequestOptions) (
	azcore.AccessToken, error) {
	tctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	tok, err := c.cred.GetToken(tctx, opts)
	if err != nil && ctx.Err() == nil && tctx.Err() != nil {
		err = &cliTimeoutError{tool: c.tool, timeout: c.timeout, err: err}
	}
	return tok, err
}

// cliTimeoutError reports a command-line tool that did not finish in time.
type cliTimeoutError struct {
	tool    string
	timeout time.Duration
	err     error
}

func (e *cliTimeoutError) Error() string {
	return fmt.Sprintf("%s did not finish within %s: %v", e.tool, e.timeout, e.err)
}

func (e *cliTimeoutError) Unwrap() []error { return []error{e.err, context.DeadlineExceeded} }

// source is one credential in the chain.
type source struct {
	name   string
	detail string // for String: which identity or tenant
	cred   azcore.TokenCredential
	fix    func(err error, scopes []string) string
}

func (s *source) failure(err error, scopes []string) SourceError {
	return SourceError{Source: s.name, Err: err, Fix: s.fix(err, scopes)}
}

// entry is a source of the chain, or a source the environment does not offer.
type entry struct {
	src  *source
	skip *SourceError
}

// chain is the credential NewCredential returns.
type chain struct {
	entries []entry
	sources int                    // entries with a src
	pinned  atomic.Pointer[source] // the first source that produced a token
}

// GetToken asks the source that served the last token or, before any has, each source in
// turn. Every failure is a *CredentialError. GetToken is safe for concurrent use; it
// does not cache tokens.
func (c *chain) GetToken(ctx context.Context, opts policy.TokenRequestOptions) (
	azcore.AccessToken, error) {
	if s := c.pinned.Load(); s != nil {
		tok, err := s.cred.GetToken(ctx, opts)
		if err != nil {
			return tok, &CredentialError{Sources: []SourceError{s.failure(err, opts.Scopes)}}
		}
		return tok, nil
	}

	failures := make([]SourceError, 0, len(c.entries))
	for _, e := range c.entries {
		if e.skip != nil {
			failures = append(failures, *e.skip)
			continue
		}
		if err := ctx.Err(); err != nil {
			failures = append(failures, SourceError{Source: e.src.name,
				Err: fmt.Errorf("not tried: %w", err), Fix: "allow more time for the token"})
			continue
		}
		tok, err := e.src.cred.GetToken(ctx, opts)
		if err == nil {
			c.pinned.CompareAndSwap(nil, e.src)
			return tok, nil
		}
		failures = append(failures, e.src.failure(err, opts.Scopes))
	}
	return azcore.AccessToken{}, &CredentialError{Sources: failures}
}

// String names the chain's sources in order, and the one in use once a source has
// produced a token. It never includes a token or secret.
func (c *chain) String() string {
	var b strings.Builder
	b.WriteString("keyless credential chain: ")
	n := 0
	for _, e := range c.entries {
		if e.src == nil {
			continue
		}
		if n > 0 {
			b.WriteString(", ")
		}
		n++
		b.WriteString(e.src.name)
		if e.src.detail != "" {
			b.WriteString(" (" + e.src.detail + ")")
		}
	}
	if s := c.pinned.Load(); s != nil {
		b.WriteString("; in use: " + s.name)
	}
	return b.String()
}
