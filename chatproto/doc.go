// Package chatproto speaks the Microsoft AI Chat Protocol (version
// 2024-05-29): its JSON types, strict decoding of requests for servers, the
// protocol's error body, and a client for any conforming endpoint.
//
// A server decodes each request with DecodeRequest, answers failures with
// WriteError, and writes a Completion (complete endpoint) or one
// CompletionDelta per line (streaming endpoint, Content-Type
// application/jsonl). This module's stream package does all of that for a
// model; use chatproto directly to build another kind of server. A Go program
// calls any conforming endpoint with a Client.
//
// # Requests
//
// A request is POSTed in one of two forms:
//
//   - application/json: the Request as JSON,
//     {"messages":[{"role":"user","content":"Hi"}],"context":{...},"sessionState":...}
//   - multipart/form-data, which clients use when messages have files: a part
//     named json holding the Request as JSON, and one part per file named
//     messages[i].files[j] (file j of message i) holding the file's bytes with
//     its own Content-Type. The official JavaScript client sends the name of
//     the json part unquoted and no file names; DecodeRequest accepts both.
//
// DecodeRequest is strict. It accepts exactly one JSON object in UTF-8 with
// a non-empty messages array whose items each have a role (user, assistant or
// system) and a string content; a context, where present, must be an object.
// Members it does not know are ignored, and a JSON null context or
// sessionState counts as absent. A member name given twice in the request
// object or in a message object is rejected (inside context and sessionState,
// which belong to the app, it is kept as sent), and so is a body that starts
// with a byte order mark, which RFC 8259 forbids senders to add. It keeps
// context and sessionState byte for byte as received. Encoding them again
// with encoding/json keeps their value but may drop insignificant white
// space.
//
// Every size is bounded by Limits, whose zero value means these defaults:
//
//	MaxBodyBytes        2 MiB    an application/json body, and the json part
//	MaxMultipartBytes  32 MiB    a multipart/form-data body, files included
//	MaxMessages         256      messages in a request
//	MaxContentBytes   128 KiB    content of one message (UTF-8, unescaped)
//	MaxFiles              8      files in a request
//	MaxFileBytes        8 MiB    one file
//
// # Errors
//
// Every failure the protocol reports is an *Error: an HTTP status, a stable
// code and a message that names the field at fault, such as
// `messages[3].role: "robot" is not a role; want user, assistant or system`.
// On the wire it is {"error":{"code":"...","message":"..."}}; the older shape
// {"error":"text"} is accepted when reading. The codes of this package:
//
//	code                    status  meaning
//	unsupported_media_type  415     Content-Type is not application/json or
//	                                multipart/form-data (or the json part's
//	                                is not application/json), or a charset
//	                                other than UTF-8
//	too_large               413     the body, the json part, a file, the
//	                                number of messages or files, or a
//	                                message's content is over its limit
//	invalid_json            400     not one well-formed JSON value: syntax
//	                                error, invalid UTF-8, data after the
//	                                value, a leading byte order mark
//	invalid_request         400     JSON that is not a valid request: not an
//	                                object, messages missing, empty or not an
//	                                array, an unknown role, content missing or
//	                                not a string, a context not an object, a
//	                                member name twice in the request or in a
//	                                message
//	invalid_multipart       400     a malformed multipart body, the json part
//	                                missing or sent twice, a part with another
//	                                name, a file sent twice, a file index with
//	                                no message or with a gap before it
//	request_timeout         408     the body did not arrive before the
//	                                server's read deadline
//	client_closed           499     the connection ended before the body did
//	                                (no one reads the answer; 499 is the
//	                                status proxies log for it)
//	internal_error          500     WriteError's answer for any error that is
//	                                not an *Error
//
// A Client adds codes of its own, with the status it received (0 for errors
// found in a 2xx answer, such as a stream):
//
//	http_error              a status other than 2xx with no error in the body
//	unknown                 an error without a code, such as {"error":"text"}
//	invalid_response        an answer or stream line that breaks the protocol
//	truncated               a stream or answer that ended before it was whole
//
// Other packages construct *Error values with codes of their own; an error
// line or body received with any code is returned with that code.
//
// # Streams
//
// The streaming endpoint answers JSON Lines: one CompletionDelta per line,
// {"delta":{"role":"assistant"}} first, then {"delta":{"content":"..."}}
// lines, each line ended by LF. A failure after the stream has started is one
// error line, {"error":{...}}, that ends the stream. The protocol has no end
// marker, so Client.Stream counts a stream as whole when its body ends
// cleanly after whole lines; see Client.Stream for what counts as truncated.
// Servers built with this module's stream package also put the finish reason
// in the last line's context, which ClientOptions.RequireFinishReason checks.
package chatproto
