package chatproto

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net"
	"net/http"
	"net/textproto"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"unicode/utf16"
	"unicode/utf8"
)

// Default limits, used for each Limits field that is zero or negative.
const (
	DefaultMaxBodyBytes      = 2 << 20   // 2 MiB
	DefaultMaxMultipartBytes = 32 << 20  // 32 MiB
	DefaultMaxMessages       = 256       // messages per request
	DefaultMaxContentBytes   = 128 << 10 // 128 KiB of UTF-8 per message
	DefaultMaxFiles          = 8         // files per request
	DefaultMaxFileBytes      = 8 << 20   // 8 MiB per file
)

// Limits bounds what DecodeRequest accepts. The zero value, and a nil
// *Limits, mean the defaults (DefaultMaxBodyBytes and the others); each field
// that is zero or negative means its default. A request over any limit is
// rejected with status 413 and CodeTooLarge.
type Limits struct {
	// MaxBodyBytes bounds an application/json body and the json part of a
	// multipart body. Default 2 MiB.
	MaxBodyBytes int64
	// MaxMultipartBytes bounds a whole multipart/form-data body, files
	// included. Default 32 MiB.
	MaxMultipartBytes int64
	// MaxMessages bounds the number of messages. Default 256.
	MaxMessages int
	// MaxContentBytes bounds the content of each message, in bytes of UTF-8
	// after JSON unescaping. Default 128 KiB.
	MaxContentBytes int
	// MaxFiles bounds the number of files in a request, all messages
	// together. Default 8.
	MaxFiles int
	// MaxFileBytes bounds each file. Default 8 MiB.
	MaxFileBytes int64
}

// orDefaults returns a copy of l with every unset field set to its default.
func (l *Limits) orDefaults() Limits {
	var v Limits
	if l != nil {
		v = *l
	}
	if v.MaxBodyBytes <= 0 {
		v.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if v.MaxMultipartBytes <= 0 {
		v.MaxMultipartBytes = DefaultMaxMultipartBytes
	}
	if v.MaxMessages <= 0 {
		v.MaxMessages = DefaultMaxMessages
	}
	if v.MaxContentBytes <= 0 {
		v.MaxContentBytes = DefaultMaxContentBytes
	}
	if v.MaxFiles <= 0 {
		v.MaxFiles = DefaultMaxFiles
	}
	if v.MaxFileBytes <= 0 {
		v.MaxFileBytes = DefaultMaxFileBytes
	}
	return v
}

// DecodeRequest reads and validates the protocol request in r's body, which
// is either application/json or multipart/form-data (see the package
// documentation), within the bounds of lim (nil means the defaults).
//
// Every error it returns is an *Error whose Status is 400, 413 or 415 and
// whose Message names the field at fault; pass it to WriteError as it is. A
// body that stops arriving is the exception: 408 CodeRequestTimeout when a
// read deadline passed, 499 CodeClientClosed when the connection ended.
// DecodeRequest does not check the method or the path, and it does not close
// the body. It is safe to call from many goroutines at once.
func DecodeRequest(r *http.Request, lim *Limits) (*Request, error) {
	l := lim.orDefaults()

	ct := r.Header.Get("Content-Type")
	if ct == "" {
		return nil, errMediaType("Content-Type: missing; want application/json " +
			"or multipart/form-data")
	}
	mt, params := ct, map[string]string(nil)
	if ct != "application/json" { // the usual value needs no parsing
		var err error
		if mt, params, err = mime.ParseMediaType(ct); err != nil {
			return nil, errMediaType(fmt.Sprintf("Content-Type: %s cannot be parsed; "+
				"want application/json or multipart/form-data", quoteShort(ct)))
		}
	}

	body := r.Body
	if body == nil {
		body = http.NoBody
	}
	switch mt {
	case "application/json":
		if e := checkCharset("Content-Type", params); e != nil {
			return nil, e
		}
		if r.ContentLength > l.MaxBodyBytes {
			return nil, errTooLarge("body: %d bytes, over the limit of %d",
				r.ContentLength, l.MaxBodyBytes)
		}
		b, e := readLimited(body, r.ContentLength, l.MaxBodyBytes, "body")
		if e != nil {
			return nil, e
		}
		req, e := parseRequest(b, "body", &l)
		if e != nil {
			return nil, e
		}
		return req, nil
	case "multipart/form-data":
		if r.ContentLength > l.MaxMultipartBytes {
			return nil, errTooLarge("body: %d bytes, over the limit of %d",
				r.ContentLength, l.MaxMultipartBytes)
		}
		req, e := decodeMultipart(body, params["boundary"], &l)
		if e != nil {
			return nil, e
		}
		return req, nil
	default:
		return nil, errMediaType(fmt.Sprintf("Content-Type: %s is not supported; want "+
			"application/json or multipart/form-data", quoteShort(mt)))
	}
}

// checkCharset accepts media type parameters without a charset or with UTF-8.
func checkCharset(where string, params map[string]string) *Error {
	cs, ok := params["charset"]
	if !ok || strings.EqualFold(cs, "utf-8") || strings.EqualFold(cs, "utf8") {
		return nil
	}
	return errMediaType(fmt.Sprintf("%s: charset %s is not supported; want utf-8",
		where, quoteShort(cs)))
}

// preallocMax bounds the buffer readLimited allocates before the bytes
// arrive, so that a client announcing a large body and sending nothing holds
// little memory.
const preallocMax = 64 << 10

// readLimited reads all of r, failing with CodeTooLarge past max bytes. size
// is the length r announced (Content-Length), or -1: a body of up to
// preallocMax bytes is then read into one buffer instead of a growing one.
func readLimited(r io.Reader, size, max int64, where string) ([]byte, *Error) {
	var b []byte
	var err error
	if size >= 0 && size <= min(max, preallocMax) {
		// The extra byte sees the end without growing the buffer.
		b, err = readAll(io.LimitReader(r, max+1), make([]byte, 0, size+1))
	} else {
		b, err = io.ReadAll(io.LimitReader(r, max+1))
	}
	if err != nil {
		if mbe, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return nil, errTooLarge("%s: larger than the limit of %d bytes", where, mbe.Limit)
		}
		if e := errRead(where, err); e != nil {
			return nil, e
		}
		return nil, &Error{Status: http.StatusBadRequest, Code: CodeInvalidRequest,
			Message: where + ": could not be read", Err: err}
	}
	if int64(len(b)) > max {
		return nil, errTooLarge("%s: larger than the limit of %d bytes", where, max)
	}
	return b, nil
}

// readAll appends all of r to b, as io.ReadAll does to an empty slice, growing
// b only when r holds more than fits.
func readAll(r io.Reader, b []byte) ([]byte, error) {
	for {
		n, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err != nil {
			if err == io.EOF { // as io.ReadAll compares, so a wrapped EOF stays an error
				err = nil
			}
			return b, err
		}
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)] // let append pick the larger size
		}
	}
}

// parseRequest validates and decodes the JSON of a request. where names the
// JSON's place ("body" or "json part") in messages about the whole value.
func parseRequest(b []byte, where string, l *Limits) (*Request, *Error) {
	raw, e := parseJSONValue(b, where)
	if e != nil {
		return nil, e
	}
	if raw[0] != '{' {
		return nil, errInvalid("%s: must be a JSON object, got %s", where, kind(raw))
	}
	var top [3]json.RawMessage // messages, context, sessionState; nil when absent
	if !knownMembers(raw, &requestMembers, &top) {
		var m map[string]json.RawMessage
		if err := json.Unmarshal(raw, &m); err != nil {
			return nil, errInvalid("%s: %v", where, err)
		}
		if dup, ok := duplicateMember(raw, len(m)); ok {
			return nil, errInvalid("%s: member %s appears twice", where, quoteShort(dup))
		}
		top = [3]json.RawMessage{m["messages"], m["context"], m["sessionState"]}
	}

	req := &Request{}
	msgs, e := parseMessages(top[0], l)
	if e != nil {
		return nil, e
	}
	req.Messages = msgs
	var ok bool
	if req.Context, ok = objectOrNull(top[1]); !ok {
		return nil, errInvalid("context: must be an object, got %s", kind(top[1]))
	}
	if ss := top[2]; len(ss) > 0 && !isNull(ss) {
		req.SessionState = ss
	}
	return req, nil
}

// The members of a request and of a message that this package reads, in the
// order knownMembers stores their values.
var (
	requestMembers = [3]string{"messages", "context", "sessionState"}
	messageMembers = [3]string{"role", "content", "context"}
)

// knownMembers stores in vals[k] the value of the member names[k] of the JSON
// object obj, which must be well formed, and nil for a member obj lacks. It
// reports false, leaving vals in an unspecified state, when obj has a member
// of any other name, a member twice, or a name written with an escape: the
// caller then decodes obj into a map, which tells those cases apart. The
// values are slices of obj, as json.Unmarshal would give them, without a copy.
func knownMembers(obj []byte, names *[3]string, vals *[3]json.RawMessage) bool {
	i := skipSpace(obj, 1)
	if obj[i] == '}' {
		return true
	}
	for {
		end := stringEnd(obj, i+1)
		name := obj[i+1 : end]
		k := 0
		for k < len(names) && string(name) != names[k] {
			k++
		}
		if k == len(names) || vals[k] != nil { // also an escape: no name has '\'
			return false
		}
		i = skipSpace(obj, skipSpace(obj, end+1)+1) // past the colon
		end = valueEnd(obj, i)
		vals[k] = obj[i:end:end]
		i = skipSpace(obj, end)
		if obj[i] == '}' {
			return true
		}
		i = skipSpace(obj, i+1) // past the comma
	}
}

// arrayItems returns the items of the JSON array arr, which must be well
// formed, as slices of arr.
func arrayItems(arr []byte) []json.RawMessage {
	n := 0
	var items []json.RawMessage
	for pass := 0; pass < 2; pass++ {
		i := skipSpace(arr, 1)
		for arr[i] != ']' {
			end := valueEnd(arr, i)
			if items != nil {
				items[n] = arr[i:end:end]
			}
			n++
			i = skipSpace(arr, end)
			if arr[i] == ',' {
				i = skipSpace(arr, i+1)
			}
		}
		if pass == 0 {
			if n == 0 {
				return nil
			}
			items, n = make([]json.RawMessage, n), 0
		}
	}
	return items
}

// skipSpace returns the index of the first byte at or after b[i] that is not
// JSON white space, or len(b).
func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\r' || b[i] == '\n') {
		i++
	}
	return i
}

// valueEnd returns the index just past the well-formed JSON value that starts
// at b[i].
func valueEnd(b []byte, i int) int {
	switch b[i] {
	case '"':
		return stringEnd(b, i+1) + 1
	case '{', '[':
		depth := 0
		for ; i < len(b); i++ {
			switch b[i] {
			case '"':
				i = stringEnd(b, i+1)
			case '{', '[':
				depth++
			case '}', ']':
				if depth--; depth == 0 {
					return i + 1
				}
			}
		}
		return len(b)
	}
	// A number, true, false or null: it ends where its delimiter begins.
	for ; i < len(b); i++ {
		switch b[i] {
		case ',', ']', '}', ' ', '\t', '\r', '\n':
			return i
		}
	}
	return i
}

// utf8BOM is the UTF-8 encoding of U+FEFF, the byte order mark.
const utf8BOM = "\xef\xbb\xbf"

// parseJSONValue checks that b holds exactly one well-formed JSON value in
// UTF-8 and returns it with surrounding white space removed.
func parseJSONValue(b []byte, where string) (json.RawMessage, *Error) {
	if bytes.HasPrefix(b, []byte(utf8BOM)) {
		// RFC 8259 forbids senders to add one; say so rather than report the
		// invisible character as a syntax error.
		return nil, errJSON("%s: starts with a byte order mark (U+FEFF); send the JSON "+
			"without one", where)
	}
	if !utf8.Valid(b) {
		return nil, errJSON("%s: invalid UTF-8 at byte %d", where, invalidUTF8At(b))
	}
	if json.Valid(b) {
		// The usual case, without a copy; the decoder below explains what is
		// wrong with the others.
		return bytes.Trim(b, " \t\r\n"), nil
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	var raw json.RawMessage
	if err := dec.Decode(&raw); err != nil {
		var se *json.SyntaxError
		switch {
		case errors.Is(err, io.EOF):
			return nil, errJSON("%s: empty; want a JSON object", where)
		case errors.Is(err, io.ErrUnexpectedEOF):
			return nil, errJSON("%s: the JSON value ends early", where)
		case errors.As(err, &se):
			return nil, errJSON("%s: invalid JSON at byte %d: %v", where, se.Offset, se)
		default:
			return nil, errJSON("%s: invalid JSON: %v", where, err)
		}
	}
	off := dec.InputOffset()
	if rest := bytes.TrimLeft(b[off:], " \t\r\n"); len(rest) > 0 {
		return nil, errJSON("%s: data after the JSON value at byte %d", where,
			int64(len(b)-len(rest)))
	}
	return raw, nil
}

// parseMessages validates and decodes rawMsgs, the messages member of a
// request (nil when absent).
func parseMessages(rawMsgs json.RawMessage, l *Limits) ([]Message, *Error) {
	if rawMsgs == nil {
		return nil, errInvalid("messages: missing")
	}
	if rawMsgs[0] != '[' {
		return nil, errInvalid("messages: must be an array, got %s", kind(rawMsgs))
	}
	items := arrayItems(rawMsgs)
	if len(items) == 0 {
		return nil, errInvalid("messages: must not be empty")
	}
	if len(items) > l.MaxMessages {
		return nil, errTooLarge("messages: %d messages, over the limit of %d",
			len(items), l.MaxMessages)
	}

	msgs := make([]Message, len(items))
	for i, item := range items {
		m, e := parseMessage(i, item, l)
		if e != nil {
			return nil, e
		}
		msgs[i] = m
	}
	return msgs, nil
}

// parseMessage validates and decodes messages[i].
func parseMessage(i int, item json.RawMessage, l *Limits) (Message, *Error) {
	var m Message
	if item[0] != '{' {
		return m, errInvalid("messages[%d]: must be an object, got %s", i, kind(item))
	}
	var f [3]json.RawMessage // role, content, context; nil when absent
	if !knownMembers(item, &messageMembers, &f) {
		var fields map[string]json.RawMessage
		if err := json.Unmarshal(item, &fields); err != nil {
			return m, errInvalid("messages[%d]: %v", i, err)
		}
		if dup, ok := duplicateMember(item, len(fields)); ok {
			return m, errInvalid("messages[%d]: member %s appears twice", i, quoteShort(dup))
		}
		f = [3]json.RawMessage{fields["role"], fields["content"], fields["context"]}
	}

	role, e := stringField(f[0], i, "role")
	if e != nil {
		return m, e
	}
	m.Role = Role(role)
	if !m.Role.Valid() {
		return m, errInvalid("messages[%d].role: %s is not a role; want user, "+
			"assistant or system", i, quoteShort(role))
	}

	m.Content, e = stringField(f[1], i, "content")
	if e != nil {
		return m, e
	}
	if len(m.Content) > l.MaxContentBytes {
		return m, errTooLarge("messages[%d].content: %d bytes, over the limit of %d",
			i, len(m.Content), l.MaxContentBytes)
	}

	var ok bool
	if m.Context, ok = objectOrNull(f[2]); !ok {
		return m, errInvalid("messages[%d].context: must be an object, got %s", i, kind(f[2]))
	}
	return m, nil
}

// duplicateMember reports whether the object obj, decoded into a map of n
// members, names a member more than once, and which: a map keeps only the
// last value, so such a request could say one thing to this decoder and
// another to a proxy or a log reader that keeps the first. Counting the
// members is one pass over bytes encoding/json has already checked; the
// names are compared only when the counts differ.
func duplicateMember(obj json.RawMessage, n int) (string, bool) {
	if countMembers(obj) == n {
		return "", false
	}
	dec := json.NewDecoder(bytes.NewReader(obj))
	if _, err := dec.Token(); err != nil { // the opening brace
		return "", false // cannot happen: obj is a well-formed object
	}
	seen := make(map[string]bool, n)
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			break
		}
		name, _ := tok.(string)
		if seen[name] {
			return name, true
		}
		seen[name] = true
		var value json.RawMessage
		if err := dec.Decode(&value); err != nil {
			break
		}
	}
	// No name repeats after all: the names are what counts.
	return "", false
}

// countMembers returns the number of members of the JSON object obj, which
// must be well formed: the colons outside strings at the object's own depth.
func countMembers(obj []byte) int {
	n, depth := 0, 0
	for i := 0; i < len(obj); i++ {
		switch obj[i] {
		case '"':
			i = stringEnd(obj, i+1)
		case '{', '[':
			depth++
		case '}', ']':
			depth--
		case ':':
			if depth == 1 {
				n++
			}
		}
	}
	return n
}

// stringEnd returns the index of the quote that closes the JSON string whose
// contents start at b[i], or len(b) when there is none.
func stringEnd(b []byte, i int) int {
	for {
		q := bytes.IndexByte(b[i:], '"')
		if q < 0 {
			return len(b)
		}
		i += q
		// The quote is escaped when an odd number of backslashes precede it.
		k := i
		for k > 0 && b[k-1] == '\\' {
			k--
		}
		if (i-k)%2 == 0 {
			return i
		}
		i++
	}
}

// stringField returns the string raw, the member key of messages[i] (nil
// when absent).
func stringField(raw json.RawMessage, i int, key string) (string, *Error) {
	if raw == nil {
		return "", errInvalid("messages[%d].%s: missing", i, key)
	}
	if raw[0] != '"' {
		return "", errInvalid("messages[%d].%s: must be a string, got %s", i, key, kind(raw))
	}
	return unquote(raw), nil
}

// unquote returns the JSON string raw, which must be well formed and valid
// UTF-8, with its escapes replaced as json.Unmarshal replaces them: a
// surrogate that is not half of a pair becomes U+FFFD. A string without
// escapes is copied as it is.
func unquote(raw []byte) string {
	s := raw[1 : len(raw)-1]
	if bytes.IndexByte(s, '\\') < 0 {
		return string(s)
	}
	var b strings.Builder
	b.Grow(len(s)) // unescaping never lengthens a string
	for i := 0; i < len(s); {
		if s[i] != '\\' {
			n := bytes.IndexByte(s[i:], '\\')
			if n < 0 {
				n = len(s) - i
			}
			b.Write(s[i : i+n])
			i += n
			continue
		}
		c := s[i+1]
		i += 2
		switch c {
		case 'b':
			b.WriteByte('\b')
		case 'f':
			b.WriteByte('\f')
		case 'n':
			b.WriteByte('\n')
		case 'r':
			b.WriteByte('\r')
		case 't':
			b.WriteByte('\t')
		case 'u':
			r := hex4(s[i : i+4])
			i += 4
			if utf16.IsSurrogate(r) {
				d := utf8.RuneError
				if i+6 <= len(s) && s[i] == '\\' && s[i+1] == 'u' {
					d = utf16.DecodeRune(r, hex4(s[i+2:i+6]))
				}
				if r = d; d != utf8.RuneError {
					i += 6 // the pair's second half
				}
			}
			b.WriteRune(r)
		default: // '"', '\\' or '/'
			b.WriteByte(c)
		}
	}
	return b.String()
}

// hex4 returns the value of the four hexadecimal digits h.
func hex4(h []byte) rune {
	var r rune
	for _, c := range h {
		switch {
		case c <= '9':
			c -= '0'
		case c >= 'a':
			c -= 'a' - 10
		default:
			c -= 'A' - 10
		}
		r = r<<4 | rune(c)
	}
	return r
}

// objectOrNull returns raw when it is an object and nil when it is absent or
// null; it reports false for any other value.
func objectOrNull(raw json.RawMessage) (json.RawMessage, bool) {
	switch {
	case len(raw) == 0 || isNull(raw):
		return nil, true
	case raw[0] != '{':
		return nil, false
	}
	return raw, true
}

func isNull(raw json.RawMessage) bool { return string(raw) == "null" }

// kind names the JSON type of raw, which must be a well-formed value.
func kind(raw json.RawMessage) string {
	switch raw[0] {
	case '{':
		return "an object"
	case '[':
		return "an array"
	case '"':
		return "a string"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	}
	return "a number"
}

// invalidUTF8At returns the offset of the first invalid UTF-8 sequence in b.
func invalidUTF8At(b []byte) int {
	for i := 0; i < len(b); {
		r, n := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && n == 1 {
			return i
		}
		i += n
	}
	return len(b)
}

// quoteShort quotes s for an error message, cutting it to a readable length.
func quoteShort(s string) string {
	const max = 40
	if len(s) > max {
		cut := max
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		return strconv.Quote(s[:cut]) + "..."
	}
	return strconv.Quote(s)
}

// decodeMultipart decodes a multipart/form-data request: one part named json
// holding the request, and file parts named messages[i].files[j].
func decodeMultipart(body io.Reader, boundary string, l *Limits) (*Request, *Error) {
	if boundary == "" {
		return nil, errMultipart("Content-Type: multipart/form-data without a boundary")
	}
	lr := &limitedReader{r: body, n: l.MaxMultipartBytes}
	mr := multipart.NewReader(lr, boundary)

	// overLimit turns a read failure into the right error.
	overLimit := func(err error, where string) *Error {
		if lr.over {
			return errTooLarge("body: larger than the limit of %d bytes", l.MaxMultipartBytes)
		}
		if lr.err != nil {
			// The multipart reader may hide the body's own error behind a
			// parse error of the part it was reading.
			err = lr.err
		}
		if mbe, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return errTooLarge("body: larger than the limit of %d bytes", mbe.Limit)
		}
		if lr.err != nil {
			// Only the body's own error tells a slow or departed client: the
			// multipart reader reports a body cut at a part as io.ErrUnexpectedEOF too.
			if e := errRead("body", lr.err); e != nil {
				return e
			}
		}
		return &Error{Status: http.StatusBadRequest, Code: CodeInvalidMultipart,
			Message: where + ": malformed multipart body", Err: err}
	}

	var req *Request
	type fileKey struct{ i, j int }
	files := map[fileKey]File{}
	var order []fileKey
	for n := 0; ; n++ {
		p, err := mr.NextRawPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, overLimit(err, "body")
		}

		name, filename, e := partName(p.Header, n)
		if e != nil {
			return nil, e
		}
		if name == "json" {
			if req != nil {
				return nil, errMultipart("json part: sent twice")
			}
			if e := checkJSONPartType(p.Header); e != nil {
				return nil, e
			}
			b, err := io.ReadAll(io.LimitReader(p, l.MaxBodyBytes+1))
			if err != nil {
				return nil, overLimit(err, "json part")
			}
			if int64(len(b)) > l.MaxBodyBytes {
				return nil, errTooLarge("json part: larger than the limit of %d bytes",
					l.MaxBodyBytes)
			}
			if req, e = parseRequest(b, "json part", l); e != nil {
				return nil, e
			}
			continue
		}

		i, j, ok := parseFileName(name)
		if !ok {
			return nil, errMultipart(fmt.Sprintf("part %d: unexpected name %s; want json "+
				"or messages[i].files[j]", n, quoteShort(name)))
		}
		k := fileKey{i, j}
		if _, dup := files[k]; dup {
			return nil, errMultipart(name + ": sent twice")
		}
		if len(files) >= l.MaxFiles {
			return nil, errTooLarge("%s: more than the limit of %d files", name, l.MaxFiles)
		}
		data, err := io.ReadAll(io.LimitReader(p, l.MaxFileBytes+1))
		if err != nil {
			return nil, overLimit(err, name)
		}
		if int64(len(data)) > l.MaxFileBytes {
			return nil, errTooLarge("%s: larger than the limit of %d bytes", name,
				l.MaxFileBytes)
		}
		files[k] = File{Name: filename, ContentType: p.Header.Get("Content-Type"), Data: data}
		order = append(order, k)
	}

	if req == nil {
		return nil, errMultipart("json part: missing; the request goes in a part named json")
	}

	// Attach the files in the order of j, which must run from 0 without gaps.
	slices.SortFunc(order, func(a, b fileKey) int {
		if a.i != b.i {
			return a.i - b.i
		}
		return a.j - b.j
	})
	for _, k := range order {
		if k.i >= len(req.Messages) {
			return nil, errMultipart(fmt.Sprintf("messages[%d].files[%d]: no message %d; "+
				"the request has %d", k.i, k.j, k.i, len(req.Messages)))
		}
		m := &req.Messages[k.i]
		if k.j != len(m.Files) {
			return nil, errMultipart(fmt.Sprintf("messages[%d].files[%d]: files[%d] "+
				"is missing", k.i, k.j, len(m.Files)))
		}
		m.Files = append(m.Files, files[k])
	}
	return req, nil
}

// partName returns the name and file name of part n from its
// Content-Disposition. It accepts names that are not quoted even where they
// hold characters that need quoting, such as messages[0].files[0].
func partName(h textproto.MIMEHeader, n int) (name, filename string, e *Error) {
	cd := h.Get("Content-Disposition")
	if cd == "" {
		return "", "", errMultipart(fmt.Sprintf("part %d: no Content-Disposition", n))
	}
	typ, params, err := mime.ParseMediaType(cd)
	if err != nil {
		typ, params, err = parseDispositionLoosely(cd)
		if err != nil {
			return "", "", errMultipart(fmt.Sprintf("part %d: Content-Disposition: %v", n, err))
		}
	}
	if typ != "form-data" {
		return "", "", errMultipart(fmt.Sprintf("part %d: Content-Disposition is %s, "+
			"want form-data", n, quoteShort(typ)))
	}
	name, ok := params["name"]
	if !ok || name == "" {
		return "", "", errMultipart(fmt.Sprintf("part %d: Content-Disposition has no name", n))
	}
	return name, params["filename"], nil
}

// parseDispositionLoosely parses a Content-Disposition value whose parameter
// values may be unquoted tokens holding separators like '[' (which
// mime.ParseMediaType rejects). Quoted values may escape characters with '\'.
func parseDispositionLoosely(v string) (string, map[string]string, error) {
	typ, rest, _ := strings.Cut(v, ";")
	typ = strings.ToLower(strings.TrimSpace(typ))
	params := map[string]string{}
	for rest = strings.TrimSpace(rest); rest != ""; rest = strings.TrimSpace(rest) {
		key, after, ok := strings.Cut(rest, "=")
		if !ok {
			return "", nil, errors.New("parameter without a value")
		}
		key = strings.ToLower(strings.TrimSpace(key))
		after = strings.TrimLeft(after, " \t")
		var val string
		if strings.HasPrefix(after, `"`) {
			var b strings.Builder
			k := 1
			for ; k < len(after) && after[k] != '"'; k++ {
				if after[k] == '\\' && k+1 < len(after) {
					k++
				}
				b.WriteByte(after[k])
			}
			if k >= len(after) {
				return "", nil, errors.New("unterminated quoted value")
			}
			val, rest = b.String(), after[k+1:]
			rest = strings.TrimSpace(rest)
			if rest != "" && !strings.HasPrefix(rest, ";") {
				return "", nil, errors.New("text after a quoted value")
			}
			rest = strings.TrimPrefix(rest, ";")
		} else {
			val, rest, _ = strings.Cut(after, ";")
			val = strings.TrimSpace(val)
		}
		if _, dup := params[key]; dup {
			return "", nil, fmt.Errorf("parameter %s twice", quoteShort(key))
		}
		params[key] = val
	}
	return typ, params, nil
}

// checkJSONPartType accepts a json part with no Content-Type or with
// application/json in UTF-8.
func checkJSONPartType(h textproto.MIMEHeader) *Error {
	ct := h.Get("Content-Type")
	if ct == "" {
		return nil
	}
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil || mt != "application/json" {
		return errMediaType(fmt.Sprintf("json part: Content-Type %s is not supported; "+
			"want application/json", quoteShort(ct)))
	}
	return checkCharset("json part: Content-Type", params)
}

// parseFileName parses a file part's name, messages[i].files[j], where i and j
// are decimal without leading zeros.
func parseFileName(name string) (i, j int, ok bool) {
	rest, ok := strings.CutPrefix(name, "messages[")
	if !ok {
		return 0, 0, false
	}
	if i, rest, ok = cutIndex(rest); !ok {
		return 0, 0, false
	}
	if rest, ok = strings.CutPrefix(rest, ".files["); !ok {
		return 0, 0, false
	}
	if j, rest, ok = cutIndex(rest); !ok || rest != "" {
		return 0, 0, false
	}
	return i, j, true
}

// cutIndex parses "<digits>]" at the start of s.
func cutIndex(s string) (int, string, bool) {
	digits, rest, ok := strings.Cut(s, "]")
	if !ok || digits == "" || len(digits) > 6 || (digits[0] == '0' && len(digits) > 1) {
		return 0, "", false
	}
	for k := 0; k < len(digits); k++ {
		if digits[k] < '0' || digits[k] > '9' {
			return 0, "", false
		}
	}
	n, err := strconv.Atoi(digits)
	return n, rest, err == nil
}

// limitedReader reads at most n bytes from r and then fails, remembering
// that the limit was crossed and the first error of r other than io.EOF.
type limitedReader struct {
	r    io.Reader
	n    int64
	over bool
	err  error
}

var errOverLimit = errors.New("chatproto: body over its limit")

func (l *limitedReader) Read(p []byte) (int, error) {
	if l.n <= 0 {
		// Tell a body that ends exactly at the limit from a longer one.
		var one [1]byte
		n, err := l.r.Read(one[:])
		if n > 0 {
			l.over = true
			return 0, errOverLimit
		}
		if err != nil && !errors.Is(err, io.EOF) && l.err == nil {
			l.err = err
		}
		return 0, err
	}
	if int64(len(p)) > l.n {
		p = p[:l.n]
	}
	n, err := l.r.Read(p)
	l.n -= int64(n)
	if err != nil && !errors.Is(err, io.EOF) && l.err == nil {
		l.err = err
	}
	return n, err
}

// statusClientClosed is the status of CodeClientClosed: not an HTTP status,
// but the one proxies log for a request whose client went away.
const statusClientClosed = 499

// errRead returns the error for a body whose reading failed with err because
// of the client, and nil for other failures: 408 CodeRequestTimeout when the
// server's read deadline passed first (see
// http.ResponseController.SetReadDeadline), 499 CodeClientClosed when the
// connection ended before the body did.
func errRead(where string, err error) *Error {
	var ne net.Error
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded) || errors.As(err, &ne) && ne.Timeout():
		return &Error{Status: http.StatusRequestTimeout, Code: CodeRequestTimeout,
			Message: where + ": not received within the server's time limit", Err: err}
	case errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET):
		return &Error{Status: statusClientClosed, Code: CodeClientClosed,
			Message: where + ": the connection ended before the body did", Err: err}
	}
	return nil
}

func errMediaType(msg string) *Error {
	return &Error{Status: http.StatusUnsupportedMediaType, Code: CodeUnsupportedMediaType,
		Message: msg}
}

func errTooLarge(format string, args ...any) *Error {
	return &Error{Status: http.StatusRequestEntityTooLarge, Code: CodeTooLarge,
		Message: fmt.Sprintf(format, args...)}
}

func errJSON(format string, args ...any) *Error {
	return &Error{Status: http.StatusBadRequest, Code: CodeInvalidJSON,
		Message: fmt.Sprintf(format, args...)}
}

func errInvalid(format string, args ...any) *Error {
	return &Error{Status: http.StatusBadRequest, Code: CodeInvalidRequest,
		Message: fmt.Sprintf(format, args...)}
}

func errMultipart(msg string) *Error {
	return &Error{Status: http.StatusBadRequest, Code: CodeInvalidMultipart, Message: msg}
}
