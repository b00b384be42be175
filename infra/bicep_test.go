package infra_test

// A reader for the small part of Bicep the checks need: top-level
// declarations, object fields, array items, and where a value comes from.
// It works on text with the comments blanked out, so a word inside a comment
// never satisfies or fails a check.

import (
	"encoding/json"
	"fmt"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// Character classes of classify.
const (
	classCode    = 'c'
	classString  = 's'
	classComment = 'm'
)

// scan tells visit, byte by byte, whether each byte of src is code, part of
// a string literal, or part of a comment, until visit returns false.
// Interpolations (${...}) inside strings are code again, and may hold strings
// of their own.
func scan(src string, visit func(i int, class byte) bool) {
	type frame struct {
		inString bool
		braces   int // open braces inside an interpolation
	}
	stack := []frame{{}}
	stopped := false
	mark := func(from, to int, c byte) {
		for i := from; i < to && i < len(src) && !stopped; i++ {
			stopped = !visit(i, c)
		}
	}
	for i := 0; i < len(src) && !stopped; {
		top := &stack[len(stack)-1]
		if top.inString {
			switch {
			case src[i] == '\\':
				mark(i, i+2, classString)
				i += 2
			case src[i] == '\'':
				mark(i, i+1, classString)
				stack = stack[:len(stack)-1]
				i++
			case strings.HasPrefix(src[i:], "${"):
				mark(i, i+2, classString)
				stack = append(stack, frame{})
				i += 2
			default:
				mark(i, i+1, classString)
				i++
			}
			continue
		}
		switch {
		case strings.HasPrefix(src[i:], "'''"):
			stop := len(src)
			if end := strings.Index(src[i+3:], "'''"); end >= 0 {
				stop = i + 3 + end + 3
			}
			mark(i, stop, classString)
			i = stop
			continue
		case strings.HasPrefix(src[i:], "//"):
			stop := len(src)
			if end := strings.IndexByte(src[i:], '\n'); end >= 0 {
				stop = i + end
			}
			mark(i, stop, classComment)
			i = stop
			continue
		case strings.HasPrefix(src[i:], "/*"):
			stop := len(src)
			if end := strings.Index(src[i+2:], "*/"); end >= 0 {
				stop = i + 2 + end + 2
			}
			mark(i, stop, classComment)
			i = stop
			continue
		case src[i] == '\'':
			mark(i, i+1, classString)
			stack = append(stack, frame{inString: true})
			i++
			continue
		}
		if len(stack) > 1 { // inside an interpolation
			switch src[i] {
			case '{':
				top.braces++
			case '}':
				if top.braces == 0 {
					mark(i, i+1, classString)
					stack = stack[:len(stack)-1]
					i++
					continue
				}
				top.braces--
			}
		}
		mark(i, i+1, classCode)
		i++
	}
}

// classify returns the class scan gives each byte of src.
func classify(src string) []byte {
	class := make([]byte, len(src))
	scan(src, func(i int, c byte) bool {
		class[i] = c
		return true
	})
	return class
}

// stripComments blanks out comments, keeping line breaks and offsets.
func stripComments(src string) string {
	class := classify(src)
	b := []byte(src)
	for i, c := range class {
		if c == classComment && b[i] != '\n' {
			b[i] = ' '
		}
	}
	return string(b)
}

// takeExpr returns the expression that starts at s[0]: up to the end of the
// line, or further while brackets opened on it are still open. A comma at
// depth zero also ends it when stopAtComma is set (inside object and array
// literals written on one line).
func takeExpr(s string, stopAtComma bool) string {
	depth, end := 0, len(s)
	scan(s, func(i int, class byte) bool {
		if class != classCode {
			return true
		}
		switch s[i] {
		case '(', '[', '{':
			depth++
		case ')', ']', '}':
			if depth == 0 {
				end = i
				return false
			}
			depth--
		case '\n':
			if depth == 0 {
				end = i
				return false
			}
		case ',':
			if depth == 0 && stopAtComma {
				end = i
				return false
			}
		}
		return true
	})
	return strings.TrimSpace(s[:end])
}

// decl is one top-level declaration of a Bicep file.
type decl struct {
	kind       string   // param, var, resource, module, output, targetScope, ...
	name       string   // symbolic name
	existing   bool     // a resource declared with "existing": referenced, not deployed
	typ        string   // param or output type; resource type@version; module path
	value      string   // default, expression, or a resource's or module's body
	decorators []string // "@description('...')", in order
}

// bicepFile is a Bicep file, read as text.
type bicepFile struct {
	path  string // slash path from the repository root
	text  string // comments blanked out
	decls []decl
}

var identRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*`)

// parseBicep splits a file into its top-level declarations.
func parseBicep(filePath, src string) *bicepFile {
	f := &bicepFile{path: filePath, text: stripComments(src)}
	s := f.text
	class := classify(s)
	var pending []string
	for i := 0; i < len(s); {
		if s[i] == ' ' || s[i] == '\t' || s[i] == '\r' || s[i] == '\n' || class[i] != classCode {
			i++
			continue
		}
		if s[i] == '@' {
			// A decorator: @name, or @name( ... ) over any number of lines.
			name := identRE.FindString(s[i+1:])
			j := i + 1 + len(name)
			if j < len(s) && s[j] == '(' {
				j = matchClose(s, j) + 1
			}
			pending = append(pending, strings.TrimSpace(s[i:j]))
			i = j
			continue
		}
		keyword := identRE.FindString(s[i:])
		if keyword == "" {
			i++
			continue
		}
		rest := s[i+len(keyword):]
		stmt := takeExpr(rest, false)
		d := decl{kind: keyword, decorators: pending}
		pending = nil
		d.parse(stmt)
		f.decls = append(f.decls, d)
		// Skip past the statement: find it again from here.
		i += len(keyword) + strings.Index(rest, stmt) + len(stmt)
	}
	return f
}

// parse fills name, typ and value from the statement after the keyword.
func (d *decl) parse(stmt string) {
	name := identRE.FindString(stmt)
	d.name = name
	rest := strings.TrimSpace(stmt[len(name):])
	switch d.kind {
	case "param", "output":
		typ, value, _ := cutTopLevel(rest, '=')
		d.typ, d.value = strings.TrimSpace(typ), strings.TrimSpace(value)
	case "var":
		_, value, _ := cutTopLevel(rest, '=')
		d.value = strings.TrimSpace(value)
	case "resource", "module":
		quoted := firstString(rest)
		if lit, ok := stringLiteral(quoted); ok {
			d.typ = lit
		}
		afterType := rest[strings.Index(rest, quoted)+len(quoted):]
		head, _, _ := cutTopLevel(afterType, '=')
		d.existing = strings.TrimSpace(head) == "existing"
		if open := indexCode(rest, '{'); open >= 0 {
			d.value = rest[open : matchClose(rest, open)+1]
		}
	default:
		d.value = rest
	}
}

// cutTopLevel cuts s around the first c that is code at depth zero.
func cutTopLevel(s string, c byte) (before, after string, found bool) {
	depth, at := 0, -1
	scan(s, func(i int, class byte) bool {
		if class != classCode {
			return true
		}
		switch s[i] {
		case '(', '[', '{':
			depth++
		case ')', ']', '}':
			depth--
		case c:
			if depth == 0 {
				at = i
				return false
			}
		}
		return true
	})
	if at < 0 {
		return s, "", false
	}
	return s[:at], s[at+1:], true
}

// matchClose returns the index of the bracket that closes the one at
// s[open], or len(s)-1 when it is never closed.
func matchClose(s string, open int) int {
	depth, at := 0, len(s)-1
	scan(s[open:], func(i int, class byte) bool {
		if class != classCode {
			return true
		}
		switch s[open+i] {
		case '(', '[', '{':
			depth++
		case ')', ']', '}':
			depth--
			if depth == 0 {
				at = open + i
				return false
			}
		}
		return true
	})
	return at
}

// indexCode is the index of the first c in s that is code, or -1.
func indexCode(s string, c byte) int {
	at := -1
	scan(s, func(i int, class byte) bool {
		if class == classCode && s[i] == c {
			at = i
			return false
		}
		return true
	})
	return at
}

// firstString returns the first string literal in s, quotes included.
func firstString(s string) string {
	class := classify(s)
	start := -1
	for i := 0; i < len(s); i++ {
		if class[i] == classString && start < 0 {
			start = i
		}
		if start >= 0 && (class[i] != classString || i == len(s)-1) {
			end := i
			if class[i] == classString {
				end = i + 1
			}
			return s[start:end]
		}
	}
	return ""
}

// stringLiteral unquotes a plain Bicep string literal; one with an
// interpolation is not plain.
func stringLiteral(expr string) (string, bool) {
	expr = strings.TrimSpace(expr)
	if len(expr) < 2 || expr[0] != '\'' || expr[len(expr)-1] != '\'' ||
		strings.Contains(expr, "${") {
		return "", false
	}
	inner := expr[1 : len(expr)-1]
	if strings.Contains(strings.ReplaceAll(inner, `\'`, ""), "'") {
		return "", false // two literals and something between them
	}
	return strings.ReplaceAll(strings.ReplaceAll(inner, `\'`, "'"), `\\`, `\`), true
}

// field returns the value of key in the object literal obj ("{ ... }").
func field(obj, key string) (string, bool) {
	for _, e := range entries(obj) {
		if e.key == key {
			return e.value, true
		}
	}
	return "", false
}

// fieldPath follows keys through nested object literals.
func fieldPath(obj string, keys ...string) (string, bool) {
	v := obj
	for _, k := range keys {
		var ok bool
		if v, ok = field(v, k); !ok {
			return "", false
		}
	}
	return v, true
}

type entry struct{ key, value string }

// entries lists the key: value pairs of an object literal, in order.
func entries(obj string) []entry {
	obj = strings.TrimSpace(obj)
	if !strings.HasPrefix(obj, "{") {
		return nil
	}
	body := strings.TrimSuffix(obj[1:], "}")
	var out []entry
	for _, item := range items(body) {
		k, v, ok := cutTopLevel(item, ':')
		if !ok {
			continue
		}
		k = strings.TrimSpace(k)
		if lit, ok := stringLiteral(k); ok {
			k = lit
		}
		out = append(out, entry{key: k, value: strings.TrimSpace(v)})
	}
	return out
}

// arrayItems lists the elements of an array literal ("[ ... ]").
func arrayItems(arr string) []string {
	arr = strings.TrimSpace(arr)
	if !strings.HasPrefix(arr, "[") {
		return nil
	}
	return items(strings.TrimSuffix(arr[1:], "]"))
}

// items splits the inside of an object or array literal into its elements,
// which Bicep separates with line breaks (or commas on one line).
func items(body string) []string {
	var out []string
	for rest := body; strings.TrimSpace(rest) != ""; {
		rest = strings.TrimLeft(rest, " \t\r\n,")
		if rest == "" {
			break
		}
		item := takeExpr(rest, true)
		if item == "" { // a stray closing bracket: nothing more to read
			break
		}
		out = append(out, item)
		rest = rest[strings.Index(rest, item)+len(item):]
	}
	return out
}

// ---------------------------------------------------------------------------
// The template as a whole

// template is the Bicep files under infra/ and the parameters file.
type template struct {
	files      map[string]*bicepFile // by slash path from the repository root
	mainPath   string
	parameters map[string]any // main.parameters.json: name -> value
}

func (t *template) main() *bicepFile { return t.files[t.mainPath] }

// find returns the declaration of kind and name in f.
func (f *bicepFile) find(kind, name string) (decl, bool) {
	for _, d := range f.decls {
		if d.kind == kind && d.name == name {
			return d, true
		}
	}
	return decl{}, false
}

// symbol returns any declaration with the symbolic name.
func (f *bicepFile) symbol(name string) (decl, bool) {
	for _, d := range f.decls {
		if d.name == name && d.kind != "output" {
			return d, true
		}
	}
	return decl{}, false
}

// resources lists the resources the file deploys (not those it only
// references as existing) whose type, before the @, is typ.
func (f *bicepFile) resources(typ string) []decl {
	var out []decl
	for _, d := range f.decls {
		if d.kind == "resource" && !d.existing &&
			strings.EqualFold(strings.SplitN(d.typ, "@", 2)[0], typ) {
			out = append(out, d)
		}
	}
	return out
}

// modulePath resolves a module declaration's path in f to a file path.
func (f *bicepFile) modulePath(d decl) string {
	return path.Clean(path.Join(path.Dir(f.path), d.typ))
}

// caller is a module declaration that deploys a file, and where it is.
type caller struct {
	file *bicepFile
	mod  decl
}

// callers lists the module declarations, in any file, that deploy target.
func (t *template) callers(target string) []caller {
	var out []caller
	for _, f := range sortedFiles(t.files) {
		for _, d := range f.decls {
			if d.kind == "module" && f.modulePath(d) == target {
				out = append(out, caller{f, d})
			}
		}
	}
	return out
}

// parameterValue is what main.parameters.json gives a parameter of main.bicep,
// as text ("${AZURE_LOCATION}", "8080"), and whether it gives one at all.
func (t *template) parameterValue(name string) (string, bool) {
	p, ok := t.parameters[name].(map[string]any)
	if !ok {
		return "", false
	}
	v, ok := p["value"]
	if !ok {
		return "", false
	}
	switch v := v.(type) {
	case string:
		return v, true
	default:
		b, _ := json.Marshal(v)
		return string(b), true
	}
}

var envRefRE = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)(?:=([^}]*))?\}`)

// resolve evaluates expr in file f to a literal (string, int or bool) when it
// is one, or is a parameter, variable or module input that comes down to
// one. Parameters of main.bicep take their value from main.parameters.json
// when it sets one (the default of an azd ${VAR=default} reference), and
// their default otherwise.
func (t *template) resolve(f *bicepFile, expr string) (any, bool) {
	return t.resolveDepth(f, strings.TrimSpace(expr), 0)
}

func (t *template) resolveDepth(f *bicepFile, expr string, depth int) (any, bool) {
	if depth > 20 {
		return nil, false
	}
	if n, err := strconv.Atoi(expr); err == nil {
		return n, true
	}
	if expr == "true" || expr == "false" {
		return expr == "true", true
	}
	if s, ok := stringLiteral(expr); ok {
		return s, true
	}
	if inner, ok := strings.CutPrefix(expr, "string("); ok && strings.HasSuffix(inner, ")") {
		v, ok := t.resolveDepth(f, strings.TrimSuffix(inner, ")"), depth+1)
		if !ok {
			return nil, false
		}
		return fmt.Sprint(v), true
	}
	if identRE.FindString(expr) != expr {
		return nil, false
	}
	d, ok := f.symbol(expr)
	if !ok {
		return nil, false
	}
	switch d.kind {
	case "var":
		return t.resolveDepth(f, d.value, depth+1)
	case "param":
		if f == t.main() {
			if v, ok := t.parameterValue(d.name); ok {
				return fromParameterFile(v, d.typ)
			}
		} else if cs := t.callers(f.path); len(cs) > 0 {
			// A module parameter: what its (first) caller passes.
			params, _ := field(cs[0].mod.value, "params")
			if arg, ok := field(params, d.name); ok {
				return t.resolveDepth(cs[0].file, arg, depth+1)
			}
		}
		if d.value == "" {
			return nil, false
		}
		return t.resolveDepth(f, d.value, depth+1)
	}
	return nil, false
}

// fromParameterFile turns a parameters-file value into a literal of the
// Bicep type typ. An azd reference counts as its default, if it has one.
func fromParameterFile(v, typ string) (any, bool) {
	if m := envRefRE.FindStringSubmatch(v); m != nil {
		if m[0] != v || !strings.Contains(m[0], "=") {
			return nil, false // decided by the azd environment
		}
		v = m[2]
	}
	switch typ {
	case "int":
		n, err := strconv.Atoi(v)
		return n, err == nil
	case "bool":
		b, err := strconv.ParseBool(v)
		return b, err == nil
	}
	return v, true
}

var chainRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*(\s*\()?`)

func isIdentByte(c byte) bool {
	return c == '_' || c == '.' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' ||
		c >= 'A' && c <= 'Z'
}

// sources names where the value of expr comes from, following variables,
// module parameters (to what their callers pass) and module outputs (into
// the module). Leaves are:
//
//	resource:<type>:<property path>   a property of a declared resource
//	param:<name>                      a parameter of main.bicep
//	env:<NAME>                        an azd variable that parameter is set from
//	literal:<text>                    a string literal
func (t *template) sources(f *bicepFile, expr string) []string {
	seen := map[string]bool{}
	var out []string
	t.collect(f, expr, seen, &out, 0)
	return out
}

func (t *template) collect(f *bicepFile, expr string, seen map[string]bool, out *[]string,
	depth int) {
	if depth > 20 {
		return
	}
	add := func(leaf string) {
		if !seen[leaf] {
			seen[leaf] = true
			*out = append(*out, leaf)
		}
	}
	class := classify(expr)
	for i := 0; i < len(expr); {
		if class[i] == classString {
			start := i
			for i < len(expr) && class[i] == classString {
				i++
			}
			if lit, ok := stringLiteral(expr[start:i]); ok {
				add("literal:" + lit)
			}
			continue
		}
		loc := chainRE.FindStringSubmatchIndex(expr[i:])
		if loc == nil || (i > 0 && isIdentByte(expr[i-1])) {
			i++
			continue
		}
		chain := strings.TrimRight(strings.TrimSuffix(expr[i:i+loc[1]], "("), " \t")
		call := loc[2] >= 0
		i += loc[1]
		if call || isKeyword(chain) {
			continue // a function call, or a keyword
		}
		parts := strings.Split(chain, ".")
		d, ok := f.symbol(parts[0])
		if !ok {
			continue
		}
		key := f.path + "#" + chain
		if seen[key] {
			continue
		}
		seen[key] = true
		switch d.kind {
		case "var":
			t.collect(f, d.value, seen, out, depth+1)
		case "param":
			if f == t.main() {
				add("param:" + d.name)
				if v, ok := t.parameterValue(d.name); ok {
					for _, m := range envRefRE.FindAllStringSubmatch(v, -1) {
						add("env:" + m[1])
					}
				}
				continue
			}
			for _, c := range t.callers(f.path) {
				params, _ := field(c.mod.value, "params")
				if arg, ok := field(params, d.name); ok {
					t.collect(c.file, arg, seen, out, depth+1)
				}
			}
		case "resource":
			add("resource:" + strings.SplitN(d.typ, "@", 2)[0] + ":" +
				strings.Join(parts[1:], "."))
		case "module":
			if len(parts) >= 3 && parts[1] == "outputs" {
				target := t.files[f.modulePath(d)]
				if target == nil {
					continue
				}
				if o, ok := target.find("output", parts[2]); ok {
					t.collect(target, o.value, seen, out, depth+1)
				}
			}
		}
	}
}

func isKeyword(s string) bool {
	switch s {
	case "true", "false", "null", "if", "for", "in", "existing":
		return true
	}
	return false
}

// sortedFiles lists the files in path order, so results do not depend on map
// iteration.
func sortedFiles(files map[string]*bicepFile) []*bicepFile {
	paths := make([]string, 0, len(files))
	for p := range files {
		paths = append(paths, p)
	}
	slices.Sort(paths)
	out := make([]*bicepFile, len(paths))
	for i, p := range paths {
		out[i] = files[p]
	}
	return out
}
