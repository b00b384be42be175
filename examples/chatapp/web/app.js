// securechat page: a chat client for the Microsoft AI Chat Protocol.
//
// It sends the whole conversation to POST chat/stream (relative to the page, so the
// app works under any path prefix), reads the JSON Lines answer as it streams, and
// renders each answer as markdown that DOMPurify sanitizes before it reaches the DOM.
// If the vendored libraries cannot load, answers are shown as plain text instead.
// web/README.md describes what the server must provide.

const STREAM_URL = "chat/stream";
const CONFIG_URL = "config.json";

// How often, at most, a growing answer is rendered again (milliseconds).
const RENDER_INTERVAL = 40;

// Sanitizer settings for model output. Raw HTML never gets this far (the markdown
// renderer escapes it), so this is the second wall: only plain document markup
// survives, links are limited to http(s), mailto and relative addresses, and nothing
// can take an id or a name that would clash with the page's own elements.
const PURIFY_CONFIG = {
  USE_PROFILES: { html: true },
  FORBID_TAGS: [
    "style", "script", "iframe", "frame", "frameset", "object", "embed", "applet",
    "form", "input", "button", "textarea", "select", "option", "label", "fieldset",
    "img", "picture", "source", "video", "audio", "track", "svg", "math",
    "link", "meta", "base", "template", "dialog", "portal",
  ],
  FORBID_ATTR: [
    "style", "id", "name", "srcset", "action", "formaction", "target", "ping",
    "autofocus", "tabindex", "contenteditable",
  ],
  ALLOW_DATA_ATTR: false,
  ALLOW_ARIA_ATTR: false,
  ALLOWED_URI_REGEXP: /^(?:(?:https?|mailto):|[^a-z]|[a-z+.-]+(?:[^a-z+.\-:]|$))/i,
  RETURN_DOM_FRAGMENT: true,
};

const el = {
  root: document.documentElement,
  banner: document.getElementById("banner"),
  user: document.getElementById("user"),
  transcript: document.getElementById("transcript"),
  empty: document.getElementById("empty"),
  status: document.getElementById("status"),
  composer: document.getElementById("composer"),
  prompt: document.getElementById("prompt"),
  send: document.getElementById("send"),
  stop: document.getElementById("stop"),
  newChat: document.getElementById("new-chat"),
};

// The conversation as the protocol sees it, the app's session state from the last
// answer, and the controller of the request in flight (null when idle).
const chat = {
  messages: [],
  sessionState: undefined,
  controller: null,
};

// toFragment turns markdown into a sanitized DocumentFragment; null means the
// libraries did not load and answers are shown as plain text.
let toFragment = null;

// ChatError is a failure the page explains to the user in plain words.
class ChatError extends Error {
  constructor(message, { code = "", status = 0, retryAfter = "" } = {}) {
    super(message);
    this.name = "ChatError";
    this.code = code;
    this.status = status;
    this.retryAfter = retryAfter;
  }
}

// ---- markdown -------------------------------------------------------------------

function escapeHTML(s) {
  return String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

async function loadRenderer() {
  try {
    const [markedModule, purifyModule] = await Promise.all([
      import("./vendor/marked.esm.js"),
      import("./vendor/purify.es.mjs"),
    ]);
    const DOMPurify = purifyModule.default;
    if (typeof markedModule.Marked !== "function" || !DOMPurify || !DOMPurify.isSupported) {
      throw new Error("unexpected shape of the vendored libraries");
    }

    const marked = new markedModule.Marked({ gfm: true, breaks: false, async: false });
    marked.use({
      renderer: {
        // Model output never becomes markup: HTML in an answer is shown as text.
        html(token) {
          const text = escapeHTML(token.text);
          return token.block ? `<p class="raw-html">${text}</p>` : text;
        },
        // No request to another host: an image becomes a link to it.
        image(token) {
          const label = token.text || token.title || token.href;
          return `<a href="${escapeHTML(token.href)}">Image: ${escapeHTML(label)}</a>`;
        },
      },
    });

    DOMPurify.addHook("afterSanitizeAttributes", (node) => {
      if (node.nodeName === "A" && node.hasAttribute("href")) {
        node.setAttribute("target", "_blank");
        node.setAttribute("rel", "noopener noreferrer nofollow");
      }
    });

    return (markdown) => DOMPurify.sanitize(marked.parse(markdown), PURIFY_CONFIG);
  } catch (err) {
    console.warn("securechat: markdown libraries unavailable; showing plain text", err);
    return null;
  }
}

// render shows markdown in target: sanitized markup when the libraries are there,
// plain text otherwise (never innerHTML).
function render(target, markdown) {
  if (toFragment) {
    try {
      target.replaceChildren(toFragment(markdown));
      target.classList.remove("plain");
      return;
    } catch (err) {
      console.warn("securechat: rendering failed; showing plain text", err);
    }
  }
  target.textContent = markdown;
  target.classList.add("plain");
}

// ---- transcript -----------------------------------------------------------------

function nearBottom() {
  const doc = document.scrollingElement || document.documentElement;
  return doc.scrollHeight - doc.scrollTop - doc.clientHeight < 80;
}

function scrollToBottom() {
  const doc = document.scrollingElement || document.documentElement;
  doc.scrollTop = doc.scrollHeight;
}

function addMessage(role) {
  el.empty.hidden = true;

  const article = document.createElement("article");
  article.className = `msg ${role}`;
  const who = document.createElement("h3");
  who.className = "who";
  who.textContent = role === "user" ? "You" : "Assistant";
  const body = document.createElement("div");
  body.className = "content";
  article.append(who, body);

  el.transcript.append(article);
  scrollToBottom();
  return { article, body };
}

function addNote(article, text) {
  const note = document.createElement("p");
  note.className = "note";
  note.textContent = text;
  article.append(note);
}

function showError(article, err) {
  const box = document.createElement("div");
  box.className = "error";
  box.setAttribute("role", "alert");

  const message = document.createElement("p");
  message.className = "error-message";
  message.textContent = err.message;
  box.append(message);

  const details = [];
  if (err.code) details.push(`Code: ${err.code}`);
  if (err.status) details.push(`HTTP ${err.status}`);
  if (err.retryAfter) details.push(`Try again in ${err.retryAfter} s`);
  if (details.length > 0) {
    const detail = document.createElement("p");
    detail.className = "error-detail";
    detail.textContent = details.join(" · ");
    box.append(detail);
  }

  article.append(box);
}

function announce(text) {
  // Clearing first makes a repeated message count as a change.
  el.status.textContent = "";
  window.setTimeout(() => {
    el.status.textContent = text;
  }, 50);
}

// ---- protocol -------------------------------------------------------------------

// jsonLines yields the non-blank lines of a JSON Lines body as they arrive: lines
// end at LF, a CR before it is dropped, and a last line without LF still counts.
async function* jsonLines(body) {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let end;
      while ((end = buffer.indexOf("\n")) >= 0) {
        const line = buffer.slice(0, end).replace(/\r$/, "");
        buffer = buffer.slice(end + 1);
        if (line.trim() !== "") yield line;
      }
    }
    buffer += decoder.decode();
    const last = buffer.replace(/\r$/, "");
    if (last.trim() !== "") yield last;
  } finally {
    reader.cancel().catch(() => {});
  }
}

function statusMessage(status) {
  if (status === 400) return "The server could not accept this message.";
  if (status === 401) return "You are not signed in. Reload the page to sign in again.";
  if (status === 403) return "You are not allowed to use this chat.";
  if (status === 404) return "The chat service was not found at this address.";
  if (status === 413) return "The conversation is too large to send. Start a new chat.";
  if (status === 429) return "Too many requests right now. Wait a moment and try again.";
  if (status >= 500) return "The server had a problem answering. Try again in a moment.";
  return "The server refused the request.";
}

// errorFrom reads the protocol's error value: {"code","message"} or older plain text.
function errorFrom(value, status) {
  if (typeof value === "string") {
    return new ChatError(value || statusMessage(status), { status });
  }
  const code = value && value.code != null ? String(value.code) : "";
  const message = value && value.message ? String(value.message) : "";
  return new ChatError(message || statusMessage(status || 500), { code, status });
}

async function httpError(res) {
  let value = null;
  try {
    const parsed = JSON.parse(await res.text());
    if (parsed && typeof parsed === "object" && parsed.error != null) value = parsed.error;
  } catch {
    // Not a protocol error body: the status says enough.
  }
  const err = value === null
    ? new ChatError(statusMessage(res.status), { status: res.status })
    : errorFrom(value, res.status);
  err.retryAfter = res.headers.get("Retry-After") || "";
  if (!/^\d+$/.test(err.retryAfter)) err.retryAfter = "";
  return err;
}

function finishNote(context) {
  if (!context || typeof context !== "object") return "";
  const reason = context.finish_reason ?? context.finishReason;
  if (reason === "length") return "The answer reached its length limit and was cut short.";
  if (reason === "content_filter") {
    return "The rest of the answer was withheld by the content filter.";
  }
  return "";
}

// ---- sending --------------------------------------------------------------------

function setBusy(busy) {
  el.send.disabled = busy;
  el.stop.disabled = !busy;
  el.root.dataset.busy = busy ? "true" : "false";
}

async function send() {
  const text = el.prompt.value;
  if (chat.controller || text.trim() === "") return;

  const question = addMessage("user");
  question.body.textContent = text;
  chat.messages.push({ role: "user", content: text });
  el.prompt.value = "";
  el.prompt.focus();

  const reply = addMessage("assistant");
  reply.article.dataset.state = "streaming";
  reply.article.setAttribute("aria-busy", "true");
  const controller = new AbortController();
  chat.controller = controller;
  setBusy(true);
  announce("Waiting for the answer.");

  let answer = "";
  let note = "";
  let started = false;
  let timer = 0;
  const paint = () => {
    timer = 0;
    const follow = nearBottom();
    render(reply.body, answer);
    if (follow) scrollToBottom();
  };

  let outcome = "done";
  try {
    await rendererReady;

    const request = { messages: chat.messages.map((m) => ({ role: m.role, content: m.content })) };
    if (chat.sessionState !== undefined && chat.sessionState !== null) {
      request.sessionState = chat.sessionState;
    }

    let res;
    try {
      res = await fetch(STREAM_URL, {
        method: "POST",
        headers: { "Content-Type": "application/json", Accept: "application/jsonl" },
        body: JSON.stringify(request),
        credentials: "same-origin",
        cache: "no-store",
        signal: controller.signal,
      });
    } catch (err) {
      if (controller.signal.aborted) throw err;
      throw new ChatError("Could not reach the server. Check the connection and try again.");
    }
    if (!res.ok) throw await httpError(res);
    if (!res.body) throw new ChatError("This browser cannot read a streamed answer.");
    started = true;

    try {
      for await (const line of jsonLines(res.body)) {
        let item;
        try {
          item = JSON.parse(line);
        } catch {
          throw new ChatError("The server sent an answer this page cannot read.", {
            code: "invalid_line",
          });
        }
        if (!item || typeof item !== "object") continue;

        if ("sessionState" in item) chat.sessionState = item.sessionState;
        if (item.error != null) throw errorFrom(item.error, 0);
        note = finishNote(item.context) || note;

        const delta = item.delta && item.delta.content;
        if (typeof delta === "string" && delta !== "") {
          answer += delta;
          if (!timer) timer = window.setTimeout(paint, RENDER_INTERVAL);
        }
      }
    } catch (err) {
      if (err instanceof ChatError || controller.signal.aborted) throw err;
      throw new ChatError("The connection was lost before the answer was complete.");
    }
  } catch (err) {
    if (controller.signal.aborted) {
      outcome = "stopped";
    } else {
      outcome = "error";
      if (!(err instanceof ChatError)) {
        console.error("securechat:", err);
        err = new ChatError("Something went wrong in this page. Try again.");
      }
      showError(reply.article, err);
    }
  }

  window.clearTimeout(timer);
  paint();
  if (note) addNote(reply.article, note);
  reply.article.dataset.state = outcome;
  reply.article.removeAttribute("aria-busy");

  if (answer !== "") {
    chat.messages.push({ role: "assistant", content: answer });
  } else if (outcome !== "done") {
    forget(question, text, started);
  }
  if (outcome === "done" && answer === "") addNote(reply.article, "The answer was empty.");
  if (outcome === "stopped") addNote(reply.article, "Stopped.");

  chat.controller = null;
  setBusy(false);
  if (document.activeElement === document.body || document.activeElement === el.stop) {
    el.prompt.focus();
  }

  if (outcome === "done") announce(`Answer: ${reply.body.innerText}`);
  else if (outcome === "stopped") announce("Answer stopped.");
}

// forget takes an unanswered question out of the conversation, so a rejected
// message does not block every later one, and offers its text again.
function forget(question, text, started) {
  chat.messages.pop();
  question.article.classList.add("unsent");
  const giveBack = !started && el.prompt.value === "";
  if (giveBack) el.prompt.value = text;
  addNote(question.article, giveBack
    ? "Not kept in the conversation; the text is back in the message box."
    : "Not kept in the conversation.");
}

function stop() {
  if (chat.controller) chat.controller.abort();
}

function newChat() {
  stop();
  chat.messages = [];
  chat.sessionState = undefined;
  el.transcript.replaceChildren(el.empty);
  el.empty.hidden = false;
  el.prompt.value = "";
  el.prompt.focus();
  announce("New chat started.");
}

// ---- configuration ----------------------------------------------------------------

async function loadConfig() {
  let config = {};
  try {
    const res = await fetch(CONFIG_URL, {
      headers: { Accept: "application/json" },
      credentials: "same-origin",
      cache: "no-store",
    });
    if (res.ok) config = await res.json();
  } catch {
    // No configuration: no banner, no user name.
  }
  if (!config || typeof config !== "object") config = {};

  const demo = config.demo === true;
  el.banner.hidden = !demo;
  el.root.dataset.demo = demo ? "true" : "false";

  const user = typeof config.user === "string" ? config.user.trim() : "";
  el.user.hidden = user === "";
  el.user.textContent = user === "" ? "" : `Signed in as ${user}`;
}

// ---- wiring ----------------------------------------------------------------------

el.composer.addEventListener("submit", (event) => {
  event.preventDefault();
  send();
});

// Enter sends and Shift+Enter adds a line. Enter while an input method is composing
// belongs to the input method.
function isSendKey(event) {
  return event.key === "Enter" && !event.shiftKey && !event.isComposing && event.keyCode !== 229;
}

el.prompt.addEventListener("keydown", (event) => {
  if (!isSendKey(event)) return;
  event.preventDefault();
  send();
});

// Some synthetic keyboards (DevTools protocol drivers) deliver the Enter character
// even when its keydown was cancelled; keep it out of the emptied box.
el.prompt.addEventListener("keypress", (event) => {
  if (isSendKey(event)) event.preventDefault();
});

document.addEventListener("keydown", (event) => {
  if (event.key === "Escape" && chat.controller) {
    event.preventDefault();
    stop();
  }
});

el.stop.addEventListener("click", stop);
el.newChat.addEventListener("click", newChat);
setBusy(false);

const rendererReady = loadRenderer().then((fn) => {
  toFragment = fn;
  el.root.dataset.renderer = fn ? "markdown" : "plain";
});

Promise.all([rendererReady, loadConfig()]).then(() => {
  el.root.dataset.ready = "true";
});
