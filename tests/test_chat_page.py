"""The chat page at / of `llmfile --server`, driven in headless Chromium (Selenium).

Every test runs twice: against tests/page_mock_server.py (a stdlib stand-in that
streams canned replies word by word; cheap, always runs) and against the real
server with the default model (skipped while build/llmfile has no --server). The
page is the same file either way; the real run also checks that the binary serves
it and that its streaming, errors and API-key answers are what the page expects.
Screenshots (desktop, phone, dark) go to build/screenshots/.
"""
import json
import os
import re
import shutil
import subprocess
import time
import urllib.error
import urllib.request

import pytest
from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

import page_mock_server
from conftest import BUILD

MODEL = os.path.expanduser("~/.cache/llmfile/default.gguf")
SHOTS = BUILD / "screenshots"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
API_KEY = "s3cret-key"


# ---- servers --------------------------------------------------------------------------

class RealServer:
    """build/llmfile --server on a free port (--port 0; the URL is read from its output)."""

    def __init__(self, exe, tmp_path, *extra):
        self.log = tmp_path / f"server-{time.monotonic_ns()}.log"
        self.out = open(self.log, "w")
        self.proc = subprocess.Popen([str(exe), "--server", "-m", MODEL, "--port", "0", "-np", "2", *extra],
                                     stdout=self.out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        self.url = None
        while time.monotonic() < deadline and self.proc.poll() is None:
            found = re.search(r"(http://[\w.\[\]:-]+:\d+)", self.log.read_text())
            if found:
                self.url = found.group(1) + "/"
                if http_status(self.url + "health") == 200:
                    return
            time.sleep(0.05)
        log = self.log.read_text()
        self.close()
        raise AssertionError(f"llmfile --server did not become healthy:\n{log}")

    def close(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.out.close()


def http_status(url):
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return None


def metric(url, name, key=None):
    req = urllib.request.Request(url + "metrics", headers={"Authorization": f"Bearer {key}"} if key else {})
    with urllib.request.urlopen(req, timeout=5) as r:
        text = r.read().decode()
    return float(re.search(rf"^{re.escape(name)} (\S+)$", text, re.M).group(1))


def server_supports_page(exe):
    """True once build/llmfile has --server (the page is built into it)."""
    if not exe.exists():
        return False
    proc = subprocess.run([str(exe), "--server", "--help"], capture_output=True, text=True, timeout=30)
    return proc.returncode == 0 and "--port" in proc.stdout


def start_server(mode, tmp_path_factory, api_key=None):
    if mode == "mock":
        return page_mock_server.start(api_key=api_key, delay=0.015)
    exe = BUILD / "llmfile"
    if not server_supports_page(exe):
        pytest.skip(f"{exe} has no --server yet (the real-server run needs the server)")
    if not os.path.exists(MODEL):
        pytest.skip(f"the default model {MODEL} is missing: run `make model`")
    extra = ("--api-key", api_key) if api_key else ()
    return RealServer(exe, tmp_path_factory.mktemp("server"), *extra)


@pytest.fixture(scope="module", params=["mock", "real"])
def server(request, tmp_path_factory):
    srv = start_server(request.param, tmp_path_factory)
    srv.mode = request.param
    yield srv
    srv.close()


@pytest.fixture(scope="module")
def browser():
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1280,860", "--force-device-scale-factor=1", "--lang=en-US"]:
        opts.add_argument(arg)
    # Selenium Manager is not used: the driver path is given.
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.set_script_timeout(20)
    yield driver
    driver.quit()


@pytest.fixture
def page(browser, server):
    """The page freshly opened on `server`, with empty local storage, desktop size, light scheme."""
    browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    browser.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": [{"name": "prefers-color-scheme", "value": "light"}]})
    browser.get(server.url)
    browser.execute_script("localStorage.clear()")
    browser.get(server.url)
    wait(browser, lambda d: d.execute_script("return document.readyState") == "complete")
    return browser


# ---- helpers --------------------------------------------------------------------------

def wait(driver, cond, timeout=20, what="condition"):
    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.02).until(cond)
    except TimeoutException:
        raise AssertionError(f"timed out waiting for {what}") from None


def el(driver, css):
    return driver.find_element(By.CSS_SELECTOR, css)


def els(driver, css):
    return driver.find_elements(By.CSS_SELECTOR, css)


def set_setting(driver, field_id, value):
    """Types a value into the settings panel, the way a person would."""
    if el(driver, "#settings").get_attribute("hidden") is not None:
        el(driver, "#settings-toggle").click()
    box = el(driver, "#" + field_id)
    box.send_keys(Keys.CONTROL, "a")
    box.send_keys(Keys.BACKSPACE)
    if value != "":
        box.send_keys(str(value))
    el(driver, "#settings-close").click()


def record_reply_lengths(driver):
    """Records the text length of the newest reply at every DOM change, with times."""
    driver.execute_script("""
        window.__lengths = [];
        const log = document.getElementById('thread');
        new MutationObserver(() => {
            const replies = log.querySelectorAll('.msg.assistant .bubble');
            const last = replies[replies.length - 1];
            if (last) window.__lengths.push([performance.now(), last.textContent.length]);
        }).observe(log, {childList: true, subtree: true, characterData: true});
    """)


def send(driver, text):
    box = el(driver, "#prompt")
    box.send_keys(text)
    box.send_keys(Keys.ENTER)


def last_reply(driver):
    replies = els(driver, ".msg.assistant .bubble")
    return replies[-1] if replies else None


def reply_done(driver):
    """True when no reply is streaming (Stop hidden) and the newest reply or error is final."""
    return driver.execute_script("""
        const stop = document.getElementById('stop');
        const msgs = document.querySelectorAll('.msg.assistant, .msg.error');
        const last = msgs[msgs.length - 1];
        return stop.hidden && !!last && (last.classList.contains('error') ||
            last.querySelector('.bubble').getAttribute('aria-busy') === 'false');
    """)


def ask(driver, text, timeout=30):
    send(driver, text)
    wait(driver, reply_done, timeout, f"the reply to {text!r}")
    return last_reply(driver)


def shot(driver, name):
    SHOTS.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(SHOTS / name))


def phone(driver):
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": 390, "height": 844, "deviceScaleFactor": 2, "mobile": True})


def no_horizontal_scroll(driver):
    return driver.execute_script("""
        const d = document.documentElement, w = window.innerWidth;
        const wide = [...document.querySelectorAll('body *')].filter(e => {
            const r = e.getBoundingClientRect();
            return r.width > 0 && (r.right > w + 0.5 || r.left < -0.5) && !e.closest('pre, .table');
        }).map(e => e.tagName + '.' + e.className);
        return {scroll: d.scrollWidth, body: document.body.scrollWidth, width: w, wide: wide};
    """)


# ---- the conversation -----------------------------------------------------------------

def test_reply_streams_and_completes(page, server):
    set_setting(page, "max-tokens", 24)
    model_ids = json.loads(urllib.request.urlopen(server.url + "v1/models", timeout=5).read())["data"]
    wait(page, lambda d: el(d, "#model").text == model_ids[0]["id"], 5, "the model name in the header")
    record_reply_lengths(page)
    reply = ask(page, "Hello! Who are you?")
    text = reply.text.strip()
    assert text, "the reply is empty"
    assert el(page, ".msg.user .bubble").text == "Hello! Who are you?"
    lengths = page.execute_script("return window.__lengths")
    growing = [n for _, n in lengths if n > 0]
    distinct = sorted(set(growing))
    # Streamed: the text was on screen at several lengths before the end, growing.
    assert len(distinct) >= 3, f"the reply did not stream (lengths seen: {distinct})"
    assert growing == sorted(growing), "the reply's text shrank while streaming"
    assert distinct[0] < distinct[-1] / 2
    if server.mode == "real":
        shot(page, "chat-desktop-real.png")
    assert el(page, "#send").is_displayed() and not el(page, "#stop").is_displayed()
    assert el(page, "#status").get_attribute("textContent") == "Reply complete"
    # A second turn carries the history (the mock echoes; the real model just answers).
    before = len(els(page, ".msg.assistant"))
    ask(page, "Say that again, shorter.")
    assert len(els(page, ".msg.assistant")) == before + 1 and last_reply(page).text.strip()
    if server.mode == "mock":
        body = server.state.bodies[-1]
        assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]
        # The history holds the reply as the model wrote it (Markdown source), not the rendered text.
        sent, _ = page_mock_server.reply_for([{"role": "user", "content": "Hello! Who are you?"}])
        assert body["messages"][1]["content"] == sent and body["stream"] is True and body["max_tokens"] == 24


def test_stop_aborts_the_stream(page, server):
    set_setting(page, "max-tokens", 2000)
    send(page, "Write a long story about a dragon who learns to bake bread.")
    wait(page, lambda d: el(d, "#stop").is_displayed(), 5, "the Stop button")
    wait(page, lambda d: len(last_reply(d).text) > 20, 30, "the first words of the reply")
    el(page, "#stop").click()
    wait(page, lambda d: el(d, "#send").is_displayed(), 5, "Send to come back after Stop")
    stopped = last_reply(page).text
    assert el(page, ".msg.assistant .note").text == "Stopped"
    time.sleep(0.6)
    assert last_reply(page).text == stopped, "the reply kept growing after Stop"
    # The request itself ended: the server is no longer generating for it.
    wait(page, lambda d: metric(server.url, "llamacpp:requests_processing") == 0, 5,
         "the server to notice the closed stream")
    if server.mode == "mock":
        assert server.state.aborted >= 1
    # The conversation goes on after a stop.
    set_setting(page, "max-tokens", 8)
    assert ask(page, "Thanks, that is enough.").text.strip()


def test_enter_sends_and_shift_enter_breaks_the_line(page, server):
    set_setting(page, "max-tokens", 8)
    box = el(page, "#prompt")
    box.send_keys("line one")
    box.send_keys(Keys.SHIFT, Keys.ENTER)
    box.send_keys("line two")
    assert box.get_attribute("value") == "line one\nline two"
    assert not els(page, ".msg.user")
    box.send_keys(Keys.ENTER)
    wait(page, reply_done, 30, "the reply")
    assert el(page, ".msg.user .bubble").get_attribute("textContent") == "line one\nline two"
    assert box.get_attribute("value") == ""
    # Blank input sends nothing.
    box.send_keys("   ", Keys.ENTER)
    assert len(els(page, ".msg.user")) == 1 and el(page, "#send").get_attribute("disabled") is not None


def test_settings_persist_and_reach_the_server(page, server):
    set_setting(page, "temperature", "0.3")
    set_setting(page, "max-tokens", 6)
    set_setting(page, "system-prompt", "You answer in one short sentence.")
    page.refresh()
    assert el(page, "#temperature").get_attribute("value") == "0.3"
    assert el(page, "#max-tokens").get_attribute("value") == "6"
    assert el(page, "#system-prompt").get_attribute("value") == "You answer in one short sentence."
    predicted = metric(server.url, "llamacpp:tokens_predicted_total")
    assert ask(page, "Tell me everything you know about the sea.").text.strip()
    # max_tokens reached the server: at most 6 tokens were generated for the reply.
    assert 0 < metric(server.url, "llamacpp:tokens_predicted_total") - predicted <= 6
    if server.mode == "mock":
        body = server.state.bodies[-1]
        assert body["temperature"] == 0.3 and body["max_tokens"] == 6
        assert body["messages"][0] == {"role": "system", "content": "You answer in one short sentence."}


def test_new_chat_clears_the_conversation(page, server):
    set_setting(page, "max-tokens", 8)
    ask(page, "First chat.")
    assert els(page, ".msg")
    el(page, "#new-chat").click()
    assert not els(page, ".msg") and el(page, "#empty").is_displayed()
    if server.mode == "mock":
        shot(page, "chat-empty.png")
    ask(page, "Second chat.")
    assert [e.text for e in els(page, ".msg.user .bubble")] == ["Second chat."]
    if server.mode == "mock":
        assert [m["content"] for m in server.state.bodies[-1]["messages"]] == ["Second chat."]


# ---- errors ---------------------------------------------------------------------------

def test_server_error_is_shown_and_retry_works(page, server):
    set_setting(page, "max-tokens", 100000)  # more than a slot's context: the server says 400
    ask(page, "Hi")
    error = el(page, ".msg.error")
    assert error.get_attribute("role") == "alert"
    assert "max_tokens" in error.text and "HTTP 400" in error.text, error.text
    if server.mode == "mock":
        shot(page, "chat-error.png")
    set_setting(page, "max-tokens", 8)
    error.find_element(By.TAG_NAME, "button").click()  # Retry
    wait(page, reply_done, 30, "the retried reply")
    assert not els(page, ".msg.error") and last_reply(page).text.strip()
    assert len(els(page, ".msg.user")) == 1


def test_unreachable_server_is_shown(page, server):
    set_setting(page, "max-tokens", 8)
    page.execute_cdp_cmd("Network.enable", {})
    page.execute_cdp_cmd("Network.emulateNetworkConditions",
                         {"offline": True, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1})
    try:
        ask(page, "Anyone there?")
        assert "Cannot reach the server" in el(page, ".msg.error").text
    finally:
        page.execute_cdp_cmd("Network.emulateNetworkConditions",
                             {"offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1})
        page.execute_cdp_cmd("Network.disable", {})
    # Back online, the next message goes through (and the failed one is not resent as history).
    assert ask(page, "Now?").text.strip()
    if server.mode == "mock":
        assert [m["content"] for m in server.state.bodies[-1]["messages"]] == ["Now?"]


def test_error_in_the_middle_of_a_stream(browser, tmp_path_factory):
    """The real server sends {"error": ...} as an event when generation fails after it began;
    only the mock can make that happen on purpose."""
    srv = start_server("mock", tmp_path_factory)
    try:
        browser.get(srv.url)
        reply = ask(browser, "please fail midway")
        assert reply.text.startswith("This reply will")
        err = reply.find_element(By.CSS_SELECTOR, ".err")
        assert err.text == "the engine failed (mock)" and err.get_attribute("role") == "alert"
    finally:
        srv.close()


def test_api_key_is_asked_for_and_sent(browser, server, tmp_path_factory):
    keyed = start_server(server.mode, tmp_path_factory, api_key=API_KEY)
    try:
        browser.get(keyed.url)
        browser.execute_script("localStorage.clear()")
        browser.get(keyed.url)
        # The model list needs the key: the page asks at once.
        wait(browser, lambda d: el(d, "#keybar").is_displayed(), 5, "the API-key field")
        assert el(browser, "#model").text == ""
        set_setting(browser, "max-tokens", 8)
        send(browser, "Hello with a key?")
        wait(browser, lambda d: els(d, ".msg.error"), 10, "the 401 message")
        assert "API key" in el(browser, ".msg.error").text
        if server.mode == "mock":
            shot(browser, "chat-api-key.png")
        field = el(browser, "#key-input")
        field.send_keys("wrong-key", Keys.ENTER)  # retried, refused again
        wait(browser, lambda d: el(d, "#keybar").is_displayed() and els(d, ".msg.error"), 10, "the field again")
        el(browser, "#key-input").send_keys(API_KEY, Keys.ENTER)
        wait(browser, reply_done, 30, "the reply with the key")
        assert last_reply(browser).text.strip() and not els(browser, ".msg.error")
        assert not el(browser, "#keybar").is_displayed()
        wait(browser, lambda d: el(d, "#model").text, 5, "the model name once the key is known")
        assert browser.execute_script("return JSON.parse(localStorage.getItem('llmfile.apiKey'))") == API_KEY
    finally:
        keyed.close()


# ---- Markdown -------------------------------------------------------------------------

MARKDOWN_CASES = [
    # (input, CSS selector -> expected text), checked on the rendered DOM
    ("# Title\n\nSome **bold**, *italic*, _also_ and ~~gone~~.",
     {"h1": "Title", "strong": "bold", "em": ["italic", "also"], "del": "gone"}),
    ("- one\n- two\n  - nested\n- three", {":scope > ul > li": ["one", "twonested", "three"], "ul ul li": "nested"}),
    ("3. c\n4. d", {"ol[start='3'] li": ["c", "d"]}),
    ("Use `a < b && c` here", {"code": "a < b && c"}),
    ("```js\nif (a < b) alert('<b>x</b>');\n```", {".code pre code": "if (a < b) alert('<b>x</b>');",
                                                  ".code-bar span": "js", ".code .copy": "Copy"}),
    ("[docs](https://example.com/a_b?x=1&y=2) and https://example.org/path.",
     {"a": ["docs", "https://example.org/path"]}),
    ("snake_case_name and 2 * 3 * 4", {"p": "snake_case_name and 2 * 3 * 4"}),
    ("| a | b |\n|---|---|\n| 1 | **2** |", {"th": ["a", "b"], "td": ["1", "2"], "td strong": "2"}),
    ("> quoted *text*", {"blockquote em": "text"}),
    ("line one\nline two", {"p br": None}),
    # Mid-stream states: an unclosed fence is already code; an unclosed ** stays literal.
    ("Here:\n```py\nx = 1", {".code pre code": "x = 1", "p": "Here:"}),
    ("so **bol", {"p": "so **bol", "strong": []}),
    ("a \\*not italic\\* b", {"p": "a *not italic* b", "em": []}),
]

HOSTILE = [
    "<img src=x onerror=window.__xss=1>",
    "<script>window.__xss=1</script>",
    "[click](javascript:window.__xss=1)",
    "[click](JaVaScRiPt:window.__xss=1)",
    "[x](https://example.com/\"onmouseover=\"window.__xss=1)",
    '<a href="javascript:window.__xss=1">a</a>',
    "`<img src=x onerror=window.__xss=1>`",
    "```\n</code></pre><img src=x onerror=window.__xss=1>\n```",
    "# <svg onload=window.__xss=1>",
    "- <iframe src=javascript:window.__xss=1>",
    "| <b onclick=x> |\n|---|\n| <img src=x onerror=window.__xss=1> |",
    "**<img src=x onerror=window.__xss=1>**",
    "[<img src=x onerror=window.__xss=1>](https://example.com)",
    "https://example.com/<img/src=x/onerror=window.__xss=1>",
]


def render(driver, src):
    """The page's renderer on `src`, put into a live element the way replies are."""
    return driver.execute_script("""
        const div = document.createElement('div');
        div.className = 'md';
        div.innerHTML = window.llmfile.renderMarkdown(arguments[0]);
        document.body.appendChild(div);
        return div;
    """, src)


@pytest.mark.parametrize("src,expect", MARKDOWN_CASES, ids=range(len(MARKDOWN_CASES)))
def test_markdown_renderer(page, src, expect):
    root = render(page, src)
    for css, want in expect.items():
        found = [e.get_attribute("textContent") for e in root.find_elements(By.CSS_SELECTOR, css)]
        if want is None:
            assert found, f"{css} missing in {root.get_attribute('innerHTML')}"
        else:
            assert found == (want if isinstance(want, list) else [want]), (css, root.get_attribute("innerHTML"))
    if src.startswith("[docs]"):
        links = root.find_elements(By.TAG_NAME, "a")
        assert links[0].get_attribute("href") == "https://example.com/a_b?x=1&y=2"
        assert all(a.get_attribute("rel") == "noopener noreferrer" for a in links)


def test_markdown_renderer_keeps_hostile_text_as_text(page):
    results = page.execute_script("""
        window.__xss = 0;
        const out = [];
        for (const src of arguments[0]) {
            const div = document.createElement('div');
            div.innerHTML = window.llmfile.renderMarkdown(src);
            document.body.appendChild(div);
            const tags = [...div.querySelectorAll('*')].map(e => e.tagName.toLowerCase());
            const attrs = [...div.querySelectorAll('*')].flatMap(e => [...e.attributes].map(a => a.name));
            const hrefs = [...div.querySelectorAll('[href]')].map(e => e.getAttribute('href'));
            out.push({src, tags, attrs, hrefs, text: div.textContent});
        }
        return out;
    """, HOSTILE)
    allowed_tags = {"p", "br", "h1", "ul", "li", "code", "pre", "div", "span", "button", "a", "strong",
                    "table", "thead", "tbody", "tr", "th", "td"}
    for r in results:
        assert set(r["tags"]) <= allowed_tags, r
        assert set(r["attrs"]) <= {"href", "target", "rel", "class", "type", "aria-label"}, r
        assert all(h.startswith("https://") for h in r["hrefs"]), r
    by_src = {r["src"]: r for r in results}
    # The hostile markup shows up as the literal text the model wrote.
    assert by_src[HOSTILE[0]]["text"] == HOSTILE[0]
    assert by_src[HOSTILE[1]]["text"] == HOSTILE[1]
    assert "javascript:" in by_src[HOSTILE[2]]["text"] and not by_src[HOSTILE[2]]["hrefs"]
    assert by_src[HOSTILE[4]]["hrefs"] == ['https://example.com/"onmouseover="window.__xss=1']
    time.sleep(0.2)  # an injected onerror would have fired by now
    assert page.execute_script("return window.__xss") == 0


def test_markdown_reply_with_copy_button(browser, tmp_path_factory):
    """A Markdown reply rendered as it streams, and the desktop screenshot. Mock only: the
    real model's words are its own."""
    srv = start_server("mock", tmp_path_factory)
    try:
        browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
        browser.execute_cdp_cmd("Emulation.setEmulatedMedia",
                                {"features": [{"name": "prefers-color-scheme", "value": "light"}]})
        browser.get(srv.url)
        browser.execute_script("localStorage.clear()")
        ask(browser, "Show me some markdown about sorting in Python")
        reply = last_reply(browser)
        assert reply.find_element(By.TAG_NAME, "h2").text == "Sorting in Python"
        assert len(reply.find_elements(By.CSS_SELECTOR, "ol > li")) == 2
        code = reply.find_element(By.CSS_SELECTOR, ".code pre code").get_attribute("textContent")
        assert code.startswith("def by_length(words):\n    return sorted(")
        assert "Hostile text stays text: <img src=x onerror=alert(1)>" in reply.text
        assert not reply.find_elements(By.TAG_NAME, "img")
        copy = reply.find_element(By.CSS_SELECTOR, ".copy")
        copy.click()
        wait(browser, lambda d: copy.text == "Copied", 3, "the copy button to say Copied")
        shot(browser, "chat-desktop.png")
        browser.execute_cdp_cmd("Emulation.setEmulatedMedia",
                                {"features": [{"name": "prefers-color-scheme", "value": "dark"}]})
        shot(browser, "chat-desktop-dark.png")
    finally:
        srv.close()


# ---- layout ---------------------------------------------------------------------------

def test_phone_layout_has_no_horizontal_scroll(page, server):
    phone(page)
    page.refresh()
    set_setting(page, "max-tokens", 24)
    ask(page, "A very long word: " + "x" * 120)
    if server.mode == "mock":  # code and a table wider than the phone: they scroll inside the reply
        set_setting(page, "max-tokens", "")
        ask(page, "And some markdown please")
    for scheme in ["light", "dark"]:
        page.execute_cdp_cmd("Emulation.setEmulatedMedia",
                             {"features": [{"name": "prefers-color-scheme", "value": scheme}]})
        layout = no_horizontal_scroll(page)
        assert layout["scroll"] <= layout["width"] and layout["body"] <= layout["width"], layout
        assert not layout["wide"], layout
        shot(page, f"chat-phone-{scheme}-{server.mode}.png" if server.mode == "real" else f"chat-phone-{scheme}.png")
    # The settings panel fits too.
    el(page, "#settings-toggle").click()
    rect = page.execute_script("return document.getElementById('settings').getBoundingClientRect().toJSON()")
    assert rect["left"] >= 0 and rect["right"] <= 390, rect
    layout = no_horizontal_scroll(page)
    assert layout["scroll"] <= layout["width"] and not layout["wide"], layout
    shot(page, "chat-phone-settings.png" if server.mode == "mock" else "chat-phone-settings-real.png")
    page.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
