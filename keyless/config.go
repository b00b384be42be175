package keyless

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"
)

// Variables the configuration is read from: the names azd provisions.
const (
	envEndpoint      = "AZURE_OPENAI_ENDPOINT"
	envDeployment    = "AZURE_OPENAI_CHAT_DEPLOYMENT"
	envOldDeployment = "AZURE_OPENAI_CHATGPT_DEPLOYMENT" // the seed's name
	envAPIVersion    = "AZURE_OPENAI_API_VERSION"
	envAzdEnvName    = "AZURE_ENV_NAME"
)

// Config says which Azure OpenAI deployment to call and as whom. [LoadConfig] fills it
// from the variables azd provisions; the zero value is not valid.
type Config struct {
	// Endpoint is the account's endpoint, such as https://<name>.openai.azure.com/
	// (AZURE_OPENAI_ENDPOINT). It must use https, except on a loopback host.
	Endpoint string

	// Deployment is the model deployment's name (AZURE_OPENAI_CHAT_DEPLOYMENT, or its
	// older name AZURE_OPENAI_CHATGPT_DEPLOYMENT). The v1 API takes it as the model.
	Deployment string

	// APIVersion selects the API (AZURE_OPENAI_API_VERSION): "" or "v1" for the v1 API
	// (<endpoint>/openai/v1/), a date such as 2024-10-21 (or 2025-04-01-preview) for the
	// dated deployments API (<endpoint>/openai/deployments/<deployment>/...?api-version=).
	APIVersion string

	// ClientID is the client ID of the app's user-assigned managed identity
	// (AZURE_CLIENT_ID); empty for a system-assigned identity or none.
	ClientID string

	// TenantID is the Microsoft Entra tenant (AZURE_TENANT_ID); the developer sources
	// sign in there. Empty means the tool's default tenant.
	TenantID string
}

// ConfigOptions configures [LoadConfig]. The zero value reads only the process
// environment.
type ConfigOptions struct {
	// Getenv looks up an environment variable; nil means os.Getenv.
	Getenv func(string) string

	// AzdEnv also reads the current azd environment's .env file, for values the
	// environment does not set: .azure/<name>/.env in the nearest directory, starting
	// at Dir and going up, that has a .azure directory. <name> is AZURE_ENV_NAME, or
	// the defaultEnvironment in .azure/config.json.
	AzdEnv bool

	// Dir is where the search for .azure starts; "" means the working directory.
	Dir string
}

// LoadConfig reads the configuration from the environment and, when opts.AzdEnv is set,
// from the current azd environment's .env file (the environment wins). It validates the
// result and returns a *[ConfigError] listing every problem at once, including two
// different deployment names under the current and the older variable. It returns the
// configuration it read even then, so a caller can report what it found.
func LoadConfig(opts *ConfigOptions) (Config, error) {
	if opts == nil {
		opts = &ConfigOptions{}
	}
	getenv := opts.Getenv
	if getenv == nil {
		getenv = os.Getenv
	}

	var problems []string
	var file map[string]string // the azd environment's values, if read
	azdNote := ""
	if opts.AzdEnv {
		values, note, err := readAzdEnv(opts.Dir, getenv(envAzdEnvName))
		if err != nil {
			problems = append(problems, err.Error())
		}
		file, azdNote = values, note
	}
	lookup := func(name string) string {
		if v := strings.TrimSpace(getenv(name)); v != "" {
			return v
		}
		return strings.TrimSpace(file[name])
	}

	cfg := Config{
		Endpoint:   lookup(envEndpoint),
		APIVersion: lookup(envAPIVersion),
		ClientID:   lookup(envClientID),
		TenantID:   lookup(envTenantID),
	}
	// The deployment's two names are resolved within one source: a name set in the
	// environment overrides both names in the file.
	deployment, conflict := deploymentOf(func(name string) string {
		return strings.TrimSpace(getenv(name))
	})
	if deployment == "" && conflict == "" {
		deployment, conflict = deploymentOf(func(name string) string {
			return strings.TrimSpace(file[name])
		})
	}
	cfg.Deployment = deployment

	problems = append(problems, cfg.problems()...)
	if conflict != "" {
		problems = append(problems, conflict)
	}
	if azdNote != "" && cfg.missing() {
		problems = append(problems, azdNote)
	}
	if len(problems) > 0 {
		return cfg, &ConfigError{Problems: problems}
	}
	return cfg, nil
}

// deploymentOf returns the deployment named by lookup under the current or the older
// variable, and a problem when the two differ.
func deploymentOf(lookup func(string) string) (deployment, conflict string) {
	cur, old := lookup(envDeployment), lookup(envOldDeployment)
	switch {
	case cur == "":
		return old, ""
	case old == "" || old == cur:
		return cur, ""
	}
	return cur, fmt.Sprintf("%s=%q and %s=%q differ; set only %s (%s is its older name)",
		envDeployment, cur, envOldDeployment, old, envDeployment, envOldDeployment)
}

// Validate checks c and returns a *[ConfigError] listing every problem, or nil.
func (c Config) Validate() error {
	if p := c.problems(); len(p) > 0 {
		return &ConfigError{Problems: p}
	}
	return nil
}

// getValue is the hint on how to get a variable's value.
func getValue(name string) string {
	return "(azd env get-value " + name + ")"
}

func (c Config) missing() bool {
	return c.Endpoint == "" || c.Deployment == ""
}

var (
	datedVersion   = regexp.MustCompile(`^(\d{4}-\d{2}-\d{2})(-preview)?$`)
	deploymentName = regexp.MustCompile(`^[A-Za-z0-9._-]+$`)
	tenantIDChars  = regexp.MustCompile(`^[A-Za-z0-9.-]+$`)
)

func (c Config) problems() []string {
	var p []string
	if c.Endpoint == "" {
		p = append(p, envEndpoint+" is not set "+getValue(envEndpoint))
	} else if msg := endpointProblem(c.Endpoint); msg != "" {
		p = append(p, fmt.Sprintf("%s=%q %s %s", envEndpoint, c.Endpoint, msg,
			getValue(envEndpoint)))
	}
	if c.Deployment == "" {
		p = append(p, envDeployment+" is not set "+getValue(envDeployment))
	} else if !deploymentName.MatchString(c.Deployment) {
		p = append(p, fmt.Sprintf("%s=%q may hold only letters, digits, '.', '_' and '-' %s",
			envDeployment, c.Deployment, getValue(envDeployment)))
	}
	if c.APIVersion != "" && c.APIVersion != "v1" && !validDate(c.APIVersion) {
		p = append(p, fmt.Sprintf("%s=%q is neither v1 nor a date such as 2024-10-21 "+
			"(leave it unset for the v1 API)", envAPIVersion, c.APIVersion))
	}
	if c.TenantID != "" && !tenantIDChars.MatchString(c.TenantID) {
		p = append(p, fmt.Sprintf("%s=%q is not a tenant ID %s", envTenantID, c.TenantID,
			getValue(envTenantID)))
	}
	return p
}

func validDate(v string) bool {
	m := datedVersion.FindStringSubmatch(v)
	if m == nil {
		return false
	}
	_, err := time.Parse(time.DateOnly, m[1])
	return err == nil
}

// dated reports whether c selects the dated deployments API.
func (c Config) dated() bool {
	return c.APIVersion != "" && c.APIVersion != "v1"
}

// endpointProblem says what is wrong with an endpoint, or "".
func endpointProblem(endpoint string) string {
	u, err := url.Parse(endpoint)
	switch {
	case err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http"):
		return "is not a URL such as https://<name>.openai.azure.com/"
	case u.User != nil || u.RawQuery != "" || u.Fragment != "" || u.ForceQuery:
		return "must have no user, query or fragment"
	case u.Scheme == "http" && !isLoopback(u.Hostname()):
		return "must use https (http is allowed only for a loopback host)"
	case slices.Contains(strings.Split(u.Path, "/"), "openai"):
		return "must be the account's endpoint, without the /openai/... path"
	}
	return ""
}

// isLoopback reports whether host is localhost or a loopback address.
func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// readAzdEnv finds and reads the current azd environment's .env file. It returns its
// values; nil values and a note when there is no azd environment; an error when there is
// one but it cannot be read.
func readAzdEnv(dir, envName string) (values map[string]string, note string, err error) {
	if dir == "" {
		if dir, err = os.Getwd(); err != nil {
			return nil, "", fmt.Errorf("azd environment: %w", err)
		}
	}
	dir, err = filepath.Abs(dir)
	if err != nil {
		return nil, "", fmt.Errorf("azd environment: %w", err)
	}
	azure := ""
	for d := dir; ; d = filepath.Dir(d) {
		if fi, err := os.Stat(filepath.Join(d, ".azure")); err == nil && fi.IsDir() {
			azure = filepath.Join(d, ".azure")
			break
		}
		if filepath.Dir(d) == d {
			break
		}
	}
	if azure == "" {
		return nil, "no azd environment found (no .azure directory in " + dir +
			" or above); run azd up, or set the variables", nil
	}

	if envName == "" {
		b, err := os.ReadFile(filepath.Join(azure, "config.json"))
		if errors.Is(err, fs.ErrNotExist) {
			return nil, "no azd environment selected (" + envAzdEnvName + " is not set and " +
				filepath.Join(azure, "config.json") + " does not exist); run azd env select", nil
		}
		if err != nil {
			return nil, "", fmt.Errorf("azd environment: %w", err)
		}
		var cfg struct {
			DefaultEnvironment string `json:"defaultEnvironment"`
		}
		if err := json.Unmarshal(b, &cfg); err != nil {
			return nil, "", fmt.Errorf("azd environment: %s: %w",
				filepath.Join(azure, "config.json"), err)
		}
		if cfg.DefaultEnvironment == "" {
			return nil, "no azd environment selected (" + envAzdEnvName + " is not set and " +
				filepath.Join(azure, "config.json") + " names no defaultEnvironment); " +
				"run azd env select", nil
		}
		envName = cfg.DefaultEnvironment
	}
	if envName != filepath.Base(envName) || envName == "." || envName == ".." {
		return nil, "", fmt.Errorf("azd environment: name %q is not a directory name",
			envName)
	}

	file := filepath.Join(azure, envName, ".env")
	b, err := os.ReadFile(file)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, "azd environment " + envName + " has no " + file +
			"; run azd env refresh", nil
	}
	if err != nil {
		return nil, "", fmt.Errorf("azd environment: %w", err)
	}
	values, err = parseDotEnv(b)
	if err != nil {
		return nil, "", fmt.Errorf("azd environment: %s: %w", file, err)
	}
	return values, "", nil
}

// parseDotEnv parses the KEY="value" lines azd writes: blank lines and # comments are
// skipped, "export " is allowed, values may be double-quoted (with backslash escapes),
// single-quoted (literal) or bare (up to a " #" comment).
func parseDotEnv(b []byte) (map[string]string, error) {
	values := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		line = strings.TrimPrefix(line, "export ")
		key, raw, ok := strings.Cut(line, "=")
		key = strings.TrimSpace(key)
		if !ok || key == "" || strings.ContainsAny(key, " \t\"'") {
			return nil, fmt.Errorf("line %d: not KEY=value", n)
		}
		v, err := dotEnvValue(strings.TrimSpace(raw))
		if err != nil {
			return nil, fmt.Errorf("line %d: %s: %w", n, key, err)
		}
		values[key] = v
	}
	return values, sc.Err()
}

func dotEnvValue(raw string) (string, error) {
	switch {
	case strings.HasPrefix(raw, `"`):
		var b strings.Builder
		for i := 1; i < len(raw); i++ {
			switch ch := raw[i]; ch {
			case '"':
				rest := strings.TrimSpace(raw[i+1:])
				if rest != "" && !strings.HasPrefix(rest, "#") {
					return "", errors.New("text after the closing quote")
				}
				return b.String(), nil
			case '\\':
				i++
				if i == len(raw) {
					return "", errors.New("unterminated quote")
				}
				switch raw[i] {
				case 'n':
					b.WriteByte('\n')
				case 'r':
					b.WriteByte('\r')
				case 't':
					b.WriteByte('\t')
				default:
					b.WriteByte(raw[i])
				}
			default:
				b.WriteByte(ch)
			}
		}
		return "", errors.New("unterminated quote")
	case strings.HasPrefix(raw, "'"):
		end := strings.IndexByte(raw[1:], '\'')
		if end < 0 {
			return "", errors.New("unterminated quote")
		}
		return raw[1 : end+1], nil
	default:
		if i := strings.Index(raw, " #"); i >= 0 {
			raw = raw[:i]
		}
		return strings.TrimSpace(raw), nil
	}
}
