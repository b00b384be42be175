// Package interop checks the example app against a client nobody here wrote:
// the AI Chat Protocol's official JavaScript client, @microsoft/ai-chat-protocol
// from npm, pinned in package-lock.json.
//
// The Go tests serve the example app's real handler (examples/chatapp/app) on
// a free loopback port, answering through the keyless credential chain and
// the openai-go client from local stand-ins of Azure OpenAI and the managed
// identity endpoint (package aoaitest), and run client.mjs under Node.js
// against it. The script prints what the client saw as JSON; the tests check
// it against what the stand-in was scripted to answer. The package has no
// code of its own besides the tests.
//
// The tests need Node.js 20 or later and the npm packages:
//
//	(cd interop && npm ci)
//	go test -race ./interop/
//
// Without them the tests are skipped, except in CI (CI=true), where a missing
// tool fails them. client.mjs can also be run by hand against any endpoint:
//
//	node interop/client.mjs conversation http://127.0.0.1:8080/chat
package interop
