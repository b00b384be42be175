// Package reliability holds the end-to-end reliability tests of securechat: the
// example app (examples/chatapp/app) in process, with its real chat handler, the real
// keyless credential chain getting tokens from an aoaitest managed identity endpoint
// (or azd stand-in), and the real openai-go client calling an aoaitest Azure OpenAI over
// TLS. Everything stays on loopback (aoaitest.Guard), and no test reads the machine's
// real Azure sign-in. The package has no API; its tests are the specification.
//
// # What the tests pin
//
//   - The fault matrix (TestFaultMatrix): every fault aoaitest can inject, upstream or
//     on the way to a token, for POST /chat and POST /chat/stream: the status or the
//     error line the client gets, its code, the fields of the request's log line, the
//     number of upstream attempts (retries included), and that the next request
//     succeeds.
//   - A client leaving mid-stream (TestClientLeavingMidStreamCancelsUpstream): the
//     upstream request is cancelled at once and the log line says 499 client_closed.
//   - The bad-input corpus (TestBadInputCorpus): malformed requests kept as files in
//     testdata/badinput, each with its pinned status and code; none gets a 5xx,
//     none reaches Azure OpenAI, and a good request after each is answered.
//   - Token lifetime (TestShortLivedTokensAreRefreshedAcrossRequestsAndDuringALongStream,
//     TestIdentityFailingAtRefreshFailsNoRequest): tokens that expire within seconds
//     are refreshed before they expire, across requests and while a long stream runs;
//     an identity endpoint failing at refresh time fails no request.
//   - Leaks: after each of those tests, no goroutine it started is left running, and
//     no connection to Azure OpenAI stays open.
//
// # The corpus files
//
// Each file in testdata/badinput is one request, named NNN-what-is-wrong.http:
//
//	# What is wrong with it, in a sentence or two.
//	# want: 400 invalid_json
//	POST /chat
//	Content-Type: application/json
//
//	{"messages": [
//
// Lines starting with # come first: comments, and the want line with the status and
// the code of the error body ("-" for a response without the protocol's error body,
// such as the mux's 404). Then the request line (method and path), header lines, an
// empty line and the body, sent byte for byte except for one final newline, which is
// dropped. "# crlf" turns the body's line ends into CRLF (for multipart bodies).
// The app serves the corpus with small limits (see corpusLimits), so that requests
// over a limit stay small files.
package reliability
