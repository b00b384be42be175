package aoaitest

import (
	"bufio"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// azdStateEnv names the variable through which the azd script tells the test binary,
// run again as a child process, to act as azd with the state in that directory.
const azdStateEnv = "AOAITEST_AZD_STATE"

// azdClientID is the public client id azd signs users in with (Azure CLI's).
const azdClientID = "04b07795-8ddb-461a-bbee-02f9e1bf7b46"

// expiresOnLayout is the layout of azd's expiresOn, the one azidentity parses.
const expiresOnLayout = "2006-01-02T15:04:05Z"

func init() {
	if dir := os.Getenv(azdStateEnv); dir != "" {
		os.Exit(runAzd(dir, os.Args[1:], os.Stdout, os.Stderr))
	}
}

// Azd is an `azd` command on PATH, standing in for the Azure Developer CLI signed in
// as a developer. It answers
//
//	azd auth token -o json --no-prompt --scope S [--scope S2] [--tenant-id T]
//
// as the real command does: on stdout {"token": "...", "expiresOn": "..."} with
// expiresOn in UTC as 2006-01-02T15:04:05Z; when signed out, on stderr a JSON error
// naming `azd auth login`, and exit status 1. Tokens are minted by the same issuer as
// [Identity]'s, for the audience of the first scope, naming PrincipalID (and the
// tenant of --tenant-id, when given). It caches nothing: every call mints a token.
//
// The command is a small shell script that runs the test binary again in a mode that
// acts as azd (this package's init function recognizes it), so it needs no build
// step. It works where azidentity runs azd through /bin/sh, that is not on Windows.
//
// The methods of Azd are safe for concurrent use.
type Azd struct {
	state     string
	principal string
	mu        sync.Mutex
}

// NewAzd writes the azd command into a temporary directory of t and puts that
// directory first on PATH with t.Setenv, signed in. On Windows it skips t.
func NewAzd(t testing.TB) *Azd {
	t.Helper()
	if runtime.GOOS == "windows" {
		t.Skip("aoaitest: the azd stand-in needs /bin/sh")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatalf("aoaitest: cannot find the test binary for the azd stand-in: %v", err)
	}
	dir := t.TempDir()
	a := &Azd{state: filepath.Join(dir, "state"), principal: newID()}
	bin := filepath.Join(dir, "bin")
	files := map[string]string{
		filepath.Join(a.state, "key"):       hex.EncodeToString(signingKey),
		filepath.Join(a.state, "principal"): a.principal,
		filepath.Join(a.state, "tenant"):    DefaultTenantID,
		filepath.Join(a.state, "lifetime"):  time.Hour.String(),
		filepath.Join(bin, "azd"): "#!/bin/sh\nexport " + azdStateEnv + "=" +
			shQuote(a.state) + "\n" + raceQuiet + "exec " + shQuote(exe) + " \"$@\"\n",
	}
	for _, d := range []string{a.state, bin} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatalf("aoaitest: %v", err)
		}
	}
	for name, content := range files {
		if err := os.WriteFile(name, []byte(content), 0o700); err != nil {
			t.Fatalf("aoaitest: %v", err)
		}
	}
	t.Setenv("PATH", bin+string(os.PathListSeparator)+os.Getenv("PATH"))
	return a
}

// raceQuiet spares the child the race detector's one-second sleep at exit when the
// test binary was built with -race.
const raceQuiet = `export GORACE="${GORACE:+$GORACE }atexit_sleep_ms=0"` + "\n"

// shQuote quotes s for /bin/sh.
func shQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// SignOut makes azd answer as when nobody is signed in.
func (a *Azd) SignOut() {
	a.mu.Lock()
	defer a.mu.Unlock()
	os.WriteFile(filepath.Join(a.state, "signed-out"), nil, 0o600)
}

// SignIn undoes SignOut.
func (a *Azd) SignIn() {
	a.mu.Lock()
	defer a.mu.Unlock()
	os.Remove(filepath.Join(a.state, "signed-out"))
}

// SetLifetime sets the lifetime of the tokens azd prints from now on (default one
// hour). A lifetime of zero or less prints tokens that have already expired.
func (a *Azd) SetLifetime(d time.Duration) {
	a.mu.Lock()
	defer a.mu.Unlock()
	os.WriteFile(filepath.Join(a.state, "lifetime"), []byte(d.String()), 0o600)
}

// PrincipalID returns the object id (oid) of the signed-in developer.
func (a *Azd) PrincipalID() string { return a.principal }

// Calls reports how many times azd has been run.
func (a *Azd) Calls() int { return len(a.Args()) }

// Args returns the arguments of each run of azd, in order.
func (a *Azd) Args() [][]string {
	a.mu.Lock()
	defer a.mu.Unlock()
	f, err := os.Open(filepath.Join(a.state, "calls"))
	if err != nil {
		return nil
	}
	defer f.Close()
	var out [][]string
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var args []string
		if json.Unmarshal(sc.Bytes(), &args) == nil {
			out = append(out, args)
		}
	}
	return out
}

// azdArgs are the parsed arguments of `azd auth token`.
type azdArgs struct {
	output   string
	scopes   []string
	tenantID string
}

func parseAzdArgs(args []string) (azdArgs, error) {
	a := azdArgs{output: "none"}
	if len(args) < 2 || args[0] != "auth" || args[1] != "token" {
		return a, fmt.Errorf("the aoaitest azd stand-in only answers `azd auth token`, "+
			"not `azd %s`", strings.Join(args, " "))
	}
	for i := 2; i < len(args); i++ {
		name, value, hasValue := strings.Cut(args[i], "=")
		takesValue := map[string]bool{
			"-o": true, "--output": true, "--scope": true, "--tenant-id": true, "--claims": true,
		}
		switch {
		case name == "--no-prompt" && !hasValue:
			continue
		case !takesValue[name]:
			return a, fmt.Errorf("unknown flag: %s", name)
		case !hasValue:
			if i+1 >= len(args) {
				return a, fmt.Errorf("flag needs an argument: %s", name)
			}
			i++
			value = args[i]
		}
		switch name {
		case "-o", "--output":
			a.output = value
		case "--scope":
			a.scopes = append(a.scopes, value)
		case "--tenant-id":
			a.tenantID = value
		}
	}
	if len(a.scopes) == 0 {
		a.scopes = []string{"https://management.azure.com//.default"}
	}
	return a, nil
}

// runAzd is the azd stand-in's main: it answers args with the state in dir.
func runAzd(dir string, args []string, stdout, stderr io.Writer) int {
	if line, err := json.Marshal(args); err == nil {
		f, err := os.OpenFile(filepath.Join(dir, "calls"),
			os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
		if err == nil {
			f.Write(append(line, '\n'))
			f.Close()
		}
	}
	fail := func(msg, suggestion string) int {
		b, _ := json.Marshal(map[string]string{
			"error": msg, "message": msg, "suggestion": suggestion,
		})
		fmt.Fprintf(stderr, "%s\n", b)
		return 1
	}

	a, err := parseAzdArgs(args)
	if err != nil {
		return fail(err.Error(), "Run `azd auth token --help` for usage.")
	}
	if _, err := os.Stat(filepath.Join(dir, "signed-out")); err == nil {
		return fail("not logged in, run `azd auth login` to login",
			"Run `azd auth login` to sign in, then try again.")
	}
	read := func(name string) string {
		b, _ := os.ReadFile(filepath.Join(dir, name))
		return strings.TrimSpace(string(b))
	}
	key, err := hex.DecodeString(read("key"))
	lifetime, lerr := time.ParseDuration(read("lifetime"))
	if err = errors.Join(err, lerr); err != nil {
		return fail("aoaitest: azd stand-in state is damaged: "+err.Error(), "")
	}

	tenant := read("tenant")
	if a.tenantID != "" {
		tenant = a.tenantID
	}
	aud := strings.TrimSuffix(a.scopes[0], "/.default")
	c := newClaims(aud, read("principal"), azdClientID, tenant, "user", lifetime)
	token := mint(key, c)
	if a.output != "json" {
		fmt.Fprintln(stdout, token)
		return 0
	}
	b, _ := json.MarshalIndent(map[string]string{
		"token":     token,
		"expiresOn": time.Unix(c.Expires, 0).UTC().Format(expiresOnLayout),
	}, "", "  ")
	fmt.Fprintf(stdout, "%s\n", b)
	return 0
}
