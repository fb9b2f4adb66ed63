"""llmfile --server against real clients (openai SDK, llama-index's llamafile client),
concurrency (8 clients on 4 slots, greedy replies equal to the same request alone),
prompt caching, the llama.cpp endpoints, and abuse (bad JSON, wrong types, huge bodies,
disconnects, floods) -- the abuse part under AddressSanitizer+UBSan (build/san/llmfile)."""
import base64
import concurrent.futures as cf
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import threading
import time

import pytest

from conftest import BUILD, ROOT

MODEL = os.path.expanduser("~/.cache/llmfile/default.gguf")
pytestmark = pytest.mark.skipif(not os.path.exists(MODEL), reason="default model missing (make model)")


class Server:
    def __init__(self, exe, *args, env=None, log_name="server"):
        self.log_path = BUILD / f"test_{log_name}.log"
        self.log = open(self.log_path, "w")
        full_env = dict(os.environ, **(env or {}))
        self.proc = subprocess.Popen([str(exe), "--server", "--port", "0", "-m", MODEL, *args],
                                     stdout=subprocess.PIPE, stderr=self.log, text=True, env=full_env)
        line = self.proc.stdout.readline()
        m = re.search(r"http://([0-9.]+):(\d+)", line)
        if not m:
            self.proc.wait(timeout=30)
            raise RuntimeError(f"server did not start: {line!r} {self.stderr()}")
        self.ready_line = line
        self.host, self.port = m.group(1), int(m.group(2))
        self.url = f"http://{self.host}:{self.port}"

    def stderr(self):
        if not self.log.closed:
            self.log.flush()
        return self.log_path.read_text()

    def request(self, method, path, body=None, raw=None, headers=None, timeout=120):
        conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        conn.request(method, path, body=data, headers={"Content-Type": "application/json", **(headers or {})})
        resp = conn.getresponse()
        text = resp.read()
        conn.close()
        try:
            parsed = json.loads(text)
        except ValueError:
            parsed = None
        return resp.status, parsed, resp

    def post(self, path, body, **kw):
        return self.request("POST", path, body, **kw)

    def stop(self, sig=signal.SIGTERM, timeout=30):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        rc = self.proc.wait(timeout=timeout)
        self.log.close()
        return rc


def sse_events(resp):
    """The data: payloads of a server-sent event stream."""
    out = []
    for line in resp.read().decode().split("\n"):
        if line.startswith("data: "):
            out.append(line[6:])
    return out


def stream_post(srv, path, body, timeout=120):
    conn = http.client.HTTPConnection(srv.host, srv.port, timeout=timeout)
    conn.request("POST", path, body=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    events = sse_events(resp)
    conn.close()
    return resp, events


@pytest.fixture(scope="module")
def server(llmfile):
    srv = Server(llmfile, "-np", "4", "-c", "4096", "--embedding", log_name="server")
    yield srv
    assert srv.stop() == 0, srv.stderr()
    assert "llmfile server: stopped" in srv.stderr()


@pytest.fixture(scope="module")
def san_server():
    exe = BUILD / "san" / "llmfile"
    assert exe.exists(), f"{exe} missing: run `make tests`"
    env = {"ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0", "UBSAN_OPTIONS": "print_stacktrace=1"}
    # Gemma 3's own template (the default model has none): the Jinja path under the sanitizers.
    srv = Server(exe, "-np", "2", "--queue", "2", "-c", "1024", "-t", "2", "--chat-template-file",
                 str(ROOT / "tests" / "data" / "chat" / "templates" / "gemma3-it.jinja"), env=env, log_name="san_server")
    yield srv
    rc = srv.stop()
    log = srv.stderr()
    assert "ERROR: AddressSanitizer" not in log and "runtime error" not in log, log[-4000:]
    assert "LeakSanitizer" not in log, log[-4000:]
    assert rc == 0, log[-2000:]


CHAT = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Name a colour."}]


# ---- real clients ----------------------------------------------------------------

def test_openai_sdk_chat_stream_completions_models(server):
    import openai
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
    models = client.models.list()
    assert [m.id for m in models.data] == ["default.gguf"]

    chat = client.chat.completions.create(model="default.gguf", messages=CHAT, max_tokens=8, temperature=0, seed=1)
    assert chat.object == "chat.completion" and chat.choices[0].message.role == "assistant"
    assert chat.choices[0].finish_reason in ("stop", "length")
    assert chat.usage.completion_tokens <= 8 and chat.usage.prompt_tokens > 5
    assert chat.usage.total_tokens == chat.usage.prompt_tokens + chat.usage.completion_tokens

    stream = client.chat.completions.create(model="x", messages=CHAT, max_tokens=8, temperature=0, stream=True,
                                            stream_options={"include_usage": True})
    pieces, finish, usage = [], None, None
    for chunk in stream:
        if chunk.usage:
            usage = chunk.usage
        for ch in chunk.choices:
            pieces.append(ch.delta.content or "")
            finish = ch.finish_reason or finish
    assert "".join(pieces) == chat.choices[0].message.content
    assert finish == chat.choices[0].finish_reason
    assert usage.completion_tokens == chat.usage.completion_tokens

    comp = client.completions.create(model="x", prompt="The capital of France is", max_tokens=6, temperature=0)
    assert comp.object == "text_completion" and comp.choices[0].finish_reason == "length"
    assert comp.usage.completion_tokens == 6 and "Paris" in comp.choices[0].text or comp.choices[0].text
    echo = client.completions.create(model="x", prompt="The capital of France is", max_tokens=6, temperature=0,
                                     echo=True)
    assert echo.choices[0].text == "The capital of France is" + comp.choices[0].text

    # n > 1 is refused by name.
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="x", messages=CHAT, max_tokens=4, n=2)
    assert e.value.body["param"] == "n"


def test_openai_sdk_embeddings(server):
    """A decoder embeds too (--embedding); MiniLM against llama.cpp: tests/test_server_embedding.py."""
    import openai
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
    r = client.embeddings.create(model="x", input=["hello", "world"])
    assert len(r.data) == 2 and all(abs(sum(x * x for x in d.embedding) - 1) < 1e-3 for d in r.data)
    r64 = client.embeddings.create(model="x", input="hello", encoding_format="base64")
    assert len(base64.b64decode(r64.data[0].embedding)) == 4 * len(r.data[0].embedding)


def test_llama_index_llamafile_client(server):
    from llama_index.core.llms import ChatMessage
    from llama_index.llms.llamafile import Llamafile
    llm = Llamafile(base_url=server.url, temperature=0, seed=0, additional_kwargs={"n_predict": 8},
                    request_timeout=120)
    done = llm.complete("Once upon a time")
    direct = server.post("/completion", {"prompt": "Once upon a time", "n_predict": 8, "temperature": 0})[1]
    assert done.text == direct["content"] and len(done.text) > 5
    streamed = list(llm.stream_complete("Once upon a time"))
    assert streamed[-1].text == done.text
    reply = llm.chat([ChatMessage(role="user", content="Say hi.")], max_tokens=8)
    assert reply.message.role == "assistant" and isinstance(reply.message.content, str)


# ---- parallel slots ----------------------------------------------------------------

def test_eight_clients_on_four_slots_match_running_alone(server):
    reqs = [("/completion", {"prompt": p, "n_predict": 12, "temperature": 0}) for p in
            ["Once upon a time", "The capital of France is", "def fibonacci(n):", "In 1492,"]]
    reqs += [("/v1/chat/completions", {"messages": [{"role": "user", "content": q}], "max_tokens": 12,
                                       "temperature": 0, "cache_prompt": False}) for q in
             ["What is 2+2?", "Write a haiku.", "List three fruits.", "Hello!"]]

    def text(r):
        status, body, _ = server.post(*r)
        assert status == 200, body
        return body["content"] if "content" in body else body["choices"][0]["message"]["content"]

    alone = [text(r) for r in reqs]
    with cf.ThreadPoolExecutor(8) as ex:
        together = list(ex.map(text, reqs))
    assert together == alone
    assert all(len(t) > 0 for t in alone)


def test_prompt_cache_reuses_prefix_and_gives_same_answer(server):
    # (long enough that the reusable prefix, 32 tokens or more, keeps the slot: pick_slot)
    body = {"messages": [{"role": "user", "content": "Tell me about the moon in one sentence, please. Keep it "
                                                     "short and simple, for a curious child who likes the night sky."}],
            "max_tokens": 8, "temperature": 0}
    first = server.post("/v1/chat/completions", body)[1]
    second = server.post("/v1/chat/completions", body)[1]
    assert second["usage"]["prompt_tokens_details"]["cached_tokens"] == second["usage"]["prompt_tokens"] - 1
    assert second["choices"][0]["message"]["content"] == first["choices"][0]["message"]["content"]
    # The next turn shares the whole first exchange as a prefix. Only the tokens read as
    # prompt rows are reused (the first prompt but its last token, which gave logits, as the
    # reply's tokens did): their keys and values are what a fresh prompt computes.
    follow = dict(body, messages=body["messages"] + [
        {"role": "assistant", "content": first["choices"][0]["message"]["content"]},
        {"role": "user", "content": "And the sun?"}])
    cached = server.post("/v1/chat/completions", follow)[1]
    fresh = server.post("/v1/chat/completions", dict(follow, cache_prompt=False))[1]
    assert cached["usage"]["prompt_tokens_details"]["cached_tokens"] == first["usage"]["prompt_tokens"] - 1
    assert fresh["usage"]["prompt_tokens_details"]["cached_tokens"] == 0
    assert cached["choices"][0]["message"]["content"] == fresh["choices"][0]["message"]["content"]


# ---- behaviour of the endpoints ----------------------------------------------------------

def test_stop_strings_stream_and_not(server):
    base = {"prompt": "1, 2, 3, 4, 5,", "n_predict": 24, "temperature": 0}
    full = server.post("/completion", base)[1]["content"]
    assert " 7," in full, full
    cut = server.post("/completion", dict(base, stop=[" 7,", "never"]))[1]
    assert cut["content"] == full[:full.index(" 7,")] and cut["stop_type"] == "word" and cut["stopping_word"] == " 7,"
    resp, events = stream_post(server, "/completion", dict(base, stop=" 7,", stream=True))
    parts = [json.loads(e) for e in events]
    assert "".join(p["content"] for p in parts) == cut["content"]
    assert parts[-1]["stop"] is True and parts[-1]["stop_type"] == "word"
    oa = server.post("/v1/completions", {"prompt": base["prompt"], "max_tokens": 24, "temperature": 0, "stop": " 7,"})[1]
    assert oa["choices"][0]["text"] == cut["content"] and oa["choices"][0]["finish_reason"] == "stop"


def test_chat_stream_ends_with_done(server):
    resp, events = stream_post(server, "/v1/chat/completions", {"messages": CHAT, "max_tokens": 4, "stream": True})
    assert resp.status == 200 and resp.getheader("Content-Type").startswith("text/event-stream")
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert chunks[-1]["choices"][0]["finish_reason"] in ("stop", "length")


def test_json_object_response_format(server):
    """Output is kept a JSON object prefix (the automaton itself: tests/app/test_json_constrain.c)
    and generation ends when the object closes."""
    prompt = 'Cat as JSON: {"name": "Tom", "age": 3}\nDog as JSON:'
    r = server.post("/completion", {"prompt": prompt, "n_predict": 40, "temperature": 0, "json_schema": {}})[1]
    assert r["stop_type"] == "eos" and isinstance(json.loads(r["content"]), dict), r["content"]
    for seed in (1, 2, 3):  # sampled: still one object when it ends
        r = server.post("/v1/completions", {"prompt": prompt, "max_tokens": 40, "temperature": 1.0, "seed": seed,
                                            "response_format": {"type": "json_object"}})[1]
        text = r["choices"][0]["text"]
        assert text.lstrip().startswith("{"), text
        if r["choices"][0]["finish_reason"] == "stop":
            assert isinstance(json.loads(text), dict), text
    chat = server.post("/v1/chat/completions", {"messages": [{"role": "user", "content": "A cat as JSON."}],
                                                "response_format": {"type": "json_object"}, "max_tokens": 8,
                                                "temperature": 0})[1]
    assert chat["choices"][0]["message"]["content"].lstrip().startswith("{")
    schema = server.post("/completion", {"prompt": "{", "json_schema": {"type": "array"}})
    assert schema[0] == 400 and schema[1]["error"]["param"] == "json_schema"


def test_gemma_chat_prompt(server):
    """The default model has no chat template: the built-in Gemma one (system text opens the
    first user turn, assistant is "model"); the tokens are what llama.cpp gives for the
    rendered text (BOS added by the tokenizer, so not in the text; special tokens parsed).
    Against jinja2 and llama.cpp goldens: tests/test_server_chat.py."""
    msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": " Hi there \n"},
            {"role": "assistant", "content": "Hello."}, {"role": "user", "content": [
                {"type": "text", "text": "Two"}, {"type": "text", "text": "parts"}]}]
    r = server.post("/apply-template", {"messages": msgs})[1]
    assert r["chat_format"] == "gemma (fallback)"
    assert r["prompt"] == ("<start_of_turn>user\nBe brief.\n\nHi there<end_of_turn>\n"
                           "<start_of_turn>model\nHello.<end_of_turn>\n"
                           "<start_of_turn>user\nTwo\nparts<end_of_turn>\n<start_of_turn>model\n")
    whole = server.post("/tokenize", {"content": r["prompt"], "add_special": True})[1]["tokens"]
    assert r["tokens"] == whole and whole[0] == 2 and whole.count(2) == 1
    chat = server.post("/v1/chat/completions", {"messages": msgs, "max_tokens": 1})[1]
    assert chat["usage"]["prompt_tokens"] == len(whole)


def test_user_text_never_becomes_control_tokens(server):
    def prompt_tokens(content):
        r = server.post("/v1/chat/completions", {"messages": [{"role": "user", "content": content}], "max_tokens": 1})
        return r[1]["usage"]["prompt_tokens"]
    # As text, "<end_of_turn>" is several tokens; as the control token it would be one.
    plain = prompt_tokens("x")
    assert prompt_tokens("x<end_of_turn>") > plain + 1
    # The raw completion endpoints do parse special tokens, as llama.cpp's do.
    tok = server.post("/tokenize", {"content": "<end_of_turn>"})[1]["tokens"]
    assert len(tok) == 1
    assert len(server.post("/tokenize", {"content": "<end_of_turn>", "parse_special": False})[1]["tokens"]) > 1


def test_tokenize_detokenize_props_metrics_health(server):
    toks = server.post("/tokenize", {"content": "Hello world", "add_special": True})[1]["tokens"]
    assert toks[0] == 2 and len(toks) == 3
    pieces = server.post("/tokenize", {"content": "Hello world", "with_pieces": True})[1]["tokens"]
    assert [p["piece"] for p in pieces] == ["Hello", " world"]
    assert server.post("/detokenize", {"tokens": toks[1:]})[1]["content"] == "Hello world"
    assert server.post("/detokenize", {"tokens": [10 ** 9]})[0] == 400
    status, props, _ = server.request("GET", "/props")
    assert status == 200 and props["total_slots"] == 4 and props["default_generation_settings"]["n_ctx"] == 1024
    status, _, resp = server.request("GET", "/metrics")
    assert status == 200
    assert server.request("GET", "/health")[1] == {"status": "ok"}
    conn = http.client.HTTPConnection(server.host, server.port, timeout=30)
    conn.request("GET", "/metrics")
    text = conn.getresponse().read().decode()
    assert re.search(r"^llamacpp:tokens_predicted_total \d+$", text, re.M)
    conn.request("GET", "/")
    page = conn.getresponse()
    assert page.status == 200 and b"<html" in page.read()
    conn.close()


def test_native_time_limit(server):
    r = server.post("/completion", {"prompt": "Once", "n_predict": 1000, "t_max_predict_ms": 300, "temperature": 0})[1]
    assert r["timed_out"] is True and r["tokens_predicted"] < 1000


def test_cors_and_origins(server):
    ok = server.request("GET", "/v1/models", headers={"Origin": "http://localhost:5173"})
    assert ok[0] == 200 and ok[2].getheader("Access-Control-Allow-Origin") == "http://localhost:5173"
    evil = server.post("/completion", {"prompt": "hi", "n_predict": 1}, headers={"Origin": "https://evil.example"})
    assert evil[0] == 403 and "--cors" in evil[1]["error"]["message"]
    rebound = server.request("GET", "/v1/models", headers={"Host": "evil.example:8080"})
    assert rebound[0] == 403 and "Host" in rebound[1]["error"]["message"]
    assert server.request("GET", "/health", headers={"Host": "localhost:1234"})[0] == 200
    pre = server.request("OPTIONS", "/v1/chat/completions", headers={"Origin": "http://127.0.0.1:3000"})
    assert pre[0] == 204 and "Authorization" in pre[2].getheader("Access-Control-Allow-Headers")


def test_api_key_and_help(llmfile):
    out = subprocess.run([str(llmfile), "--server", "--help"], capture_output=True, text=True, timeout=30).stdout
    for flag in ["--host", "--port", "-np", "-c", "--api-key", "--embedding", "--cors", "--queue", "--timeout",
                 "--mmap"]:
        assert f" {flag}" in out, flag
    bad = subprocess.run([str(llmfile), "--server", "--port", "99999"], capture_output=True, text=True, timeout=30)
    assert bad.returncode != 0 and "--port expects an integer" in bad.stderr
    srv = Server(llmfile, "-np", "1", "-c", "512", "--api-key", "s3cret", log_name="key_server")
    try:
        assert srv.request("GET", "/health")[0] == 200
        status, body, _ = srv.request("GET", "/v1/models")
        assert status == 401 and body["error"]["code"] == "invalid_api_key"
        assert srv.request("GET", "/v1/models", headers={"Authorization": "Bearer wrong"})[0] == 401
        status, body, _ = srv.post("/completion", {"prompt": "Hi", "n_predict": 2},
                                   headers={"Authorization": "Bearer s3cret"})
        assert status == 200 and body["tokens_predicted"] == 2
    finally:
        assert srv.stop() == 0


def test_sigterm_during_stream_stops_cleanly():
    """Under ASan: shutting down with a stream, a waiting request and a queued one in flight."""
    exe = BUILD / "san" / "llmfile"
    srv = Server(exe, "-np", "1", "-c", "1024", log_name="sigterm_server",
                 env={"ASAN_OPTIONS": "detect_leaks=1"})
    waiting = []
    for _ in range(2):  # one waits for a whole reply, one waits in the queue
        s = socket.create_connection((srv.host, srv.port), timeout=60)
        data = json.dumps({"prompt": "Hi", "n_predict": 300, "ignore_eos": True}).encode()
        s.sendall(b"POST /completion HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: %d\r\n\r\n" % len(data) + data)
        waiting.append(s)
    conn = http.client.HTTPConnection(srv.host, srv.port, timeout=60)
    conn.request("POST", "/v1/chat/completions", body=json.dumps(
        {"messages": CHAT, "max_tokens": 500, "stream": True, "ignore_eos": True}), headers={})
    resp = conn.getresponse()
    assert resp.status == 200
    assert resp.readline().startswith(b"data: ")
    t0 = time.time()
    srv.proc.send_signal(signal.SIGTERM)
    events = sse_events(resp)  # the stream ends: an error event, then [DONE]
    assert events[-1] == "[DONE]" and "shutting down" in events[-2]
    for s in waiting:
        assert s.recv(4096).startswith(b"HTTP/1.1 503")
        s.close()
    assert srv.stop() == 0 and time.time() - t0 < 15
    log = srv.stderr()
    assert "AddressSanitizer" not in log and "runtime error" not in log and "LeakSanitizer" not in log, log[-3000:]


# ---- abuse, under AddressSanitizer -------------------------------------------------------

@pytest.mark.parametrize("path,body,status,param,text", [
    ("/v1/chat/completions", b"{not json", 400, None, "invalid JSON"),
    ("/v1/chat/completions", b"[1, 2]", 400, None, "JSON object"),
    ("/v1/chat/completions", b"", 400, None, "invalid JSON"),
    ("/v1/chat/completions", {"messages": "hi"}, 400, "messages", "array"),
    ("/v1/chat/completions", {"messages": []}, 400, "messages", "empty"),
    ("/v1/chat/completions", {"messages": [{"role": "wizard", "content": "x"}]}, 400, "messages[0]", "wizard"),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": 5}]}, 400, "messages[0]", "content"),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}, 400,
     "messages[0]", "image_url"),
    ("/v1/chat/completions", {"messages": CHAT, "temperature": "hot"}, 400, "temperature", "number"),
    ("/v1/chat/completions", {"messages": CHAT, "max_tokens": 10 ** 9}, 400, "max_tokens", "slot's context"),
    ("/v1/chat/completions", {"messages": CHAT, "max_tokens": 0}, 400, "max_tokens", "between"),
    ("/v1/chat/completions", {"messages": CHAT, "bogus_field": 1}, 400, "bogus_field", "unknown field 'bogus_field'"),
    ("/v1/chat/completions", {"messages": CHAT, "logprobs": True}, 400, "logprobs", "not supported"),
    ("/v1/chat/completions", {"messages": CHAT, "tools": [{"type": "function"}]}, 400, "tools", "not supported"),
    ("/v1/chat/completions", {"messages": CHAT, "stop": [1]}, 400, "stop", "string"),
    ("/v1/chat/completions", {"messages": CHAT, "stop": ["x"] * 17}, 400, "stop", "at most"),
    ("/v1/chat/completions", {"messages": CHAT, "response_format": {"type": "yaml"}}, 400, "response_format", "yaml"),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]},
     400, "messages", "raise_exception: Conversation roles must alternate user/assistant/user/assistant/..."),
    ("/v1/completions", {"prompt": ["a", "b"]}, 400, "prompt", "one per request"),
    ("/v1/completions", {"prompt": [1, -5]}, 400, "prompt", "not a token id"),
    ("/v1/completions", {"prompt": "word " * 3000}, 400, "prompt", "shorten it"),
    ("/v1/completions", {"prompt": "word " * 400000}, 400, "prompt", "bytes, more than a slot's context"),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "w " * 1000000}]}, 400, "messages", "bytes"),
    ("/tokenize", {"content": "w" * 1100000}, 400, "content", "at most"),
    ("/completion", {"prompt": "x", "seed": -7}, 400, "seed", "non-negative"),
    ("/completion", {}, 400, "prompt", "required"),
    ("/tokenize", {"content": 3}, 400, "content", "string"),
    ("/nowhere", {}, 404, None, "no endpoint"),
    ("/v1/models", {}, 405, None, "takes GET"),
])
def test_bad_requests_get_clear_4xx(san_server, path, body, status, param, text):
    raw = body if isinstance(body, bytes) else None
    got, parsed, _ = san_server.post(path, None if raw is not None else body, raw=raw)
    assert got == status, parsed
    err = parsed["error"]
    assert text in err["message"], err
    assert err["type"] and "code" in err and err["param"] == param


def test_accepted_habits_of_real_clients(san_server):
    # Fields OpenAI clients send by habit are accepted when they ask for nothing we cannot do.
    status, body, _ = san_server.post("/v1/chat/completions", {
        "messages": CHAT, "max_tokens": 2, "user": "u1", "frequency_penalty": 0, "presence_penalty": 0,
        "logprobs": False, "tools": [], "tool_choice": "none", "stream_options": None, "n": 1, "model": "any",
        "metadata": {"a": "b"}, "options": {"temperature": 0, "num_predict": 2}})
    assert status == 200 and body["usage"]["completion_tokens"] <= 2


def test_huge_body_is_413_and_server_survives(san_server):
    with socket.create_connection((san_server.host, san_server.port), timeout=30) as s:
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                  b"Content-Length: 100000000\r\n\r\n" + b"{" * 1000)
        reply = s.recv(4096)
    assert reply.startswith(b"HTTP/1.1 413"), reply[:200]
    assert san_server.request("GET", "/health")[0] == 200


def _metric(srv, name):
    conn = http.client.HTTPConnection(srv.host, srv.port, timeout=30)
    conn.request("GET", "/metrics")
    text = conn.getresponse().read().decode()
    conn.close()
    return float(re.search(rf"^{re.escape(name)} (\S+)$", text, re.M).group(1))


def _wait_idle(srv, limit=20):
    t0 = time.time()
    while _metric(srv, "llamacpp:requests_processing") > 0:
        assert time.time() - t0 < limit, "a slot stayed busy after its client left"
        time.sleep(0.1)
    return time.time() - t0


def test_disconnects_cancel_their_slots(san_server):
    body = {"prompt": "Once upon a time", "n_predict": 500, "ignore_eos": True, "temperature": 0}
    # Streaming: read one event, hang up.
    s = socket.create_connection((san_server.host, san_server.port), timeout=30)
    data = json.dumps(dict(body, stream=True)).encode()
    s.sendall(b"POST /completion HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: %d\r\n\r\n" % len(data) + data)
    assert b"data: " in s.recv(4096) or b"data: " in s.recv(4096)
    s.close()
    _wait_idle(san_server)
    # Waiting for a whole reply: hang up before it comes.
    s = socket.create_connection((san_server.host, san_server.port), timeout=30)
    data = json.dumps(body).encode()
    s.sendall(b"POST /completion HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: %d\r\n\r\n" % len(data) + data)
    time.sleep(0.5)
    s.close()
    _wait_idle(san_server)
    assert " 499 " in san_server.stderr()
    assert san_server.post("/completion", {"prompt": "Hi", "n_predict": 2})[0] == 200


def test_flood_beyond_the_queue_gets_503_while_others_are_served(san_server):
    """-np 2 --queue 2: at most four requests are admitted at once; the rest get 503."""
    body = {"prompt": "The capital of France is", "n_predict": 6, "temperature": 0}
    expected = san_server.post("/completion", body)[1]["content"]
    results = []
    lock = threading.Lock()

    def client():
        r = san_server.post("/completion", body)
        with lock:
            results.append(r)

    threads = [threading.Thread(target=client) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ok = [r for r in results if r[0] == 200]
    busy = [r for r in results if r[0] == 503]
    assert len(ok) + len(busy) == 12 and len(busy) >= 1 and len(ok) >= 2
    assert all(r[1]["content"] == expected for r in ok)
    assert all("queue is full" in r[1]["error"]["message"] and r[2].getheader("Retry-After") for r in busy)
    assert san_server.post("/completion", body)[1]["content"] == expected
    assert _metric(san_server, "llmfile:requests_rejected_busy_total") >= len(busy)


def test_executable_needs_only_the_c_library(llmfile):
    """libevent and jansson are linked statically (SERVER_LIBS in the Makefile)."""
    out = subprocess.run(["ldd", str(llmfile)], capture_output=True, text=True, timeout=30).stdout
    libs = {line.split()[0] for line in out.strip().splitlines()}
    allowed = re.compile(r"^(linux-vdso\.so\.1|linux-gate\.so\.1|lib(c|m|pthread|dl|rt)\.so\.\d+|/.*/ld-linux.*|ld-linux.*)$")
    assert libs and all(allowed.match(lib) for lib in libs), out
