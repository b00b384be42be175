package keyless_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/aoaiblocks/securechat/keyless"
)

const (
	endpointHint   = " (azd env get-value AZURE_OPENAI_ENDPOINT)"
	deploymentHint = " (azd env get-value AZURE_OPENAI_CHAT_DEPLOYMENT)"
)

// problems returns the problems of a *keyless.ConfigError, nil for nil.
func problems(t *testing.T, err error) []string {
	t.Helper()
	if err == nil {
		return nil
	}
	var ce *keyless.ConfigError
	if !errors.As(err, &ce) {
		t.Fatalf("error %v (%T) is not a *keyless.ConfigError", err, err)
	}
	return ce.Problems
}

func TestLoadConfigValidatesEveryVariable(t *testing.T) {
	const ep = "https://contoso.openai.azure.com/"
	tests := []struct {
		name     string
		env      map[string]string
		want     keyless.Config
		problems []string
	}{
		{
			name: "nothing set",
			problems: []string{
				"AZURE_OPENAI_ENDPOINT is not set" + endpointHint,
				"AZURE_OPENAI_CHAT_DEPLOYMENT is not set" + deploymentHint,
			},
		},
		{
			name: "all set",
			env: map[string]string{
				"AZURE_OPENAI_ENDPOINT":        ep,
				"AZURE_OPENAI_CHAT_DEPLOYMENT": "chat",
				"AZURE_OPENAI_API_VERSION":     "2024-10-21",
				"AZURE_CLIENT_ID":              "11111111-2222-3333-4444-555555555555",
				"AZURE_TENANT_ID":              "contoso.onmicrosoft.com",
			},
			want: keyless.Config{Endpoint: ep, Deployment: "chat", APIVersion: "2024-10-21",
				ClientID: "11111111-2222-3333-4444-555555555555",
				TenantID: "contoso.onmicrosoft.com"},
		},
		{
			name: "white space trimmed",
			env: map[string]string{"AZURE_OPENAI_ENDPOINT": " " + ep + "\n",
				"AZURE_OPENAI_CHAT_DEPLOYMENT": " chat "},
			want: keyless.Config{Endpoint: ep, Deployment: "chat"},
		},
		{
			name: "older deployment name",
			env: map[string]string{"AZURE_OPENAI_ENDPOINT": ep,
				"AZURE_OPENAI_CHATGPT_DEPLOYMENT": "chat"},
			want: keyless.Config{Endpoint: ep, Deployment: "chat"},
		},
		{
			name: "both deployment names agree",
			env: map[string]string{"AZURE_OPENAI_ENDPOINT": ep,
				"AZURE_OPENAI_CHAT_DEPLOYMENT": "chat", "AZURE_OPENAI_CHATGPT_DEPLOYMENT": "chat"},
			want: keyless.Config{Endpoint: ep, Deployment: "chat"},
		},
		{
			name: "deployment names conflict",
			env: map[string]string{"AZURE_OPENAI_ENDPOINT": ep,
				"AZURE_OPENAI_CHAT_DEPLOYMENT": "gpt-4o", "AZURE_OPENAI_CHATGPT_DEPLOYMENT": "chat"},
			want: keyless.Config{Endpoint: ep, Deployment: "gpt-4o"},
			problems: []string{`AZURE_OPENAI_CHAT_DEPLOYMENT="gpt-4o" and ` +
				`AZURE_OPENAI_CHATGPT_DEPLOYMENT="chat" differ; set only ` +
				`AZURE_OPENAI_CHAT_DEPLOYMENT (AZURE_OPENAI_CHATGPT_DEPLOYMENT is its older name)`},
		},
		{
			name: "http to a remote host",
			env: map[string]string{"AZURE_OPENAI_ENDPOINT": "http://contoso.openai.azure.com",
				"AZURE_OPENAI_CHAT_DEPLOYMENT": "chat"},
			want: keyless.Config{Endpoint: "http://contoso.openai.azure.com", Deployment: "chat"},
			problems: []string{`AZURE_OPENAI_ENDPOINT="http://contoso.openai.azure.com" must ` +
				`use https (http is allowed only for a loopback host)` + endpointHint},
		},
		{
			name: "every problem at once",
			env: map[string]string{
				"AZURE_OPENAI_ENDPOINT":           "contoso.openai.azure.com",
				"AZURE_OPENAI_CHAT_DEPLOYMENT":    "my/chat",
				"AZURE_OPENAI_CHATGPT_DEPLOYMENT": "chat",
				"AZURE_OPENAI_API_VERSION":        "2024-13-01",
				"AZURE_TENANT_ID":                 "contoso tenant",
			},
			want: keyless.Config{Endpoint: "contoso.openai.azure.com", Deployment: "my/chat",
				APIVersion: "2024-13-01", TenantID: "contoso tenant"},
			problems: []string{
				`AZURE_OPENAI_ENDPOINT="contoso.openai.azure.com" is not a URL such as ` +
					`https://<name>.openai.azure.com/` + endpointHint,
				`AZURE_OPENAI_CHAT_DEPLOYMENT="my/chat" may hold only letters, digits, '.', ` +
					`'_' and '-'` + deploymentHint,
				`AZURE_OPENAI_API_VERSION="2024-13-01" is neither v1 nor a date such as ` +
					`2024-10-21 (leave it unset for the v1 API)`,
				`AZURE_TENANT_ID="contoso tenant" is not a tenant ID ` +
					`(azd env get-value AZURE_TENANT_ID)`,
				`AZURE_OPENAI_CHAT_DEPLOYMENT="my/chat" and AZURE_OPENAI_CHATGPT_DEPLOYMENT=` +
					`"chat" differ; set only AZURE_OPENAI_CHAT_DEPLOYMENT ` +
					`(AZURE_OPENAI_CHATGPT_DEPLOYMENT is its older name)`,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := keyless.LoadConfig(&keyless.ConfigOptions{Getenv: lookup(tt.env)})
			if diff := cmp.Diff(tt.want, cfg); diff != "" {
				t.Errorf("config (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.problems, problems(t, err)); diff != "" {
				t.Errorf("problems (-want +got):\n%s", diff)
			}
		})
	}
}

func TestValidateEndpointAndAPIVersion(t *testing.T) {
	tests := []struct {
		endpoint, version string
		problem           string // "" for valid
	}{
		{"https://contoso.openai.azure.com", "", ""},
		{"https://contoso.openai.azure.com/", "v1", ""},
		{"https://gateway.example.com/aoai/", "2025-04-01-preview", ""},
		{"http://127.0.0.1:8080", "", ""},
		{"http://localhost:8080/", "", ""},
		{"http://[::1]:8080/", "", ""},
		{"http://10.0.0.1", "", `AZURE_OPENAI_ENDPOINT="http://10.0.0.1" must use https ` +
			`(http is allowed only for a loopback host)` + endpointHint},
		{"ftp://contoso.openai.azure.com", "", `AZURE_OPENAI_ENDPOINT=` +
			`"ftp://contoso.openai.azure.com" is not a URL such as ` +
			`https://<name>.openai.azure.com/` + endpointHint},
		{"https://contoso.openai.azure.com/openai/v1/", "", `AZURE_OPENAI_ENDPOINT=` +
			`"https://contoso.openai.azure.com/openai/v1/" must be the account's endpoint, ` +
			`without the /openai/... path` + endpointHint},
		{"https://contoso.openai.azure.com/?api-version=1", "", `AZURE_OPENAI_ENDPOINT=` +
			`"https://contoso.openai.azure.com/?api-version=1" must have no user, query or ` +
			`fragment` + endpointHint},
		{"https://key@contoso.openai.azure.com/", "", `AZURE_OPENAI_ENDPOINT=` +
			`"https://key@contoso.openai.azure.com/" must have no user, query or fragment` +
			endpointHint},
		{"https://contoso.openai.azure.com", "preview", `AZURE_OPENAI_API_VERSION="preview" ` +
			`is neither v1 nor a date such as 2024-10-21 (leave it unset for the v1 API)`},
	}
	for _, tt := range tests {
		t.Run(tt.endpoint+" "+tt.version, func(t *testing.T) {
			err := keyless.Config{Endpoint: tt.endpoint, Deployment: "chat",
				APIVersion: tt.version}.Validate()
			var want []string
			if tt.problem != "" {
				want = []string{tt.problem}
			}
			if diff := cmp.Diff(want, problems(t, err)); diff != "" {
				t.Errorf("problems (-want +got):\n%s", diff)
			}
		})
	}
}

func TestConfigErrorMessageListsProblems(t *testing.T) {
	err := keyless.Config{}.Validate()
	want := "keyless: 2 configuration problems:" +
		"\n\tAZURE_OPENAI_ENDPOINT is not set" + endpointHint +
		"\n\tAZURE_OPENAI_CHAT_DEPLOYMENT is not set" + deploymentHint
	if err == nil || err.Error() != want {
		t.Errorf("error:\n%v\nwant:\n%s", err, want)
	}
}

// writeFiles creates the files under root, making their directories.
func writeFiles(t *testing.T, root string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(root, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestLoadConfigReadsCurrentAzdEnvironment(t *testing.T) {
	root := t.TempDir()
	writeFiles(t, root, map[string]string{
		".azure/config.json": `{"version":1,"defaultEnvironment":"dev"}`,
		".azure/dev/.env": "# written by azd\n" +
			"AZURE_OPENAI_ENDPOINT=\"https://dev.openai.azure.com/\"\n" +
			"AZURE_OPENAI_CHATGPT_DEPLOYMENT=\"chat\"\n" +
			"AZURE_TENANT_ID=\"contoso.onmicrosoft.com\"\n" +
			"AZURE_CLIENT_ID=\"11111111-2222-3333-4444-555555555555\"\n",
		".azure/test/.env": "AZURE_OPENAI_ENDPOINT=\"https://test.openai.azure.com/\"\n" +
			"AZURE_OPENAI_CHAT_DEPLOYMENT=\"gpt-4o\"\n",
		"cmd/app/main.go": "package main\n",
	})
	dev := keyless.Config{Endpoint: "https://dev.openai.azure.com/", Deployment: "chat",
		TenantID: "contoso.onmicrosoft.com", ClientID: "11111111-2222-3333-4444-555555555555"}
	tests := []struct {
		name string
		env  map[string]string
		want keyless.Config
	}{
		{"default environment", nil, dev},
		{"AZURE_ENV_NAME", map[string]string{"AZURE_ENV_NAME": "test"},
			keyless.Config{Endpoint: "https://test.openai.azure.com/", Deployment: "gpt-4o"}},
		{"process environment wins",
			map[string]string{"AZURE_OPENAI_ENDPOINT": "https://prod.openai.azure.com/",
				"AZURE_OPENAI_CHAT_DEPLOYMENT": "gpt-4o"},
			keyless.Config{Endpoint: "https://prod.openai.azure.com/", Deployment: "gpt-4o",
				TenantID: dev.TenantID, ClientID: dev.ClientID}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := keyless.LoadConfig(&keyless.ConfigOptions{
				Getenv: lookup(tt.env),
				AzdEnv: true,
				Dir:    filepath.Join(root, "cmd", "app"),
			})
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, cfg); diff != "" {
				t.Errorf("config (-want +got):\n%s", diff)
			}
		})
	}
}

func TestLoadConfigExplainsMissingAzdEnvironment(t *testing.T) {
	missing := []string{
		"AZURE_OPENAI_ENDPOINT is not set" + endpointHint,
		"AZURE_OPENAI_CHAT_DEPLOYMENT is not set" + deploymentHint,
	}
	tests := []struct {
		name  string
		files map[string]string
		env   map[string]string
		note  func(root string) string // "" when the configuration is complete
	}{
		{"no .azure directory", map[string]string{"app/go.mod": ""}, nil,
			func(root string) string {
				return "no azd environment found (no .azure directory in " +
					filepath.Join(root, "app") + " or above); run azd up, or set the variables"
			}},
		{"no .azure directory, environment complete", map[string]string{"app/go.mod": ""},
			map[string]string{"AZURE_OPENAI_ENDPOINT": "https://contoso.openai.azure.com",
				"AZURE_OPENAI_CHAT_DEPLOYMENT": "chat"},
			func(string) string { return "" }},
		{"no environment selected", map[string]string{".azure/dev/.env": ""}, nil,
			func(root string) string {
				return "no azd environment selected (AZURE_ENV_NAME is not set and " +
					filepath.Join(root, ".azure", "config.json") +
					" does not exist); run azd env select"
			}},
		{"environment without .env",
			map[string]string{".azure/config.json": `{"defaultEnvironment":"dev"}`}, nil,
			func(root string) string {
				return "azd environment dev has no " + filepath.Join(root, ".azure", "dev", ".env") +
					"; run azd env refresh"
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			writeFiles(t, root, tt.files)
			_, err := keyless.LoadConfig(&keyless.ConfigOptions{
				Getenv: lookup(tt.env), AzdEnv: true, Dir: filepath.Join(root, "app"),
			})
			var want []string
			if note := tt.note(root); note != "" {
				want = append(append(want, missing...), note)
			}
			if diff := cmp.Diff(want, problems(t, err)); diff != "" {
				t.Errorf("problems (-want +got):\n%s", diff)
			}
		})
	}
}

func TestLoadConfigReportsUnreadableAzdEnvironment(t *testing.T) {
	root := t.TempDir()
	writeFiles(t, root, map[string]string{
		".azure/config.json": `{"defaultEnvironment":"dev"}`,
		".azure/dev/.env":    "AZURE_OPENAI_ENDPOINT=\"https://dev.openai.azure.com/\n",
	})
	_, err := keyless.LoadConfig(&keyless.ConfigOptions{
		Getenv: lookup(map[string]string{"AZURE_OPENAI_ENDPOINT": "https://x.openai.azure.com",
			"AZURE_OPENAI_CHAT_DEPLOYMENT": "chat"}),
		AzdEnv: true, Dir: root,
	})
	want := []string{"azd environment: " + filepath.Join(root, ".azure", "dev", ".env") +
		": line 1: AZURE_OPENAI_ENDPOINT: unterminated quote"}
	if diff := cmp.Diff(want, problems(t, err), cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("problems (-want +got):\n%s", diff)
	}
}
