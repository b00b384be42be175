package infra_test

import (
	"io/fs"
	"maps"
	"os"
	"slices"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/google/go-cmp/cmp"
)

// TestInfraMatchesCode runs every check against the repository as it is.
func TestInfraMatchesCode(t *testing.T) {
	root := os.DirFS("..")
	f, err := readFacts(root)
	if err != nil {
		t.Fatal(err)
	}
	r, err := loadRepo(root, f)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range checks {
		t.Run(c.name, func(t *testing.T) {
			for _, p := range c.run(r) {
				t.Errorf("%s\n\t(check %s: %s)", p, c.name, c.what)
			}
		})
	}
}

// drift is one deliberate break of the real files, and the check that must
// notice it.
type drift struct {
	name  string
	check string
	file  string // the file to change
	old   string // text that must occur exactly once in it
	new   string // what replaces it
}

// drifts break each rule at least once. Every check appears here, so each
// has been seen to fail.
var drifts = []drift{
	// local-auth
	{"account keys left on", "local-auth", "infra/modules/openai.bicep",
		"disableLocalAuth: true", "disableLocalAuth: false"},
	{"account keys unset", "local-auth", "infra/modules/openai.bicep",
		"    disableLocalAuth: true\n", ""},
	{"account keys from an expression", "local-auth", "infra/modules/openai.bicep",
		"disableLocalAuth: true", "disableLocalAuth: !empty(name)"},
	{"workspace shared keys on", "local-auth", "infra/modules/monitoring.bicep",
		"disableLocalAuth: true", "disableLocalAuth: false"},
	{"no custom subdomain", "local-auth", "infra/modules/openai.bicep",
		"    customSubDomainName: name\n", ""},

	// no-keys
	{"listKeys on the account", "no-keys", "infra/modules/openai.bicep",
		"var roleDefinitions =", "var keys = account.listKeys()\nvar roleDefinitions ="},
	{"workspace key for the environment", "no-keys", "infra/modules/containerapp.bicep",
		"destination: 'azure-monitor'",
		"destination: 'log-analytics'\n      logAnalyticsConfiguration: {\n" +
			"        sharedKey: listKeys(logAnalyticsWorkspaceId, '2023-09-01').primarySharedKey\n" +
			"      }"},
	{"key output", "no-keys", "infra/main.bicep",
		"output AZURE_TENANT_ID string",
		"output AZURE_OPENAI_API_KEY string = openAi.outputs.name\noutput AZURE_TENANT_ID string"},
	{"registry admin user on", "no-keys", "infra/modules/registry.bicep",
		"adminUserEnabled: false", "adminUserEnabled: true"},
	{"registry admin user unset", "no-keys", "infra/modules/registry.bicep",
		"    adminUserEnabled: false\n", ""},
	{"registry pulled with a password", "no-keys", "infra/modules/containerapp.bicep",
		"identity: identityId\n",
		"username: 'puller'\n          passwordSecretRef: 'registry-password'\n"},
	{"registry pulled with the system identity", "no-keys",
		"infra/modules/containerapp.bicep", "identity: identityId\n", "identity: 'system'\n"},
	{"no registry pull settings", "no-keys", "infra/modules/containerapp.bicep",
		"      registries: [\n        {\n          server: registryServer\n" +
			"          identity: identityId\n        }\n      ]\n", ""},
	{"api key handed to the app", "no-keys", "infra/modules/containerapp.bicep",
		"            {\n              name: 'RUNNING_IN_PRODUCTION'",
		"            {\n              name: 'AZURE_OPENAI_API_KEY'\n" +
			"              value: openAiEndpoint\n            }\n" +
			"            {\n              name: 'RUNNING_IN_PRODUCTION'"},

	// roles
	{"app identity without OpenAI User", "roles", "infra/modules/openai.bicep",
		"principalId: appPrincipalId", "principalId: deployerPrincipalId"},
	{"deployer given another role", "roles", "infra/modules/openai.bicep",
		"roleDefinitionId: subscriptionResourceId(roleDefinitions, openAiUserRoleId)\n" +
			"    principalId: deployerPrincipalId",
		"roleDefinitionId: subscriptionResourceId(roleDefinitions, " +
			"'b24988ac-6180-42a0-ab88-20f7382dd24c')\n    principalId: deployerPrincipalId"},
	{"wrong OpenAI role id", "roles", "infra/modules/openai.bicep",
		roleOpenAIUser, "a97b65f3-24c7-4388-baec-2e87135dc908"},
	{"deployer not from AZURE_PRINCIPAL_ID", "roles", "infra/main.parameters.json",
		`"${AZURE_PRINCIPAL_ID}"`, `"${AZURE_CLIENT_ID}"`},
	{"app identity given AcrPush, not AcrPull", "roles", "infra/modules/registry.bicep",
		roleAcrPull, "8311e382-0749-4cb8-b61a-304f252e45ec"},
	{"AcrPull for the deployer, not the app", "roles", "infra/main.bicep",
		"pullPrincipalId: identity.outputs.principalId", "pullPrincipalId: principalId"},

	// app-env
	{"chat deployment not set", "app-env", "infra/modules/containerapp.bicep",
		"            {\n              name: 'AZURE_OPENAI_CHAT_DEPLOYMENT'\n" +
			"              value: chatDeploymentName\n            }\n", ""},
	{"chat deployment under the seed's old name", "app-env",
		"infra/modules/containerapp.bicep",
		"name: 'AZURE_OPENAI_CHAT_DEPLOYMENT'", "name: 'AZURE_OPENAI_CHATGPT_DEPLOYMENT'"},
	{"client id not set", "app-env", "infra/modules/containerapp.bicep",
		"name: 'AZURE_CLIENT_ID'", "name: 'AZURE_CLIENT_OBJECT_ID'"},
	{"client id of the wrong thing", "app-env", "infra/main.bicep",
		"identityClientId: identity.outputs.clientId",
		"identityClientId: identity.outputs.principalId"},
	{"API version empty", "app-env", "infra/modules/containerapp.bicep",
		"value: openAiApiVersion", "value: ''"},
	{"developer credentials allowed in Azure", "app-env", "infra/modules/containerapp.bicep",
		"name: 'AZURE_TOKEN_CREDENTIALS'\n              value: 'prod'",
		"name: 'AZURE_TOKEN_CREDENTIALS'\n              value: 'dev'"},
	{"production flag off", "app-env", "infra/modules/containerapp.bicep",
		"name: 'RUNNING_IN_PRODUCTION'\n              value: 'true'",
		"name: 'RUNNING_IN_PRODUCTION'\n              value: 'false'"},

	// outputs
	{"endpoint output renamed", "outputs", "infra/main.bicep",
		"output AZURE_OPENAI_ENDPOINT string", "output AZURE_OPENAI_URL string"},
	{"tenant output dropped", "outputs", "infra/main.bicep",
		"output AZURE_TENANT_ID string = tenant().tenantId\n", ""},
	{"deployment output dropped", "outputs", "infra/main.bicep",
		"output AZURE_OPENAI_CHAT_DEPLOYMENT string = openAi.outputs.chatDeploymentName\n", ""},
	{"registry endpoint output dropped", "outputs", "infra/main.bicep",
		"output AZURE_CONTAINER_REGISTRY_ENDPOINT string = registry.outputs.loginServer\n", ""},
	{"app address output dropped", "outputs", "infra/main.bicep",
		"output SERVICE_WEB_URI string = app.outputs.uri\n", ""},

	// port
	{"default port changed in main", "port", "infra/main.bicep",
		"param appPort int = 8080", "param appPort int = 8081"},
	{"ingress on a fixed other port", "port", "infra/modules/containerapp.bicep",
		"targetPort: targetPort", "targetPort: 80"},
	{"port overridden by the parameters file", "port", "infra/main.parameters.json",
		`"parameters": {`,
		`"parameters": {` + "\n" + `    "appPort": { "value": "${SECURECHAT_PORT=9090}" },`},
	{"plain HTTP allowed", "port", "infra/modules/containerapp.bicep",
		"allowInsecure: false", "allowInsecure: true"},
	{"liveness on the wrong path", "port", "infra/modules/containerapp.bicep",
		"path: '/healthz'", "path: '/health'"},
	{"readiness on the wrong port", "port", "infra/modules/containerapp.bicep",
		"path: '/readyz'\n                port: targetPort",
		"path: '/readyz'\n                port: 80"},
	{"no readiness probe", "port", "infra/modules/containerapp.bicep",
		"type: 'Readiness'", "type: 'Startup'"},
	{"image serves another port", "port", "examples/chatapp/Dockerfile",
		"ENV PORT=8080", "ENV PORT=9000"},

	// scale
	{"no HTTP scale rule", "scale", "infra/modules/containerapp.bicep",
		"            http: {\n", "            tcp: {\n"},
	{"max replicas fixed", "scale", "infra/modules/containerapp.bicep",
		"maxReplicas: maxReplicas", "maxReplicas: 10"},

	// azure-yaml
	{"project path wrong", "azure-yaml", "azure.yaml",
		"project: ./examples/chatapp", "project: ./examples/chat-app"},
	{"Dockerfile path wrong", "azure-yaml", "azure.yaml",
		"path: ./Dockerfile", "path: ./Dockerfile.prod"},
	{"build context without go.mod", "azure-yaml", "azure.yaml",
		"context: ../..", "context: ."},
	{"build context outside the repository", "azure-yaml", "azure.yaml",
		"context: ../..", "context: ../../.."},
	{"not a container app", "azure-yaml", "azure.yaml",
		"host: containerapp", "host: appservice"},
	{"service renamed, tag not", "azure-yaml", "azure.yaml", "  web:\n", "  chat:\n"},
	{"Dockerfile deleted", "azure-yaml", "examples/chatapp/Dockerfile", "", ""},

	// parameters
	{"param renamed in Bicep only", "parameters", "infra/main.parameters.json",
		`"openAiSkuName": {`, `"openAiSku": {`},
	{"param without a description", "parameters", "infra/main.bicep",
		"@description('Version of the chat model.')\n", ""},
	{"environment name not from azd", "parameters", "infra/main.parameters.json",
		`"${AZURE_ENV_NAME}"`, `"${ENV_NAME}"`},
	{"existing account no longer selectable", "parameters", "infra/main.parameters.json",
		`"${AZURE_OPENAI_RESOURCE}"`, `""`},

	// docs
	{"setting the docs do not name", "docs", "infra/main.parameters.json",
		"SECURECHAT_MAX_REPLICAS", "SECURECHAT_REPLICAS_MAX"},

	// api-versions
	{"preview API version", "api-versions", "infra/modules/containerapp.bicep",
		"Microsoft.App/containerApps@2024-03-01", "Microsoft.App/containerApps@2025-02-02-preview"},
}

// TestInfraChecksCatchDrift proves each check can fail: it breaks a copy of
// the real files in memory, one drift at a time, and requires the check meant
// for that drift to report it. The unbroken copy must pass every check.
func TestInfraChecksCatchDrift(t *testing.T) {
	for _, c := range checks {
		if !slices.ContainsFunc(drifts, func(d drift) bool { return d.check == c.name }) {
			t.Errorf("no drift proves that check %s can fail", c.name)
		}
	}

	facts, err := readFacts(os.DirFS(".."))
	if err != nil {
		t.Fatal(err)
	}
	base := realFiles(t)

	r, err := loadRepo(base, facts)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string][]string{}, runChecks(r)); diff != "" {
		t.Fatalf("the unbroken copy fails checks (-want +got):\n%s", diff)
	}

	for _, d := range drifts {
		t.Run(d.name, func(t *testing.T) {
			fsys := maps.Clone(base)
			if d.old == "" && d.new == "" {
				delete(fsys, d.file)
			} else {
				mutate(t, fsys, d)
			}
			r, err := loadRepo(fsys, facts)
			if err != nil {
				t.Fatal(err)
			}
			got := runChecks(r)
			if len(got[d.check]) == 0 {
				t.Fatalf("check %s did not notice; all problems found: %v", d.check, got)
			}
			for _, p := range got[d.check] {
				t.Logf("%s: %s", d.check, p)
			}
		})
	}
}

// realFiles copies what the checks read from the repository into memory. The
// app's Dockerfile, another package's file, is stood in for, so the proofs
// hold whatever state that file is in.
func realFiles(t *testing.T) fstest.MapFS {
	t.Helper()
	root := os.DirFS("..")
	m := fstest.MapFS{}
	add := func(name string) {
		b, err := fs.ReadFile(root, name)
		if err != nil {
			t.Fatal(err)
		}
		m[name] = &fstest.MapFile{Data: b}
	}
	add("azure.yaml")
	add("go.mod")
	add(docsPath)
	err := fs.WalkDir(root, "infra", func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() &&
			(strings.HasSuffix(p, ".bicep") || strings.HasSuffix(p, ".json")) {
			add(p)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	m["examples/chatapp/Dockerfile"] = &fstest.MapFile{
		Data: []byte("FROM scratch\nENV PORT=8080\nEXPOSE 8080\n")}
	m["examples/chatapp/main.go"] = &fstest.MapFile{Data: []byte("package main\n")}
	return m
}

// mutate applies one drift to fsys, failing the test if the text to replace
// is not in the file exactly once (a drift that changes nothing proves
// nothing).
func mutate(t *testing.T, fsys fstest.MapFS, d drift) {
	t.Helper()
	f, ok := fsys[d.file]
	if !ok {
		t.Fatalf("%s is not among the files read", d.file)
	}
	text := string(f.Data)
	if n := strings.Count(text, d.old); n != 1 {
		t.Fatalf("%s: %q occurs %d times, want exactly once", d.file, d.old, n)
	}
	fsys[d.file] = &fstest.MapFile{Data: []byte(strings.Replace(text, d.old, d.new, 1))}
}
