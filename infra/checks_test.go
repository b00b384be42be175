package infra_test

// The checks that keep the infrastructure in step with the code. Each reads
// the repository through an fs.FS and returns one message per problem.

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// existingResourceVars are the azd variables that choose existing resources
// (docs/deploy.md, "Use existing resources").
var existingResourceVars = []string{
	"AZURE_RESOURCE_GROUP",
	"AZURE_OPENAI_RESOURCE",
	"AZURE_OPENAI_RESOURCE_GROUP",
	"AZURE_OPENAI_RESOURCE_GROUP_LOCATION",
	"AZURE_OPENAI_SKU_NAME",
}

// Built-in Azure role definition ids.
const (
	roleOpenAIUser = "5e0bd9bd-7b93-4f28-af87-19fc36ad61bd" // Cognitive Services OpenAI User
	roleAcrPull    = "7f951dda-4ed3-4680-a7ca-43fe172d538d" // AcrPull
)

// Resource types the checks look at.
const (
	typeOpenAI         = "Microsoft.CognitiveServices/accounts"
	typeRegistry       = "Microsoft.ContainerRegistry/registries"
	typeContainerApp   = "Microsoft.App/containerApps"
	typeIdentity       = "Microsoft.ManagedIdentity/userAssignedIdentities"
	typeRoleAssignment = "Microsoft.Authorization/roleAssignments"
)

// Where a value comes from, as template.sources names it.
const (
	fromIdentityPrincipal = "resource:" + typeIdentity + ":properties.principalId"
	fromIdentityClient    = "resource:" + typeIdentity + ":properties.clientId"
	fromIdentityID        = "resource:" + typeIdentity + ":id"
	fromDeployer          = "env:AZURE_PRINCIPAL_ID"
)

// repo is the repository as the checks see it.
type repo struct {
	facts     facts
	fsys      fs.FS
	yaml      map[string]any // azure.yaml
	yamlErr   error
	infraDir  string
	tmpl      *template
	paramsRaw string // main.parameters.json as text
}

// loadRepo reads azure.yaml, every Bicep file under the infra directory it
// names, and the parameters file.
func loadRepo(fsys fs.FS, f facts) (*repo, error) {
	r := &repo{facts: f, fsys: fsys, infraDir: "infra"}
	if b, err := fs.ReadFile(fsys, "azure.yaml"); err != nil {
		r.yamlErr = err
	} else if r.yaml, err = parseYAML(string(b)); err != nil {
		r.yamlErr = err
	}
	module := "main"
	if p, ok := yamlString(r.yaml, "infra", "path"); ok {
		r.infraDir = path.Clean(p)
	}
	if m, ok := yamlString(r.yaml, "infra", "module"); ok {
		module = m
	}

	r.tmpl = &template{
		files:    map[string]*bicepFile{},
		mainPath: r.infraDir + "/" + module + ".bicep",
	}
	err := fs.WalkDir(fsys, r.infraDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(p, ".bicep") {
			return err
		}
		b, err := fs.ReadFile(fsys, p)
		if err != nil {
			return err
		}
		r.tmpl.files[p] = parseBicep(p, string(b))
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", r.infraDir, err)
	}
	if r.tmpl.main() == nil {
		return nil, fmt.Errorf("%s does not exist", r.tmpl.mainPath)
	}

	paramsPath := r.infraDir + "/" + module + ".parameters.json"
	b, err := fs.ReadFile(fsys, paramsPath)
	if err != nil {
		return nil, err
	}
	r.paramsRaw = string(b)
	var pf struct {
		Parameters map[string]any `json:"parameters"`
	}
	if err := json.Unmarshal(b, &pf); err != nil {
		return nil, fmt.Errorf("%s: %w", paramsPath, err)
	}
	r.tmpl.parameters = pf.Parameters
	return r, nil
}

// check is one named check.
type check struct {
	name string
	what string // the drift it catches
	run  func(*repo) []string
}

var checks = []check{
	{"local-auth", "Azure OpenAI key access left on, or no custom subdomain for tokens",
		checkLocalAuth},
	{"no-keys", "listKeys and friends, a registry admin user or password, a key output",
		checkNoKeys},
	{"roles", "a missing role: OpenAI User for the app identity or the deployer, AcrPull",
		checkRoles},
	{"app-env", "a variable the app requires not set on the container app",
		checkAppEnv},
	{"outputs", "an output keyless (or azd) reads missing from main.bicep",
		checkOutputs},
	{"port", "ingress or probes not on the app's default port and health paths",
		checkPort},
	{"scale", "no HTTP scale rule, or replica bounds that are not parameters",
		checkScale},
	{"azure-yaml", "azure.yaml's project, Dockerfile or build context missing",
		checkAzureYAML},
	{"parameters", "parameters file and main.bicep out of step; a param without @description",
		checkParameters},
	{"docs", "an azd variable the parameters file reads that docs/deploy.md does not name",
		checkDocs},
	{"api-versions", "a preview API version where a stable one exists",
		checkAPIVersions},
}

// runChecks runs every check and returns the problems by check name; a check
// without problems has no entry.
func runChecks(r *repo) map[string][]string {
	out := map[string][]string{}
	for _, c := range checks {
		if p := c.run(r); len(p) > 0 {
			out[c.name] = p
		}
	}
	return out
}

// ---------------------------------------------------------------------------

var disableLocalAuthRE = regexp.MustCompile(`\bdisableLocalAuth\s*:\s*(\S+)`)

func checkLocalAuth(r *repo) []string {
	var out []string
	accounts := 0
	for _, f := range sortedFiles(r.tmpl.files) {
		for _, d := range f.resources(typeOpenAI) {
			accounts++
			v, ok := fieldPath(d.value, "properties", "disableLocalAuth")
			if !ok {
				out = append(out, fmt.Sprintf("%s: resource %s does not set "+
					"properties.disableLocalAuth; keys stay on", f.path, d.name))
			} else if b, ok := r.tmpl.resolve(f, v); b != true || !ok {
				out = append(out, fmt.Sprintf("%s: resource %s sets disableLocalAuth to %s, "+
					"not true", f.path, d.name, v))
			}
			// Microsoft Entra ID tokens work only at a custom subdomain.
			if v, _ := fieldPath(d.value, "properties", "customSubDomainName"); v == "" ||
				v == "''" {
				out = append(out, fmt.Sprintf("%s: resource %s has no customSubDomainName, "+
					"which keyless access needs", f.path, d.name))
			}
		}
		// Anything else that can turn key (shared key) access off must too.
		for _, m := range disableLocalAuthRE.FindAllStringSubmatch(f.text, -1) {
			if m[1] != "true" {
				out = append(out, fmt.Sprintf("%s: disableLocalAuth: %s", f.path, m[1]))
			}
		}
	}
	if accounts == 0 {
		out = append(out, "no "+typeOpenAI+" resource is declared")
	}
	return out
}

var (
	adminUserRE     = regexp.MustCompile(`\badminUserEnabled\s*:\s*(\S+)`)
	keyOutputNameRE = regexp.MustCompile(`(?i)key|secret|password|credential|token`)
	keyOutputExprRE = regexp.MustCompile(`(?i)keys?\b|secret|password|credential|` +
		`connectionstring`)
	secretEnvNameRE = regexp.MustCompile(`(?i)(^|_)KEY$|_KEY_|SECRET|PASSWORD`)
)

func checkNoKeys(r *repo) []string {
	var out []string
	texts := map[string]string{r.infraDir + "/main.parameters.json": r.paramsRaw}
	for p, f := range r.tmpl.files {
		texts[p] = f.text
	}
	paths := make([]string, 0, len(texts))
	for p := range texts {
		paths = append(paths, p)
	}
	slices.Sort(paths)
	for _, p := range paths {
		text := texts[p]
		for _, m := range listCalls(text) {
			out = append(out, fmt.Sprintf("%s: %s(...) reads a key or secret", p, m))
		}
		for _, m := range secretWords(text) {
			out = append(out, fmt.Sprintf("%s: %q: a key or secret is handled", p, m))
		}
		for _, m := range adminUserRE.FindAllStringSubmatch(text, -1) {
			if m[1] != "false" {
				out = append(out, fmt.Sprintf("%s: adminUserEnabled: %s", p, m[1]))
			}
		}
	}

	for _, f := range sortedFiles(r.tmpl.files) {
		for _, d := range f.decls {
			if d.kind == "output" &&
				(keyOutputNameRE.MatchString(d.name) || keyOutputExprRE.MatchString(d.value)) {
				out = append(out, fmt.Sprintf("%s: output %s = %s looks like a key", f.path,
					d.name, d.value))
			}
		}
		for _, d := range f.resources(typeRegistry) {
			if v, _ := fieldPath(d.value, "properties", "adminUserEnabled"); v != "false" {
				out = append(out, fmt.Sprintf("%s: registry %s must say adminUserEnabled: "+
					"false", f.path, d.name))
			}
		}
		for _, d := range f.resources(typeContainerApp) {
			regs, _ := fieldPath(d.value, "properties", "configuration", "registries")
			if len(arrayItems(regs)) == 0 {
				out = append(out, fmt.Sprintf("%s: container app %s names no registry to "+
					"pull its image from with its identity", f.path, d.name))
			}
			for _, reg := range arrayItems(regs) {
				id, _ := field(reg, "identity")
				if !slices.Contains(r.tmpl.sources(f, id), fromIdentityID) {
					out = append(out, fmt.Sprintf("%s: container app %s pulls from a "+
						"registry without the app's user-assigned identity (identity: %s)",
						f.path, d.name, id))
				}
			}
			for _, e := range containerEnv(d) {
				if secretEnvNameRE.MatchString(e.key) {
					out = append(out, fmt.Sprintf("%s: container app %s sets %s",
						f.path, d.name, e.key))
				}
			}
		}
	}
	return out
}

// listCalls finds calls of ARM's list* functions (listKeys, listCredentials,
// listSecrets, ...), which all read secrets, by name.
func listCalls(text string) []string {
	var out []string
	lower := asciiLower(text)
	for i := 0; ; {
		j := strings.Index(lower[i:], "list")
		if j < 0 {
			return out
		}
		start := i + j
		i = start + len("list")
		if start > 0 && isIdentByte(lower[start-1]) && lower[start-1] != '.' {
			continue // inside a longer word
		}
		end := i
		for end < len(lower) && lower[end] >= 'a' && lower[end] <= 'z' {
			end++
		}
		k := end
		for k < len(lower) && (lower[k] == ' ' || lower[k] == '\t') {
			k++
		}
		if k < len(lower) && lower[k] == '(' {
			out = append(out, text[start:end])
		}
	}
}

// asciiLower lower-cases the ASCII letters of s only, so offsets in the
// result are offsets in s.
func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'A' && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// secretWordList holds words (lower case) that only appear where a key,
// password or secret is handled.
var secretWordList = []string{
	"sharedkey", "primarykey", "secondarykey", "getsharedkeys", "connectionstring",
	"secretref", "secrets:", "api-key", "_api_key", "@secure()", "adminpassword",
}

// secretWords finds the words of secretWordList in text, ignoring case.
func secretWords(text string) []string {
	var out []string
	lower := asciiLower(text)
	for _, w := range secretWordList {
		for i := 0; ; {
			j := strings.Index(lower[i:], w)
			if j < 0 {
				break
			}
			out = append(out, text[i+j:i+j+len(w)])
			i += j + len(w)
		}
	}
	return out
}

var guidRE = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-` +
	`[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

// assignment is a role assignment as the template declares it.
type assignment struct {
	where      string
	roles      []string // role definition ids it may grant
	principals []string // where its principal id comes from
	scopes     []string // where its scope comes from
}

func (r *repo) assignments() []assignment {
	var out []assignment
	for _, f := range sortedFiles(r.tmpl.files) {
		for _, d := range f.resources(typeRoleAssignment) {
			a := assignment{where: f.path + ": " + d.name}
			role, _ := fieldPath(d.value, "properties", "roleDefinitionId")
			for _, s := range r.tmpl.sources(f, role) {
				if g, ok := strings.CutPrefix(s, "literal:"); ok && guidRE.MatchString(g) {
					a.roles = append(a.roles, strings.ToLower(g))
				}
			}
			principal, _ := fieldPath(d.value, "properties", "principalId")
			a.principals = r.tmpl.sources(f, principal)
			scope, _ := field(d.value, "scope")
			a.scopes = r.tmpl.sources(f, scope)
			out = append(out, a)
		}
	}
	return out
}

func checkRoles(r *repo) []string {
	want := []struct {
		role, roleName, principal, who, scopeType string
	}{
		{roleOpenAIUser, "Cognitive Services OpenAI User", fromIdentityPrincipal,
			"the app's managed identity", typeOpenAI},
		{roleOpenAIUser, "Cognitive Services OpenAI User", fromDeployer,
			"the deploying user (AZURE_PRINCIPAL_ID)", typeOpenAI},
		{roleAcrPull, "AcrPull", fromIdentityPrincipal,
			"the app's managed identity", typeRegistry},
	}
	all := r.assignments()
	var out []string
	for _, w := range want {
		found := false
		for _, a := range all {
			if slices.Contains(a.roles, w.role) && slices.Contains(a.principals, w.principal) &&
				slices.ContainsFunc(a.scopes, func(s string) bool {
					return strings.HasPrefix(s, "resource:"+w.scopeType+":")
				}) {
				found = true
			}
		}
		if !found {
			out = append(out, fmt.Sprintf("no role assignment gives %s %s (%s) on the %s",
				w.who, w.roleName, w.role, w.scopeType))
		}
	}
	return out
}

// containerEnv lists the environment variables of every container of a
// container app, as name (key) and value expression.
func containerEnv(app decl) []entry {
	var out []entry
	containers, _ := fieldPath(app.value, "properties", "template", "containers")
	for _, c := range arrayItems(containers) {
		env, _ := field(c, "env")
		for _, item := range arrayItems(env) {
			name, _ := field(item, "name")
			value, _ := field(item, "value")
			n, _ := stringLiteral(name)
			out = append(out, entry{key: n, value: value})
		}
	}
	return out
}

// containerApps returns every container app the template deploys, with its
// file.
func (r *repo) containerApps() []caller {
	var out []caller
	for _, f := range sortedFiles(r.tmpl.files) {
		for _, d := range f.resources(typeContainerApp) {
			out = append(out, caller{file: f, mod: d})
		}
	}
	return out
}

func checkAppEnv(r *repo) []string {
	apps := r.containerApps()
	if len(apps) == 0 {
		return []string{"no " + typeContainerApp + " resource is declared"}
	}
	var out []string
	for _, app := range apps {
		env := map[string]string{}
		for _, e := range containerEnv(app.mod) {
			env[e.key] = e.value
		}
		where := app.file.path + ": container app " + app.mod.name
		for _, name := range r.facts.appEnv {
			v, ok := env[name]
			if !ok {
				out = append(out, fmt.Sprintf("%s does not set %s, which the app reads",
					where, name))
				continue
			}
			if lit, ok := r.tmpl.resolve(app.file, v); ok && (lit == "" || lit == nil) ||
				v == "" {
				out = append(out, fmt.Sprintf("%s sets %s to nothing", where, name))
			}
		}
		if v, ok := env["AZURE_CLIENT_ID"]; ok &&
			!slices.Contains(r.tmpl.sources(app.file, v), fromIdentityClient) {
			out = append(out, fmt.Sprintf("%s: AZURE_CLIENT_ID = %s is not the client id "+
				"of a user-assigned identity the template creates", where, v))
		}
		if v, ok := env["AZURE_TOKEN_CREDENTIALS"]; !ok {
			out = append(out, where+": AZURE_TOKEN_CREDENTIALS is not set; set it to prod so "+
				"only the deployed identity can authorize the app")
		} else if lit, _ := r.tmpl.resolve(app.file, v); fmt.Sprint(lit) != "prod" {
			out = append(out, fmt.Sprintf("%s: AZURE_TOKEN_CREDENTIALS = %s, not prod", where, v))
		}
		if v, ok := env["RUNNING_IN_PRODUCTION"]; ok {
			lit, _ := r.tmpl.resolve(app.file, v)
			if b, err := strconv.ParseBool(fmt.Sprint(lit)); err != nil || !b {
				out = append(out, fmt.Sprintf("%s: RUNNING_IN_PRODUCTION = %s, not true",
					where, v))
			}
		}
	}
	return out
}

func checkOutputs(r *repo) []string {
	have := map[string]bool{}
	for _, d := range r.tmpl.main().decls {
		if d.kind == "output" {
			have[d.name] = true
		}
	}
	want := slices.Clone(r.facts.keylessOutputs)
	// What azd itself needs: where to push the image, and (for the README's
	// "open the app") each service's address.
	want = append(want, "AZURE_CONTAINER_REGISTRY_ENDPOINT")
	for _, name := range yamlServiceNames(r.yaml) {
		want = append(want, "SERVICE_"+strings.ToUpper(name)+"_URI")
	}
	var out []string
	for _, name := range want {
		if !have[name] {
			out = append(out, fmt.Sprintf("%s has no output %s", r.tmpl.mainPath, name))
		}
	}
	return out
}

func checkPort(r *repo) []string {
	apps := r.containerApps()
	if len(apps) == 0 {
		return []string{"no " + typeContainerApp + " resource is declared"}
	}
	var out []string
	for _, app := range apps {
		where := app.file.path + ": container app " + app.mod.name
		resolvesToPort := func(what, expr string) {
			v, ok := r.tmpl.resolve(app.file, expr)
			if !ok {
				out = append(out, fmt.Sprintf("%s: %s = %s does not come down to a number",
					where, what, expr))
			} else if fmt.Sprint(v) != strconv.Itoa(r.facts.port) {
				out = append(out, fmt.Sprintf("%s: %s is %v, the app listens on %d",
					where, what, v, r.facts.port))
			}
		}

		ingress, _ := fieldPath(app.mod.value, "properties", "configuration", "ingress")
		if port, ok := field(ingress, "targetPort"); ok {
			resolvesToPort("ingress targetPort", port)
		} else {
			out = append(out, where+": no ingress targetPort")
		}
		if v, _ := field(ingress, "allowInsecure"); v != "false" {
			out = append(out, where+": ingress must say allowInsecure: false (HTTPS only)")
		}

		probes := map[string]string{} // type -> path
		containers, _ := fieldPath(app.mod.value, "properties", "template", "containers")
		for _, c := range arrayItems(containers) {
			list, _ := field(c, "probes")
			for _, p := range arrayItems(list) {
				typ, _ := field(p, "type")
				kind, _ := stringLiteral(typ)
				httpGet, ok := field(p, "httpGet")
				if !ok {
					out = append(out, fmt.Sprintf("%s: %s probe is not an HTTP probe",
						where, kind))
					continue
				}
				pathExpr, _ := field(httpGet, "path")
				probePath, _ := stringLiteral(pathExpr)
				probes[kind] = probePath
				port, _ := field(httpGet, "port")
				resolvesToPort(kind+" probe port", port)
			}
		}
		for kind, want := range map[string]string{"Liveness": "/healthz", "Readiness": "/readyz"} {
			if got, ok := probes[kind]; !ok {
				out = append(out, fmt.Sprintf("%s has no %s probe", where, kind))
			} else if got != want {
				out = append(out, fmt.Sprintf("%s: %s probe calls %q, the app serves %s",
					where, kind, got, want))
			}
		}
		for _, e := range containerEnv(app.mod) {
			if e.key == "PORT" {
				resolvesToPort("PORT", e.value)
			}
		}
	}

	// The image itself, where it says which port it serves.
	for _, dockerfile := range r.dockerfiles() {
		b, err := fs.ReadFile(r.fsys, dockerfile)
		if err != nil {
			continue // checkAzureYAML reports it
		}
		for _, m := range dockerPortRE.FindAllStringSubmatch(string(b), -1) {
			if m[2] != strconv.Itoa(r.facts.port) {
				out = append(out, fmt.Sprintf("%s: %s %s, the app listens on %d",
					dockerfile, m[1], m[2], r.facts.port))
			}
		}
	}
	slices.Sort(out) // the probe kinds come from a map
	return out
}

var dockerPortRE = regexp.MustCompile(`(?m)^\s*(ENV\s+PORT\s*=?|EXPOSE)\s*(\d+)`)

// dockerfiles lists the Dockerfile of every service in azure.yaml.
func (r *repo) dockerfiles() []string {
	var out []string
	for _, name := range yamlServiceNames(r.yaml) {
		project, ok := yamlString(r.yaml, "services", name, "project")
		if !ok {
			continue
		}
		dockerfile := "./Dockerfile"
		if p, ok := yamlString(r.yaml, "services", name, "docker", "path"); ok {
			dockerfile = p
		}
		out = append(out, path.Join(path.Clean(project), dockerfile))
	}
	return out
}

func checkScale(r *repo) []string {
	var out []string
	for _, app := range r.containerApps() {
		where := app.file.path + ": container app " + app.mod.name
		scale, _ := fieldPath(app.mod.value, "properties", "template", "scale")
		for _, bound := range []string{"minReplicas", "maxReplicas"} {
			v, ok := field(scale, bound)
			if !ok {
				out = append(out, fmt.Sprintf("%s does not set %s", where, bound))
				continue
			}
			fromParam := slices.ContainsFunc(r.tmpl.sources(app.file, v),
				func(s string) bool { return strings.HasPrefix(s, "param:") })
			if !fromParam {
				out = append(out, fmt.Sprintf("%s: %s = %s is not a parameter of %s",
					where, bound, v, r.tmpl.mainPath))
			}
		}
		rules, _ := field(scale, "rules")
		if !slices.ContainsFunc(arrayItems(rules), func(rule string) bool {
			_, ok := field(rule, "http")
			return ok
		}) {
			out = append(out, where+" has no HTTP scale rule")
		}
	}
	return out
}

var azdServiceTagRE = regexp.MustCompile(`'azd-service-name'\s*:\s*([^\n,}]+)`)

func checkAzureYAML(r *repo) []string {
	if r.yamlErr != nil {
		return []string{"azure.yaml: " + r.yamlErr.Error()}
	}
	names := yamlServiceNames(r.yaml)
	if len(names) == 0 {
		return []string{"azure.yaml names no services"}
	}
	var out []string
	for _, name := range names {
		where := "azure.yaml: service " + name
		host, _ := yamlString(r.yaml, "services", name, "host")
		if host != "containerapp" {
			out = append(out, fmt.Sprintf("%s: host is %q, not containerapp", where, host))
		}
		project, ok := yamlString(r.yaml, "services", name, "project")
		if !ok {
			out = append(out, where+": no project")
			continue
		}
		dir := path.Clean(project)
		if !fs.ValidPath(dir) {
			out = append(out, fmt.Sprintf("%s: project %q is outside the repository",
				where, project))
			continue
		}
		if st, err := fs.Stat(r.fsys, dir); err != nil || !st.IsDir() {
			out = append(out, fmt.Sprintf("%s: project %q is not a directory", where, project))
			continue
		}
		dockerfile := "./Dockerfile"
		if p, ok := yamlString(r.yaml, "services", name, "docker", "path"); ok {
			dockerfile = p
		}
		if p := path.Join(dir, dockerfile); !fs.ValidPath(p) || !isFile(r.fsys, p) {
			out = append(out, fmt.Sprintf("%s: Dockerfile %s does not exist", where, p))
		}
		context := "."
		if c, ok := yamlString(r.yaml, "services", name, "docker", "context"); ok {
			context = c
		}
		ctx := path.Join(dir, context)
		if !fs.ValidPath(ctx) {
			out = append(out, fmt.Sprintf("%s: build context %q is outside the repository",
				where, context))
		} else if !isFile(r.fsys, path.Join(ctx, "go.mod")) {
			out = append(out, fmt.Sprintf("%s: build context %s has no go.mod, which a "+
				"Go build needs", where, ctx))
		}
	}

	// azd finds the container app by its azd-service-name tag.
	for _, app := range r.containerApps() {
		tags, _ := field(app.mod.value, "tags")
		m := azdServiceTagRE.FindStringSubmatch(tags)
		if m == nil {
			out = append(out, fmt.Sprintf("%s: container app %s has no azd-service-name tag",
				app.file.path, app.mod.name))
			continue
		}
		tag, _ := r.tmpl.resolve(app.file, m[1])
		if !slices.Contains(names, fmt.Sprint(tag)) {
			out = append(out, fmt.Sprintf("%s: container app %s is tagged for service %v, "+
				"which azure.yaml does not define", app.file.path, app.mod.name, tag))
		}
	}
	return out
}

func isFile(fsys fs.FS, name string) bool {
	st, err := fs.Stat(fsys, name)
	return err == nil && !st.IsDir()
}

func checkParameters(r *repo) []string {
	var out []string
	main := r.tmpl.main()
	names := make([]string, 0, len(r.tmpl.parameters))
	for name := range r.tmpl.parameters {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		if _, ok := main.find("param", name); !ok {
			out = append(out, fmt.Sprintf("the parameters file sets %s, which %s does not "+
				"declare", name, r.tmpl.mainPath))
		}
	}
	for _, d := range main.decls {
		if d.kind != "param" || d.value != "" {
			continue
		}
		if _, ok := r.tmpl.parameterValue(d.name); !ok {
			out = append(out, fmt.Sprintf("%s: param %s has no default and the parameters "+
				"file does not set it", r.tmpl.mainPath, d.name))
		}
	}

	// The values azd itself provides, and the ones that pick existing resources.
	fed := map[string][]string{} // azd variable -> params it feeds
	for _, name := range names {
		v, _ := r.tmpl.parameterValue(name)
		for _, m := range envRefRE.FindAllStringSubmatch(v, -1) {
			fed[m[1]] = append(fed[m[1]], name)
		}
	}
	for param, v := range map[string]string{"environmentName": "AZURE_ENV_NAME",
		"location": "AZURE_LOCATION", "principalId": "AZURE_PRINCIPAL_ID"} {
		if !slices.Contains(fed[v], param) {
			out = append(out, fmt.Sprintf("the parameters file does not set %s from ${%s}",
				param, v))
		}
	}
	for _, v := range existingResourceVars {
		if len(fed[v]) == 0 {
			out = append(out, fmt.Sprintf("no parameter reads %s, which picks an existing "+
				"resource", v))
		}
	}

	for _, f := range sortedFiles(r.tmpl.files) {
		for _, d := range f.decls {
			if d.kind == "param" && !slices.ContainsFunc(d.decorators, func(s string) bool {
				return strings.HasPrefix(s, "@description(")
			}) {
				out = append(out, fmt.Sprintf("%s: param %s has no @description", f.path,
					d.name))
			}
		}
	}
	slices.Sort(out)
	return out
}

const docsPath = "docs/deploy.md"

func checkDocs(r *repo) []string {
	b, err := fs.ReadFile(r.fsys, docsPath)
	if err != nil {
		return []string{err.Error()}
	}
	var out []string
	seen := map[string]bool{}
	for _, m := range envRefRE.FindAllStringSubmatch(r.paramsRaw, -1) {
		if v := m[1]; !seen[v] && !strings.Contains(string(b), v) {
			seen[v] = true
			out = append(out, fmt.Sprintf("%s does not mention %s, which the parameters "+
				"file reads", docsPath, v))
		}
	}
	return out
}

// stableOnlyPreview lists the resource types whose newest API version is a
// preview.
var stableOnlyPreview = []string{"Microsoft.Insights/diagnosticSettings"}

var apiVersionRE = regexp.MustCompile(`^\d{4}-\d{2}-\d{2}$`)

func checkAPIVersions(r *repo) []string {
	var out []string
	for _, f := range sortedFiles(r.tmpl.files) {
		for _, d := range f.decls {
			if d.kind != "resource" {
				continue
			}
			typ, version, _ := strings.Cut(d.typ, "@")
			if !apiVersionRE.MatchString(version) && !slices.Contains(stableOnlyPreview, typ) {
				out = append(out, fmt.Sprintf("%s: %s uses API version %s", f.path, d.name,
					version))
			}
		}
	}
	return out
}

// ---------------------------------------------------------------------------
// azure.yaml

// parseYAML reads the part of YAML azure.yaml uses: nested "key: value"
// mappings by indentation, comments, and quoted or plain scalars. Sequences
// are skipped.
func parseYAML(src string) (map[string]any, error) {
	root := map[string]any{}
	type level struct {
		indent int
		m      map[string]any
	}
	stack := []level{{-1, root}}
	for n, line := range strings.Split(src, "\n") {
		line = strings.TrimRight(stripYAMLComment(line), " \r")
		text := strings.TrimLeft(line, " ")
		if text == "" || strings.HasPrefix(text, "- ") || text == "-" {
			continue
		}
		if strings.HasPrefix(line, "\t") {
			return nil, fmt.Errorf("line %d: tab indentation", n+1)
		}
		indent := len(line) - len(text)
		key, value, ok := strings.Cut(text, ":")
		if !ok {
			return nil, fmt.Errorf("line %d: %q is not key: value", n+1, text)
		}
		for len(stack) > 1 && indent <= stack[len(stack)-1].indent {
			stack = stack[:len(stack)-1]
		}
		parent := stack[len(stack)-1].m
		key, value = unquoteYAML(strings.TrimSpace(key)), strings.TrimSpace(value)
		if value == "" {
			child := map[string]any{}
			parent[key] = child
			stack = append(stack, level{indent, child})
			continue
		}
		parent[key] = unquoteYAML(value)
	}
	return root, nil
}

func stripYAMLComment(line string) string {
	quote := byte(0)
	for i := 0; i < len(line); i++ {
		switch c := line[i]; {
		case quote != 0:
			if c == quote {
				quote = 0
			}
		case c == '\'' || c == '"':
			quote = c
		case c == '#' && (i == 0 || line[i-1] == ' '):
			return line[:i]
		}
	}
	return line
}

func unquoteYAML(s string) string {
	if len(s) >= 2 && (s[0] == '"' || s[0] == '\'') && s[len(s)-1] == s[0] {
		return s[1 : len(s)-1]
	}
	return s
}

// yamlString follows keys through nested mappings to a scalar.
func yamlString(m map[string]any, keys ...string) (string, bool) {
	var v any = m
	for _, k := range keys {
		mm, ok := v.(map[string]any)
		if !ok {
			return "", false
		}
		if v, ok = mm[k]; !ok {
			return "", false
		}
	}
	s, ok := v.(string)
	return s, ok
}

func yamlServiceNames(m map[string]any) []string {
	services, _ := m["services"].(map[string]any)
	names := make([]string, 0, len(services))
	for name := range services {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}
