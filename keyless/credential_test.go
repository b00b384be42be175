package keyless_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strings"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"

	"github.com/aoaiblocks/securechat/aoaitest"
	"github.com/aoaiblocks/securechat/keyless"
)

// Values for environments in which nothing is called.
const (
	someEndpoint = "http://127.0.0.1:9/msi/token"
	someClientID = "11111111-2222-3333-4444-555555555555"
	someTenantID = "contoso.onmicrosoft.com"
)

// lookup returns a Getenv for the variables in m.
func lookup(m map[string]string) func(string) string {
	return func(name string) string { return m[name] }
}

// String names the sources of a chain.
func sources(t *testing.T, cred azcore.TokenCredential) string {
	t.Helper()
	s, ok := cred.(fmt.Stringer)
	if !ok {
		t.Fatalf("%T is not a fmt.Stringer", cred)
	}
	return strings.TrimPrefix(s.String(), "keyless credential chain: ")
}

func TestNewCredentialPicksSourcesFromEnvironment(t *testing.T) {
	containerApps := map[string]string{
		"IDENTITY_ENDPOINT": someEndpoint,
		"IDENTITY_HEADER":   "secret",
		"AZURE_CLIENT_ID":   someClientID,
	}
	with := func(m map[string]string, k, v string) map[string]string {
		m = maps.Clone(m)
		m[k] = v
		return m
	}
	tests := []struct {
		name string
		env  map[string]string
		opts keyless.CredentialOptions
		want string
	}{
		{"laptop", nil, keyless.CredentialOptions{}, "AzureDeveloperCLICredential"},
		{"laptop with tenant", map[string]string{"AZURE_TENANT_ID": someTenantID},
			keyless.CredentialOptions{},
			"AzureDeveloperCLICredential (tenant " + someTenantID + ")"},
		{"laptop with Azure CLI", nil, keyless.CredentialOptions{AzureCLI: true},
			"AzureDeveloperCLICredential, AzureCLICredential"},
		{"Container Apps, user-assigned", containerApps, keyless.CredentialOptions{},
			"ManagedIdentityCredential (user-assigned, client ID " + someClientID +
				"), AzureDeveloperCLICredential"},
		{"App Service, system-assigned",
			map[string]string{"IDENTITY_ENDPOINT": someEndpoint, "IDENTITY_HEADER": "secret"},
			keyless.CredentialOptions{},
			"ManagedIdentityCredential (system-assigned), AzureDeveloperCLICredential"},
		{"Cloud Shell", map[string]string{"MSI_ENDPOINT": someEndpoint},
			keyless.CredentialOptions{},
			"ManagedIdentityCredential (system-assigned), AzureDeveloperCLICredential"},
		{"endpoint without its header", map[string]string{"IDENTITY_ENDPOINT": someEndpoint},
			keyless.CredentialOptions{}, "AzureDeveloperCLICredential"},
		{"AKS workload identity", map[string]string{
			"AZURE_FEDERATED_TOKEN_FILE": "/var/run/secrets/token",
			"AZURE_CLIENT_ID":            someClientID,
			"AZURE_TENANT_ID":            someTenantID,
		}, keyless.CredentialOptions{},
			"WorkloadIdentityCredential (client ID " + someClientID +
				"), AzureDeveloperCLICredential (tenant " + someTenantID + ")"},
		{"virtual machine, forced by option", nil,
			keyless.CredentialOptions{ManagedIdentity: true},
			"ManagedIdentityCredential (system-assigned), AzureDeveloperCLICredential"},
		{"prod on Container Apps", with(containerApps, "AZURE_TOKEN_CREDENTIALS", "prod"),
			keyless.CredentialOptions{},
			"ManagedIdentityCredential (user-assigned, client ID " + someClientID + ")"},
		{"dev on Container Apps", with(containerApps, "AZURE_TOKEN_CREDENTIALS", "dev"),
			keyless.CredentialOptions{}, "AzureDeveloperCLICredential"},
		{"dev with Azure CLI", map[string]string{"AZURE_TOKEN_CREDENTIALS": "dev"},
			keyless.CredentialOptions{AzureCLI: true},
			"AzureDeveloperCLICredential, AzureCLICredential"},
		{"virtual machine, named",
			map[string]string{"AZURE_TOKEN_CREDENTIALS": "ManagedIdentityCredential"},
			keyless.CredentialOptions{}, "ManagedIdentityCredential (system-assigned)"},
		{"named in any case",
			map[string]string{"AZURE_TOKEN_CREDENTIALS": "azuredeveloperclicredential"},
			keyless.CredentialOptions{}, "AzureDeveloperCLICredential"},
		{"Azure CLI named", map[string]string{"AZURE_TOKEN_CREDENTIALS": "AzureCLICredential"},
			keyless.CredentialOptions{}, "AzureCLICredential"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hc := aoaitest.Guard(t)
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			opts := tt.opts
			opts.ClientOptions.Transport = hc
			cred, err := keyless.NewCredential(&opts)
			if err != nil {
				t.Fatalf("NewCredential: %v", err)
			}
			if got := sources(t, cred); got != tt.want {
				t.Errorf("sources:\n got %s\nwant %s", got, tt.want)
			}
		})
	}
}

func TestNewCredentialRejectsEnvironmentThatCannotWork(t *testing.T) {
	valid := "dev, prod, WorkloadIdentityCredential, ManagedIdentityCredential, " +
		"AzureDeveloperCLICredential or AzureCLICredential"
	tests := []struct {
		name            string
		env             map[string]string
		credentialError bool
		want            string
	}{
		{"unknown selection", map[string]string{"AZURE_TOKEN_CREDENTIALS": "production"}, false,
			`keyless: AZURE_TOKEN_CREDENTIALS="production" is not valid; use ` + valid},
		{"dev is lower case", map[string]string{"AZURE_TOKEN_CREDENTIALS": "DEV"}, false,
			`keyless: AZURE_TOKEN_CREDENTIALS="DEV" is not valid; use ` + valid},
		{"a credential keyless does not offer",
			map[string]string{"AZURE_TOKEN_CREDENTIALS": "EnvironmentCredential"}, false,
			"keyless: AZURE_TOKEN_CREDENTIALS=EnvironmentCredential selects a credential " +
				"keyless does not offer; use " + valid},
		{"invalid tenant", map[string]string{"AZURE_TENANT_ID": "no such tenant"}, false,
			`keyless: AZURE_TENANT_ID "no such tenant": invalid tenantID. You can locate your ` +
				"tenantID by following the instructions listed here: " +
				"https://learn.microsoft.com/partner-center/find-ids-and-domain-names"},
		{"workload identity named but absent",
			map[string]string{"AZURE_TOKEN_CREDENTIALS": "WorkloadIdentityCredential"}, true,
			"keyless: no credential source is available in this environment\n" +
				"\tWorkloadIdentityCredential skipped: AZURE_FEDERATED_TOKEN_FILE is not set\n" +
				"\t\tfix: on AKS, enable workload identity for the pod (its webhook sets " +
				"AZURE_FEDERATED_TOKEN_FILE, AZURE_CLIENT_ID and AZURE_TENANT_ID)"},
		{"workload identity incomplete", map[string]string{
			"AZURE_TOKEN_CREDENTIALS":    "prod",
			"AZURE_FEDERATED_TOKEN_FILE": "/var/run/secrets/token",
			"IDENTITY_ENDPOINT":          someEndpoint,
		}, true,
			"keyless: no credential source is available in this environment\n" +
				"\tWorkloadIdentityCredential skipped: AZURE_FEDERATED_TOKEN_FILE is set but " +
				"AZURE_CLIENT_ID or AZURE_TENANT_ID is not\n" +
				"\t\tfix: set AZURE_CLIENT_ID and AZURE_TENANT_ID for the workload identity, " +
				"or check the pod's azure.workload.identity/use label\n" +
				"\tManagedIdentityCredential skipped: IDENTITY_ENDPOINT is set but " +
				"IDENTITY_HEADER is not\n" +
				"\t\tfix: attach a managed identity to the app (the platform then sets " +
				"IDENTITY_ENDPOINT); on a virtual machine set " +
				"AZURE_TOKEN_CREDENTIALS=ManagedIdentityCredential"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hc := aoaitest.Guard(t)
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			cred, err := keyless.NewCredential(&keyless.CredentialOptions{
				ClientOptions: azcore.ClientOptions{Transport: hc},
			})
			if err == nil {
				t.Fatalf("NewCredential = %s, want an error", sources(t, cred))
			}
			if got := err.Error(); got != tt.want {
				t.Errorf("error:\n%s\nwant:\n%s", got, tt.want)
			}
			var ce *keyless.CredentialError
			if errors.As(err, &ce) != tt.credentialError {
				t.Errorf("errors.As(*CredentialError) = %v, want %v", !tt.credentialError,
					tt.credentialError)
			}
		})
	}
}

func TestNewCredentialReadsInjectedEnvironment(t *testing.T) {
	hc := aoaitest.Guard(t)
	t.Setenv("AZURE_TOKEN_CREDENTIALS", "prod") // the process says prod; Getenv wins
	cred, err := keyless.NewCredential(&keyless.CredentialOptions{
		Getenv:        lookup(map[string]string{"AZURE_TENANT_ID": someTenantID}),
		ClientOptions: azcore.ClientOptions{Transport: hc},
	})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := sources(t, cred),
		"AzureDeveloperCLICredential (tenant "+someTenantID+")"; got != want {
		t.Errorf("sources = %s, want %s", got, want)
	}
}

// The managed identity source reads IDENTITY_ENDPOINT and its kin from the process
// environment (azidentity through MSAL), so an injected environment that the process
// environment does not match must be refused: with none there MSAL would ask the
// instance metadata service instead.
func TestNewCredentialRefusesInjectedManagedIdentityTheProcessLacks(t *testing.T) {
	hc := aoaitest.Guard(t)
	id := newIdentity(t)
	counter := &countingTransport{base: hc}

	_, err := keyless.NewCredential(&keyless.CredentialOptions{
		Getenv:        lookup(id.Env()),
		ClientOptions: azcore.ClientOptions{Transport: counter},
	})
	want := "keyless: managed identity: CredentialOptions.Getenv and the process environment " +
		"disagree on IDENTITY_ENDPOINT, IDENTITY_HEADER; azidentity reads these only from " +
		"the process environment, so set them there (os.Setenv) before NewCredential, or " +
		"leave Getenv nil"
	if err == nil || err.Error() != want {
		t.Errorf("error:\n%v\nwant:\n%s", err, want)
	}
	if id.Calls() != 0 || counter.n.Load() != 0 {
		t.Errorf("requests: identity %d, pipeline %d; want none", id.Calls(), counter.n.Load())
	}
}

func TestNewCredentialUsesInjectedManagedIdentityTheProcessShares(t *testing.T) {
	hc := aoaitest.Guard(t)
	id := newIdentity(t)
	id.Setenv(t)
	env := id.Env()
	env["AZURE_TOKEN_CREDENTIALS"] = "ManagedIdentityCredential"

	cred, err := keyless.NewCredential(&keyless.CredentialOptions{
		Getenv:        lookup(env),
		ClientOptions: azcore.ClientOptions{Transport: hc},
	})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := keyless.NewTokenProvider(cred, "")(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	claims, err := aoaitest.VerifyToken(tok)
	if err != nil {
		t.Fatal(err)
	}
	if claims.ObjectID != id.PrincipalID || id.Calls() != 1 {
		t.Errorf("token for %q after %d calls; want the identity %q after 1",
			claims.ObjectID, id.Calls(), id.PrincipalID)
	}
}

func TestManagedIdentityFailureNamesTheIdentity(t *testing.T) {
	hc := aoaitest.Guard(t)
	id := newIdentity(t)
	id.Setenv(t)
	t.Setenv("AZURE_TOKEN_CREDENTIALS", "prod")
	t.Setenv("AZURE_CLIENT_ID", someClientID) // not an identity of this host

	_, err := keyless.NewTokenProvider(newCredential(t, hc), "")(context.Background())
	var ce *keyless.CredentialError
	if !errors.As(err, &ce) || len(ce.Sources) != 2 {
		t.Fatalf("error = %v, want a *keyless.CredentialError with 2 sources", err)
	}
	got := ce.Sources[1]
	want := "attach the user-assigned identity with client ID " + someClientID +
		" to the app, or correct AZURE_CLIENT_ID (azd env get-value AZURE_CLIENT_ID)"
	if got.Source != "ManagedIdentityCredential" || got.Skipped || got.Fix != want {
		t.Errorf("source %s (skipped %v), fix %q; want ManagedIdentityCredential, fix %q",
			got.Source, got.Skipped, got.Fix, want)
	}
}
