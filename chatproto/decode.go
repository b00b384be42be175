package chatproto

import (
	"net/http"
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

// DecodeRequest reads and validates the protocol request in r's body, which
// is either application/json or multipart/form-data (see the package
// documentation), within the bounds of lim (nil means the defaults).
//
// Every error it returns is an *Error whose Status is 400, 413 or 415 and
// whose Message names the field at fault; pass it to WriteError as it is.
// DecodeRequest does not check the method or the path, and it does not close
// the body.
func DecodeRequest(r *http.Request, lim *Limits) (*Request, error) {
	return nil, &Error{Status: http.StatusNotImplemented, Code: CodeInternal,
		Message: "not implemented yet"}
}
