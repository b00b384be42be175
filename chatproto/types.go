package chatproto

import (
	"encoding/json"
)

// Role says who wrote a message. The protocol knows three roles; DecodeRequest
// rejects any other.
type Role string

// The roles of the protocol.
const (
	// RoleUser marks a message written by the person chatting.
	RoleUser Role = "user"
	// RoleAssistant marks a message written by the model.
	RoleAssistant Role = "assistant"
	// RoleSystem marks instructions for the model. Servers decide whether
	// clients may send them.
	RoleSystem Role = "system"
)

// Valid reports whether r is one of RoleUser, RoleAssistant and RoleSystem.
func (r Role) Valid() bool {
	switch r {
	case RoleUser, RoleAssistant, RoleSystem:
		return true
	}
	return false
}

// File is a file attached to a message. Files never appear in the JSON of a
// message: they travel as parts of a multipart/form-data body named
// messages[i].files[j] (see the package documentation).
type File struct {
	// Name is the file name the sender gave, or "" when it gave none (the
	// official JavaScript client never sends one).
	Name string
	// ContentType is the media type of the file part as sent, or "" when the
	// part had none.
	ContentType string
	// Data is the file's content.
	Data []byte
}

// Message is one message of a conversation.
type Message struct {
	// Role says who wrote the message.
	Role Role `json:"role"`
	// Content is the text of the message.
	Content string `json:"content"`
	// Context is app-defined JSON (an object) attached to the message, or nil.
	// It is kept byte for byte as received.
	Context json.RawMessage `json:"context,omitempty"`
	// Files are the files attached to the message, in the order of their
	// index j. They are sent as multipart parts, never as JSON.
	Files []File `json:"-"`
}

// MessageDelta is the part of a message that one line of a stream adds: the
// role on the first line, then pieces of content to append in order.
type MessageDelta struct {
	// Role is set on the first delta of a message, empty afterwards.
	Role Role `json:"role,omitempty"`
	// Content is the text to append to the message's content.
	Content string `json:"content,omitempty"`
}

// Request is what a client sends to ask for the next message of a
// conversation, to either the complete or the streaming endpoint.
type Request struct {
	// Messages is the conversation so far, oldest first. It is never empty in
	// a request returned by DecodeRequest.
	Messages []Message `json:"messages"`
	// Context is app-defined JSON (an object) such as overrides of the
	// model's settings, or nil. It is kept byte for byte as received.
	Context json.RawMessage `json:"context,omitempty"`
	// SessionState is app-defined JSON of any kind that the server returned
	// earlier as the conversation's memory, or nil. A JSON null is treated as
	// absent. It is kept byte for byte as received.
	SessionState json.RawMessage `json:"sessionState,omitempty"`
}

// Completion is the answer of the complete (non-streaming) endpoint.
type Completion struct {
	// Message is the new message, with RoleAssistant.
	Message Message `json:"message"`
	// Context is app-defined JSON (an object) about the answer, or nil.
	Context json.RawMessage `json:"context,omitempty"`
	// SessionState is app-defined JSON the client should send back with its
	// next request, or nil.
	SessionState json.RawMessage `json:"sessionState,omitempty"`
}

// CompletionDelta is one line of the streaming endpoint's answer. Joining the
// deltas' content in order gives the new message's content.
type CompletionDelta struct {
	// Delta is the piece of the message this line adds. It may be empty, for
	// example on a last line that carries only Context.
	Delta MessageDelta `json:"delta"`
	// Context is app-defined JSON (an object), or nil. Context known before
	// the answer usually comes on the first line; servers built with this
	// module's stream package put the finish reason and token usage in the
	// context of the last line.
	Context json.RawMessage `json:"context,omitempty"`
	// SessionState is app-defined JSON the client should send back with its
	// next request, or nil.
	SessionState json.RawMessage `json:"sessionState,omitempty"`
}

// ErrorResponse is the JSON body of a failed request and the JSON of an error
// line in a stream: {"error":{"code":"...","message":"..."}}.
//
// Decoding also accepts the older shape {"error":"text"} (see Error's
// UnmarshalJSON).
type ErrorResponse struct {
	// Error is the failure.
	Error *Error `json:"error"`
}
