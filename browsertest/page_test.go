package browsertest

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
	"github.com/google/go-cmp/cmp"

	"github.com/aoaiblocks/securechat/aoaitest"
	"github.com/aoaiblocks/securechat/chatproto"
	"github.com/aoaiblocks/securechat/stream"
)

// lastAnswer is a JavaScript expression for the last assistant message.
const lastAnswer = `[...document.querySelectorAll("#transcript .msg.assistant")].at(-1)`

// ask types question into the message box and sends it with the Enter key.
//
// It turns spell checking off in the box first: Chromium downloads a
// dictionary from Google the first time someone types into a spell-checked
// box, and the profile preference that turns spell checking off does not
// stop that (Chromium 156).
func (p *page) ask(question string) {
	p.t.Helper()
	const users = `document.querySelectorAll("#transcript .msg.user").length`
	before := eval[int](p, users)
	p.do("type the question and press Enter",
		chromedp.Evaluate[chromedp.Void](`(() => {
			const box = document.getElementById("prompt");
			box.spellcheck = false;
			box.value = "";
		})()`),
		chromedp.SendKeys(chromedp.ID("prompt"), question+kb.Enter))
	p.waitWithin(sendTimeout, "the question to appear in the transcript after Enter",
		fmt.Sprintf("%s > %d", users, before))
}

// sendTimeout bounds the wait for a question to show once it was sent.
const sendTimeout = 10 * time.Second

// waitAnswer waits until the last answer has left the streaming state and
// returns that state.
func (p *page) waitAnswer() string {
	p.t.Helper()
	p.waitFor("the answer to end", lastAnswer+`?.dataset.state && `+
		lastAnswer+`.dataset.state !== "streaming"`)
	return eval[string](p, lastAnswer+`.dataset.state`)
}

// render is what the last answer showed at one moment.
type render struct {
	State string `json:"state"`
	Text  string `json:"text"`
}

// recordRenders makes the page record every change of the last answer's state
// and text, from a MutationObserver, so that no render is missed between two
// polls. renders returns the record.
func (p *page) recordRenders() {
	p.t.Helper()
	eval[chromedp.Void](p, `(() => {
		window.browsertestRenders = [];
		const transcript = document.getElementById("transcript");
		new MutationObserver(() => {
			const answer = `+lastAnswer+`;
			if (!answer) return;
			const content = answer.querySelector(".content");
			const r = {state: answer.dataset.state || "",
				text: content ? content.textContent : ""};
			const prev = window.browsertestRenders.at(-1);
			if (!prev || prev.state !== r.state || prev.text !== r.text) {
				window.browsertestRenders.push(r);
			}
		}).observe(transcript, {subtree: true, childList: true, characterData: true,
			attributes: true});
	})()`)
}

func (p *page) renders() []render {
	p.t.Helper()
	return eval[[]render](p, `window.browsertestRenders`)
}

// slowText streams s one word every delay.
func slowText(s string, delay time.Duration) aoaitest.Reply {
	r := aoaitest.Text(s)
	r.ChunkDelay = delay
	return r
}

func TestPageStreamsAnswerToQuestionSentWithEnter(t *testing.T) {
	answers := []string{
		"Keyless means the app proves who it is with a token from Microsoft Entra ID " +
			"and never holds an API key.",
		"The managed identity endpoint of the platform hands it the token.",
	}
	srv, aoai := serveApp(t, func(r *aoaitest.ChatRequest) aoaitest.Reply {
		users := 0
		for _, m := range r.Messages {
			if m.Role == "user" {
				users++
			}
		}
		if users > len(answers) {
			return aoaitest.Text("unexpected turn")
		}
		return slowText(answers[users-1], 80*time.Millisecond)
	})
	p := openPage(t, srv.URL+"/")

	p.recordRenders()
	p.ask("What is keyless auth?")
	if got := p.waitAnswer(); got != "done" {
		t.Fatalf("answer state = %q, want done", got)
	}

	renders := p.renders()
	var partial []string
	for _, r := range renders {
		text := strings.TrimSpace(r.Text)
		if r.State != "streaming" || text == "" {
			continue
		}
		if !strings.HasPrefix(answers[0], text) {
			t.Errorf("partial render %q is not a start of the answer", text)
		}
		if text != answers[0] && (len(partial) == 0 || partial[len(partial)-1] != text) {
			partial = append(partial, text)
		}
	}
	t.Logf("%d different partial renders before the end", len(partial))
	if len(partial) < 2 {
		t.Errorf("saw %d partial renders before the end, want at least 2; renders: %q",
			len(partial), renders)
	}
	final := renders[len(renders)-1]
	if final.State != "done" || strings.TrimSpace(final.Text) != answers[0] {
		t.Errorf("last render = %+v, want state done and text %q", final, answers[0])
	}
	if got := eval[string](p, `document.getElementById("prompt").value`); got != "" {
		t.Errorf("message box after sending = %q, want empty", got)
	}

	// The second question goes with the first exchange as history.
	p.ask("How does the app get its token?")
	if got := p.waitAnswer(); got != "done" {
		t.Fatalf("second answer state = %q, want done", got)
	}
	got := eval[string](p, lastAnswer+`.querySelector(".content").textContent`)
	if strings.TrimSpace(got) != answers[1] {
		t.Errorf("second answer shows %q, want %q", got, answers[1])
	}
	reqs := aoai.Requests()
	if len(reqs) != 2 {
		t.Fatalf("Azure OpenAI got %d requests, want 2", len(reqs))
	}
	var convo []string
	for _, m := range reqs[1].Messages {
		if m.Role != "system" {
			convo = append(convo, m.Role+": "+m.Content)
		}
	}
	want := []string{
		"user: What is keyless auth?",
		"assistant: " + answers[0],
		"user: How does the app get its token?",
	}
	if diff := cmp.Diff(want, convo); diff != "" {
		t.Errorf("conversation sent upstream on the second turn (-want +got):\n%s", diff)
	}
}

func TestStopButtonCancelsTheUpstreamRequest(t *testing.T) {
	words := strings.Repeat("and on ", 60) + "the end."
	srv, aoai := serveApp(t, func(*aoaitest.ChatRequest) aoaitest.Reply {
		return slowText(words, 150*time.Millisecond)
	})
	p := openPage(t, srv.URL+"/")

	p.ask("Tell me a long story.")
	p.waitFor("the answer to start", lastAnswer+`?.dataset.state === "streaming" && `+
		lastAnswer+`.querySelector(".content").textContent.trim() !== ""`)
	p.do("press Stop", chromedp.Click(chromedp.ID("stop")))
	if got := p.waitAnswer(); got != "stopped" {
		t.Fatalf("answer state after Stop = %q, want stopped", got)
	}
	shown := eval[string](p, lastAnswer+`.querySelector(".content").textContent`)
	if strings.Contains(shown, "the end.") {
		t.Errorf("the whole answer arrived before Stop took effect: %q", shown)
	}

	reqs := aoai.Requests()
	if len(reqs) != 1 {
		t.Fatalf("Azure OpenAI got %d requests, want 1", len(reqs))
	}
	select {
	case <-reqs[0].Done:
	case <-time.After(10 * time.Second):
		t.Fatal("Azure OpenAI still serves the request 10 s after Stop")
	}
	if got := aoai.Requests()[0]; !got.Canceled {
		t.Errorf("Azure OpenAI request after Stop: Canceled = false, status %d; "+
			"want the upstream request cancelled", got.Status)
	}
}

func TestServerErrorIsShownToTheUser(t *testing.T) {
	srv, aoai := serveApp(t, func(*aoaitest.ChatRequest) aoaitest.Reply {
		// The app's identity lacks its role on the Azure OpenAI account.
		return aoaitest.Reply{Status: http.StatusForbidden, ErrorCode: "PermissionDenied"}
	})
	p := openPage(t, srv.URL+"/")

	p.ask("Hello?")
	if got := p.waitAnswer(); got != "error" {
		t.Fatalf("answer state = %q, want error", got)
	}
	type shown struct {
		Message, Detail string
		Unsent          bool
	}
	got := eval[shown](p, `(() => {
		const alert = `+lastAnswer+`.querySelector('.error[role="alert"]');
		return {
			Message: alert?.querySelector(".error-message")?.textContent ?? "",
			Detail: alert?.querySelector(".error-detail")?.textContent ?? "",
			Unsent: !!document.querySelector("#transcript .msg.user.unsent"),
		};
	})()`)
	// What the server answers the same question, straight from Go.
	sent := serverError(t, srv, `{"messages":[{"role":"user","content":"Hello?"}]}`)
	if sent.Code != stream.CodeUpstreamAuth {
		t.Errorf("the server answered code %q, want %q", sent.Code, stream.CodeUpstreamAuth)
	}
	want := shown{
		Message: sent.Message,
		Detail:  fmt.Sprintf("Code: %s · HTTP %d", sent.Code, sent.Status),
		Unsent:  true,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("error shown to the user (-want +got):\n%s", diff)
	}
	if n := len(aoai.Requests()); n == 0 {
		t.Error("the request never reached Azure OpenAI")
	}
}

// serverError posts body to the app's streaming endpoint and returns the
// error it answers.
func serverError(t *testing.T, srv *httptest.Server, body string) *chatproto.Error {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL+"/chat/stream",
		strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	res, err := srv.Client().Do(req)
	if err != nil {
		t.Fatalf("asking the app directly: %v", err)
	}
	defer res.Body.Close()
	var e chatproto.ErrorResponse
	if err := json.NewDecoder(res.Body).Decode(&e); err != nil || e.Error == nil {
		t.Fatalf("the app answered %s without an error body (%v)", res.Status, err)
	}
	e.Error.Status = res.StatusCode
	return e.Error
}

// pwned is the window property the injection payloads try to set.
const pwned = "securechatPwned"

func TestInjectedMarkupInAnAnswerIsShownAsText(t *testing.T) {
	payloads := []string{
		fmt.Sprintf(`<img src=x onerror="window.%s='img'">`, pwned),
		fmt.Sprintf(`<script>window.%s='script'</script>`, pwned),
		fmt.Sprintf(`<svg onload="window.%s='svg'"></svg>`, pwned),
		fmt.Sprintf(`<iframe srcdoc="<script>parent.%s='iframe'</script>"></iframe>`,
			pwned),
		fmt.Sprintf(`<a href="javascript:window.%s='a'" id="prompt">a link</a>`, pwned),
	}
	answer := "Here is **bold** text. " + strings.Join(payloads, " ") +
		"\n\n" + payloads[1] + "\n\n" +
		fmt.Sprintf(`[a markdown link](javascript:window.%s='md')`, pwned) +
		" and ![a pixel](browsertest-pixel.png)"
	srv, _ := serveApp(t, func(*aoaitest.ChatRequest) aoaitest.Reply {
		return slowText(answer, 10*time.Millisecond)
	})
	p := openPage(t, srv.URL+"/")
	if got := eval[string](p, `document.documentElement.dataset.renderer`); got != "markdown" {
		t.Fatalf("html[data-renderer] = %q, want markdown (the sanitizer's path)", got)
	}

	p.ask("Show me some HTML.")
	if got := p.waitAnswer(); got != "done" {
		t.Fatalf("answer state = %q, want done", got)
	}
	// Give an image's error event or a frame's load time to run.
	p.do("wait for late events", chromedp.Sleep(500*time.Millisecond))

	type result struct {
		Flag      string   // the property the payloads set, or "unset"
		Elements  []string // dangerous elements in the transcript
		Handlers  []string // on* attributes in the transcript
		BadLinks  []string // links that are not http(s), mailto or relative
		Strong    bool     // markdown still renders
		Text      string   // what the answer shows
		PromptTag string   // the element with id prompt, still the message box
	}
	got := eval[result](p, `(() => {
		const t = document.getElementById("transcript");
		const all = [...t.querySelectorAll("*")];
		return {
			Flag: String(window.`+pwned+` ?? "unset"),
			Elements: [...t.querySelectorAll(
				"script, img, svg, iframe, object, embed, style, form, input")]
				.map((e) => e.outerHTML),
			Handlers: all.flatMap((e) => [...e.attributes]
				.filter((a) => a.name.startsWith("on"))
				.map((a) => e.tagName + " " + a.name)),
			BadLinks: [...t.querySelectorAll("a[href]")]
				.map((a) => a.getAttribute("href"))
				.filter((h) => /^\s*[a-z][a-z0-9+.-]*:/i.test(h) &&
					!/^\s*(https?|mailto):/i.test(h)),
			Strong: !!`+lastAnswer+`.querySelector(".content strong"),
			Text: `+lastAnswer+`.querySelector(".content").textContent,
			PromptTag: document.getElementById("prompt").tagName,
		};
	})()`)

	if got.Flag != "unset" {
		t.Errorf("window.%s = %q: a payload ran", pwned, got.Flag)
	}
	if len(got.Elements) > 0 {
		t.Errorf("the answer made elements: %q", got.Elements)
	}
	if len(got.Handlers) > 0 {
		t.Errorf("the answer made event handler attributes: %q", got.Handlers)
	}
	if len(got.BadLinks) > 0 {
		t.Errorf("the answer made links to: %q", got.BadLinks)
	}
	if !got.Strong {
		t.Error("**bold** was not rendered as markdown")
	}
	if got.PromptTag != "TEXTAREA" {
		t.Errorf("the element with id prompt is a %s, want the page's TEXTAREA", got.PromptTag)
	}
	for _, s := range payloads {
		if !strings.Contains(got.Text, s) {
			t.Errorf("the answer does not show the markup as text: %q\nin %q", s, got.Text)
		}
	}
	for _, u := range p.requested() {
		if strings.Contains(u, "browsertest-pixel") || strings.HasSuffix(u, "/x") {
			t.Errorf("the answer made the page request %s", u)
		}
	}

	// Follow every link of the answer, as a user might; the flag stays unset
	// and the page stays where it is.
	p.do("click the answer's links", chromedp.Evaluate[chromedp.Void](
		`document.querySelectorAll("#transcript a").forEach((a) => a.click())`))
	p.do("wait for the clicks", chromedp.Sleep(300*time.Millisecond))
	type after struct{ Flag, URL string }
	want := after{Flag: "unset", URL: srv.URL + "/"}
	clicked := eval[after](p, `({Flag: String(window.`+pwned+` ?? "unset"), URL: location.href})`)
	if clicked != want {
		t.Errorf("after clicking the answer's links: window.%s = %q, page at %s; "+
			"want %q at %s", pwned, clicked.Flag, clicked.URL, want.Flag, want.URL)
	}
}
