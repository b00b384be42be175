package infra_test

// What the code expects of the infrastructure, read from the code itself
// where it says so in one place.

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path"
	"strconv"
	"strings"
)

// facts is what the code expects of the infrastructure.
type facts struct {
	port           int      // the port the app listens on without PORT
	appEnv         []string // variables the container app must set
	keylessOutputs []string // variables keyless reads from the azd environment's .env
}

// Read by hand: the code has no constant for these yet.
//
// TODO(infra): read the default port from the app once it exports one (such
// as app.DefaultPort in examples/chatapp/app); examples/chatapp/run.go has
// it as the literal ":8080". Likewise RUNNING_IN_PRODUCTION, which
// examples/chatapp/app/server.go spells inline.
const (
	appDefaultPort      = 8080
	runningInProduction = "RUNNING_IN_PRODUCTION"
)

// keylessVars names the constants in package keyless that spell the variables
// it reads, and whether each is also an azd output keyless reads locally.
var keylessVars = []struct {
	constant string
	output   bool // keyless reads it from the azd .env file (not the identity's id)
}{
	{"envEndpoint", true},
	{"envDeployment", true},
	{"envAPIVersion", true},
	{"envTenantID", true},
	{"envClientID", false}, // set on the container app only: it names the app identity
}

// readFacts reads the variable names from package keyless's source in root.
func readFacts(root fs.FS) (facts, error) {
	consts, err := stringConsts(root, "keyless")
	if err != nil {
		return facts{}, err
	}
	f := facts{port: appDefaultPort}
	for _, v := range keylessVars {
		name, ok := consts[v.constant]
		if !ok {
			return facts{}, fmt.Errorf("package keyless no longer declares the constant %s; "+
				"update keylessVars in infra/facts_test.go", v.constant)
		}
		f.appEnv = append(f.appEnv, name)
		if v.output {
			f.keylessOutputs = append(f.keylessOutputs, name)
		}
	}
	f.appEnv = append(f.appEnv, runningInProduction)
	return f, nil
}

// stringConsts returns the string constants declared in the non-test Go
// files of dir, by name.
func stringConsts(root fs.FS, dir string) (map[string]string, error) {
	entries, err := fs.ReadDir(root, dir)
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	fset := token.NewFileSet()
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || !strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.go") {
			continue
		}
		src, err := fs.ReadFile(root, path.Join(dir, name))
		if err != nil {
			return nil, err
		}
		file, err := parser.ParseFile(fset, name, src, parser.SkipObjectResolution)
		if err != nil {
			return nil, err
		}
		for _, d := range file.Decls {
			gen, ok := d.(*ast.GenDecl)
			if !ok || gen.Tok != token.CONST {
				continue
			}
			for _, spec := range gen.Specs {
				vs := spec.(*ast.ValueSpec)
				for i, id := range vs.Names {
					if i >= len(vs.Values) {
						break
					}
					lit, ok := vs.Values[i].(*ast.BasicLit)
					if !ok || lit.Kind != token.STRING {
						continue
					}
					if s, err := strconv.Unquote(lit.Value); err == nil {
						out[id.Name] = s
					}
				}
			}
		}
	}
	return out, nil
}
