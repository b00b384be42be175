// Package securechat is the overview of a set of Go packages for running a chat
// backend on Azure OpenAI without any key.
//
// Every call to Azure OpenAI is authorized by a Microsoft Entra ID token: the
// app's managed identity when it runs in Azure, the developer's own Azure
// Developer CLI sign-in (azd auth login) on a laptop. The browser and the server
// speak the Microsoft AI Chat Protocol, and answers stream as JSON Lines.
//
// This package holds no code. The work is done by its subpackages:
//
//   - [github.com/aoaiblocks/securechat/keyless] builds the credential chain
//     from what the host offers, hands out cached bearer tokens, reads the
//     configuration that azd provisions, and returns an openai-go client
//     authorized by the credential.
//   - [github.com/aoaiblocks/securechat/chatproto] defines the AI Chat
//     Protocol's JSON types, decodes and validates requests (JSON and
//     multipart with files), writes protocol errors, and is a Go client for
//     any server that speaks the protocol.
//   - [github.com/aoaiblocks/securechat/stream] is the http.Handler a service
//     mounts: POST <base> answers with a complete JSON message, POST
//     <base>/stream with JSON Lines, and upstream failures become protocol
//     errors with stable codes.
//   - [github.com/aoaiblocks/securechat/aoaitest] runs local stand-ins for
//     Azure OpenAI, the managed identity endpoint and the azd command, so
//     tests and the demo exercise the real Azure SDK and openai-go code on
//     loopback only.
//
// # How the parts fit
//
// A request travels through the packages in this order:
//
//	browser or chatproto.Client
//	    -> stream.Handler (decodes with chatproto, applies policy)
//	    -> the Model interface (Azure OpenAI through the keyless client)
//	    -> Azure OpenAI, authorized by a token from the keyless credential
//
// The example app in examples/chatapp wires them together with an embedded web
// page; its -demo flag runs the aoaitest stand-ins in the same process, so it
// needs no Azure at all. The infra directory and azure.yaml deploy it to Azure
// Container Apps with `azd up`, keyless from end to end.
package securechat
