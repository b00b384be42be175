// Package chatproto speaks the Microsoft AI Chat Protocol: its JSON types,
// strict decoding and validation of requests for servers, the error body, and
// a client for any conforming endpoint.
package chatproto
