package infra_test

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestBicepReaderSeesCodeNotComments pins the reader the checks rely on: a
// word in a comment is not code, a // inside a string is not a comment, and
// interpolations are code again.
func TestBicepReaderSeesCodeNotComments(t *testing.T) {
	src := `// listKeys( in a comment
/* and 'in' a block
   comment */
@description('Port (the app\'s) // not a comment')
param appPort int = 8080

var url = 'https://${name}.example/${toLower('A')}' // trailing
var obj = {
  'quoted-key': 'v'
  plain: [
    1
    2
  ]
}
resource acct 'Microsoft.CognitiveServices/accounts@2025-06-01' existing = {
  name: 'x'
}
`
	f := parseBicep("main.bicep", src)
	type got struct{ Kind, Name, Typ, Value string }
	var decls []got
	for _, d := range f.decls {
		decls = append(decls, got{d.kind, d.name, d.typ, d.value})
	}
	want := []got{
		{"param", "appPort", "int", "8080"},
		{"var", "url", "", "'https://${name}.example/${toLower('A')}'"},
		{"var", "obj", "", "{\n  'quoted-key': 'v'\n  plain: [\n    1\n    2\n  ]\n}"},
		{"resource", "acct", "Microsoft.CognitiveServices/accounts@2025-06-01",
			"{\n  name: 'x'\n}"},
	}
	if diff := cmp.Diff(want, decls); diff != "" {
		t.Errorf("declarations (-want +got):\n%s", diff)
	}

	if calls := listCalls(f.text); len(calls) != 0 {
		t.Errorf("listCalls found %v in comments", calls)
	}
	if d := f.decls[0].decorators; len(d) != 1 {
		t.Errorf("decorators of appPort = %q, want one", d)
	}
	if !f.decls[3].existing || len(f.resources("Microsoft.CognitiveServices/accounts")) != 0 {
		t.Errorf("an existing resource counts as deployed")
	}

	obj := f.decls[2].value
	if v, _ := field(obj, "quoted-key"); v != "'v'" {
		t.Errorf("field quoted-key = %q", v)
	}
	if items := arrayItems(mustField(t, obj, "plain")); !cmp.Equal(items, []string{"1", "2"}) {
		t.Errorf("plain items = %q", items)
	}
	tmpl := &template{files: map[string]*bicepFile{"main.bicep": f}, mainPath: "main.bicep"}
	if v, ok := tmpl.resolve(f, "string(appPort)"); !ok || v != "8080" {
		t.Errorf("resolve(string(appPort)) = %v, %v; want 8080", v, ok)
	}
}

func mustField(t *testing.T, obj, key string) string {
	t.Helper()
	v, ok := field(obj, key)
	if !ok {
		t.Fatalf("no field %s in %s", key, obj)
	}
	return v
}

// TestYAMLReaderFollowsIndentation pins the azure.yaml reader.
func TestYAMLReaderFollowsIndentation(t *testing.T) {
	got, err := parseYAML(`# comment
name: app # trailing comment
services:
  web:
    project: "./a#b"
    docker:
      path: ./Dockerfile
  api:
    host: containerapp
`)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"name": "app",
		"services": map[string]any{
			"web": map[string]any{
				"project": "./a#b",
				"docker":  map[string]any{"path": "./Dockerfile"},
			},
			"api": map[string]any{"host": "containerapp"},
		},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("parseYAML (-want +got):\n%s", diff)
	}
}
