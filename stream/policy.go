package stream

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"

	"github.com/aoaiblocks/securechat/chatproto"
)

// badRequest is a 400 invalid_request naming the field at fault.
func badRequest(format string, args ...any) *chatproto.Error {
	return &chatproto.Error{
		Status:  http.StatusBadRequest,
		Code:    chatproto.CodeInvalidRequest,
		Message: fmt.Sprintf(format, args...),
	}
}

// prepare applies the policy to a decoded request and returns what the
// model is asked, and how many history messages the bound dropped.
func (h *Handler) prepare(req *chatproto.Request) (*Request, int, error) {
	msgs := req.Messages
	lastUser := -1
	for i, m := range msgs {
		switch m.Role {
		case chatproto.RoleSystem:
			if !h.opts.AllowSystemMessages {
				return nil, 0, &chatproto.Error{
					Status:  http.StatusBadRequest,
					Code:    CodeSystemMessageNotAllowed,
					Message: fmt.Sprintf("messages[%d]: system messages are not accepted", i),
				}
			}
		case chatproto.RoleUser:
			lastUser = i
		}
	}
	if lastUser < 0 {
		return nil, 0, badRequest("messages: there is no user message to answer")
	}
	if last := len(msgs) - 1; lastUser != last {
		// A model answers the last message: after an answer of its own, it
		// would be asked to carry that on, which is not what the protocol
		// means by a request.
		return nil, 0, badRequest("messages[%d]: the last message must be from the user",
			last)
	}
	if m := msgs[lastUser]; strings.TrimSpace(m.Content) == "" && len(m.Files) == 0 {
		// Nothing to answer: do not pay a model call for it.
		return nil, 0, badRequest("messages[%d].content: must not be empty", lastUser)
	}

	out := &Request{Context: req.Context}
	if err := parseOverrides(req.Context, h.opts.MaxTokensLimit, out); err != nil {
		return nil, 0, err
	}

	keep := h.boundHistory(msgs, lastUser)
	dropped := 0
	out.Messages = make([]chatproto.Message, 0, len(msgs)+1)
	if h.opts.SystemPrompt != "" {
		out.Messages = append(out.Messages, chatproto.Message{
			Role:    chatproto.RoleSystem,
			Content: h.opts.SystemPrompt,
		})
	}
	for i, m := range msgs {
		if !keep[i] {
			dropped++
			continue
		}
		out.Messages = append(out.Messages, m)
	}
	return out, dropped, nil
}

// boundHistory decides which messages to send upstream. System messages and
// the last user message (the last message, as prepare checked) are always
// kept; the other messages are dropped a whole turn at a time, oldest first,
// until at most MaxHistory messages with at most MaxHistoryBytes of content remain (or
// only the kept ones are left). A turn is a user message and the messages
// after it up to the next user message.
func (h *Handler) boundHistory(msgs []chatproto.Message, lastUser int) []bool {
	keep := make([]bool, len(msgs))
	count, size := 0, 0
	for i := range msgs {
		keep[i] = true
		count++
		size += len(msgs[i].Content)
	}
	maxCount, maxSize := h.opts.MaxHistory, h.opts.MaxHistoryBytes
	over := func() bool {
		return (maxCount > 0 && count > maxCount) || (maxSize > 0 && size > maxSize)
	}

	for i := 0; i < lastUser && over(); {
		// Drop the turn starting at i: it runs to the next user message.
		j := i + 1
		for j < lastUser && msgs[j].Role != chatproto.RoleUser {
			j++
		}
		for k := i; k < j; k++ {
			if msgs[k].Role == chatproto.RoleSystem {
				continue
			}
			keep[k] = false
			count--
			size -= len(msgs[k].Content)
		}
		i = j
	}
	return keep
}

// parseOverrides reads context.overrides into req. Keys other than
// temperature, top_p and max_tokens are ignored, as is a null value; a value
// of the wrong type or out of range is a 400 naming the key.
func parseOverrides(raw json.RawMessage, maxTokens int, req *Request) error {
	if len(raw) == 0 {
		return nil
	}
	var ctx map[string]json.RawMessage
	if err := json.Unmarshal(raw, &ctx); err != nil {
		return badRequest("context: must be an object")
	}
	ov, ok := ctx["overrides"]
	if !ok || isNull(ov) {
		return nil
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(ov, &fields); err != nil || fields == nil {
		return badRequest("context.overrides: must be an object")
	}

	if v, ok := fields["temperature"]; ok && !isNull(v) {
		f, err := parseNumber(v)
		if err != nil || f < 0 || f > 2 {
			return badRequest("context.overrides.temperature: must be a number from 0 to 2")
		}
		req.Temperature = &f
	}
	if v, ok := fields["top_p"]; ok && !isNull(v) {
		f, err := parseNumber(v)
		if err != nil || f < 0 || f > 1 {
			return badRequest("context.overrides.top_p: must be a number from 0 to 1")
		}
		req.TopP = &f
	}
	if v, ok := fields["max_tokens"]; ok && !isNull(v) {
		f, err := parseNumber(v)
		if err != nil || f != math.Trunc(f) || f < 1 || f > float64(maxTokens) {
			return badRequest("context.overrides.max_tokens: must be a whole number "+
				"from 1 to %d", maxTokens)
		}
		n := int(f)
		req.MaxTokens = &n
	}
	return nil
}

// isNull reports whether v is the JSON null.
func isNull(v json.RawMessage) bool {
	return bytes.Equal(bytes.TrimSpace(v), []byte("null"))
}

// parseNumber reads a JSON number (and nothing else: not a string holding
// one).
func parseNumber(v json.RawMessage) (float64, error) {
	var n json.Number
	if err := json.Unmarshal(v, &n); err != nil {
		return 0, err
	}
	if b := bytes.TrimSpace(v); len(b) == 0 || b[0] == '"' {
		return 0, strconv.ErrSyntax
	}
	return n.Float64()
}
