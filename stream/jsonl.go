package stream

import (
	"bytes"
	"encoding/json"
	"strconv"
	"unicode/utf8"
)

// The lines of an answer are built by hand into one reused buffer: the relay
// writes a line per delta, and encoding/json would allocate for each. The
// output is byte for byte what json.Marshal produces for the same values
// (including its escaping of <, > and & and of U+2028 and U+2029), which the
// tests check.

// escapes holds, for each ASCII byte, the text that stands for it inside a
// JSON string, or "" when the byte stands for itself.
var escapes = func() (t [utf8.RuneSelf]string) {
	const hexDigits = "0123456789abcdef"
	for b := range 0x20 {
		t[b] = `\u00` + string(hexDigits[b>>4]) + string(hexDigits[b&0xf])
	}
	t['\b'], t['\f'], t['\n'], t['\r'], t['\t'] = `\b`, `\f`, `\n`, `\r`, `\t`
	t['"'], t['\\'] = `\"`, `\\`
	t['<'], t['>'], t['&'] = `\u003c`, `\u003e`, `\u0026`
	return t
}()

// appendString appends s to dst as a JSON string.
func appendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	plain := 0 // start of the bytes not yet copied
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if esc := escapes[c]; esc != "" {
				dst = append(dst, s[plain:i]...)
				dst = append(dst, esc...)
				plain = i + 1
			}
			i++
			continue
		}

		r, size := utf8.DecodeRuneInString(s[i:])
		var esc string
		switch {
		case r == utf8.RuneError && size == 1:
			esc = `\ufffd`
		case r == '\u2028':
			esc = `\u2028`
		case r == '\u2029':
			esc = `\u2029`
		}
		if esc != "" {
			dst = append(dst, s[plain:i]...)
			dst = append(dst, esc...)
			plain = i + size
		}
		i += size
	}
	dst = append(dst, s[plain:]...)
	return append(dst, '"')
}

// appendRaw appends the app-defined JSON value v without insignificant white
// space, so that it fits on one line, and with <, >, & and U+2028/U+2029
// escaped in its strings, as json.Marshal writes a json.RawMessage.
func appendRaw(dst []byte, v json.RawMessage) ([]byte, error) {
	var compact bytes.Buffer
	if err := json.Compact(&compact, v); err != nil {
		return dst, err
	}
	b := bytes.NewBuffer(dst)
	json.HTMLEscape(b, compact.Bytes())
	return b.Bytes(), nil
}

// appendFirstLine appends the first line of a stream:
// {"delta":{"role":"assistant"}} with the session state when there is one.
// sessionState must already be compact.
func appendFirstLine(dst []byte, sessionState []byte) []byte {
	dst = append(dst, `{"delta":{"role":"assistant"}`...)
	if sessionState != nil {
		dst = append(dst, `,"sessionState":`...)
		dst = append(dst, sessionState...)
	}
	return append(dst, '}', '\n')
}

// appendContentLine appends the line for one content delta:
// {"delta":{"content":"..."}}.
func appendContentLine(dst []byte, content string) []byte {
	dst = append(dst, `{"delta":{"content":`...)
	dst = appendString(dst, content)
	return append(dst, '}', '}', '\n')
}

// appendAnswerContext appends the context of an answer:
// {"finish_reason":"...","usage":{...}}, usage only when known.
func appendAnswerContext(dst []byte, finishReason string, u *Usage) []byte {
	dst = append(dst, `{"finish_reason":`...)
	dst = appendString(dst, finishReason)
	if u != nil {
		dst = append(dst, `,"usage":{"prompt_tokens":`...)
		dst = strconv.AppendInt(dst, u.PromptTokens, 10)
		dst = append(dst, `,"completion_tokens":`...)
		dst = strconv.AppendInt(dst, u.CompletionTokens, 10)
		dst = append(dst, `,"total_tokens":`...)
		dst = strconv.AppendInt(dst, u.TotalTokens, 10)
		dst = append(dst, '}')
	}
	return append(dst, '}')
}

// appendFinalLine appends the last line of a stream:
// {"delta":{},"context":{"finish_reason":"...","usage":{...}}}.
func appendFinalLine(dst []byte, finishReason string, u *Usage) []byte {
	dst = append(dst, `{"delta":{},"context":`...)
	dst = appendAnswerContext(dst, finishReason, u)
	return append(dst, '}', '\n')
}

// appendErrorLine appends an error line: {"error":{"code":"...","message":"..."}}.
func appendErrorLine(dst []byte, code, message string) []byte {
	dst = append(dst, `{"error":{"code":`...)
	dst = appendString(dst, code)
	dst = append(dst, `,"message":`...)
	dst = appendString(dst, message)
	return append(dst, '}', '}', '\n')
}

// appendCompletion appends the body of a complete answer:
// {"message":{"role":"assistant","content":"..."},"context":{...},
// "sessionState":...}, followed by a newline.
func appendCompletion(dst []byte, content, finishReason string, u *Usage,
	sessionState []byte) []byte {
	dst = append(dst, `{"message":{"role":"assistant","content":`...)
	dst = appendString(dst, content)
	dst = append(dst, `},"context":`...)
	dst = appendAnswerContext(dst, finishReason, u)
	if sessionState != nil {
		dst = append(dst, `,"sessionState":`...)
		dst = append(dst, sessionState...)
	}
	return append(dst, '}', '\n')
}
