// Package browsertest holds the example app's browser tests: headless
// Chromium, driven through the DevTools protocol with chromedp, uses the
// real page (examples/chatapp/web) served by the real app handler
// (examples/chatapp/app), which answers through the keyless credential chain
// and the openai-go client from local stand-ins of Azure OpenAI and the
// managed identity endpoint (package aoaitest). Everything runs on loopback
// in the test process; the package has no code of its own besides the tests.
//
// The tests need Debian's chromium package:
//
//	sudo apt-get install chromium
//	go test -race ./browsertest/
//
// They look for the browser as SECURECHAT_CHROMIUM, then chromium,
// chromium-browser and google-chrome on PATH. Without one they are skipped,
// except in CI (CI=true), where a missing browser fails them.
//
// When a test fails it saves a screenshot of the page, the page's HTML and
// its console messages into testdata/failures (or the directory named by
// SECURECHAT_TEST_ARTIFACTS) and logs their paths.
package browsertest
