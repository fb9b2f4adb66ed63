"""A stand-in for `llmfile --server` that serves the chat page without a model.

It serves src/app/server/page/index.html at / (read on every request, so edits show
on reload) and fakes the endpoints the page uses, with the same shapes as the real
server: /health, /v1/models, /props, /metrics (two of its counters) and
POST /v1/chat/completions, streamed word by word as server-sent events with a delay
between words. With an API key, every endpoint but / and /health answers 401
without `Authorization: Bearer KEY`.

The reply depends on the last user message, so tests can ask for what they check:
  contains "markdown"    a reply with a heading, a list, a link, a table and code
  contains "long"        600 words (for the Stop button)
  contains "fail midway" a few words, then an error event in the stream
  anything else          "You said: <message>" and a short sentence
max_tokens counts words; more than SLOT_CTX is a 400 error, as on the real server.

Used in-process by tests/test_chat_page.py (start()), or by hand:
  python3 tests/page_mock_server.py [--port 8099] [--api-key KEY] [--delay 0.03]
"""
import argparse
import json
import pathlib
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PAGE = pathlib.Path(__file__).resolve().parent.parent / "src" / "app" / "server" / "page" / "index.html"
MODEL_ID = "mock-model.gguf"
SLOT_CTX = 4096

MARKDOWN_REPLY = """## Sorting in Python

Use **`sorted()`** for a *new* list, or `list.sort()` to sort in place:

1. `sorted(xs)` returns a copy
2. `xs.sort()` changes `xs`
   - both take `key=` and `reverse=True`

```python
def by_length(words):
    return sorted(words, key=len)  # shortest first; a long comment line that must scroll inside the code block, not the page
```

| call | returns |
| --- | --- |
| `sorted(xs)` | a new list |
| `xs.sort()` | `None` |

See the [Python docs](https://docs.python.org/3/howto/sorting.html) for more.
Hostile text stays text: <img src=x onerror=alert(1)>
"""

LONG_REPLY = " ".join(f"word{i}" for i in range(600))


class MockState:
    """What the tests look at: the request bodies, and streams the client ended."""

    def __init__(self, api_key=None, delay=0.02):
        self.api_key = api_key
        self.delay = delay  # seconds between streamed words
        self.lock = threading.Lock()
        self.bodies = []  # JSON bodies of POST /v1/chat/completions, in order
        self.aborted = 0  # streams whose client went away before the end
        self.processing = 0  # streams being written now
        self.tokens_predicted = 0  # words sent, over all replies


def reply_for(messages):
    last = next((m.get("content", "") for m in reversed(messages) if m.get("role") == "user"), "")
    text = str(last).lower()
    if "markdown" in text:
        return MARKDOWN_REPLY, False
    if "long" in text:
        return LONG_REPLY, False
    if "fail midway" in text:
        return "This reply will break in the middle", True
    return f"You said: {last}\n\nThis is the **mock** server, replying word by word.", False


def chunk(delta, finish=None):
    return {"id": "chatcmpl-mock", "object": "chat.completion.chunk", "created": int(time.time()),
            "model": MODEL_ID, "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}


class Handler(BaseHTTPRequestHandler):
    server_version = "llmfile-mock"
    state: MockState = None  # set per server by start()

    def log_message(self, fmt, *args):  # quiet
        pass

    def send_json(self, status, obj, extra=()):
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        for k, v in extra:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def send_error_json(self, status, message, kind="invalid_request_error"):
        self.send_json(status, {"error": {"message": message, "type": kind, "code": status}})

    def authorized(self):
        key = self.state.api_key
        if not key or self.headers.get("Authorization") == f"Bearer {key}":
            return True
        self.send_json(401, {"error": {"message": "invalid or missing API key (Authorization: Bearer KEY)",
                                       "type": "authentication_error", "code": "invalid_api_key"}},
                       [("WWW-Authenticate", "Bearer")])
        return False

    def do_GET(self):
        path = self.path.split("?")[0]
        if path in ("/", "/index.html"):
            body = PAGE.read_bytes()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        elif path in ("/health", "/v1/health"):
            self.send_json(200, {"status": "ok"})
        elif not self.authorized():
            return
        elif path in ("/v1/models", "/models"):
            self.send_json(200, {"object": "list", "data": [{"id": MODEL_ID, "object": "model", "owned_by": "llmfile"}]})
        elif path == "/props":
            self.send_json(200, {"default_generation_settings": {"n_ctx": SLOT_CTX}, "total_slots": 2,
                                 "model_path": MODEL_ID, "build_info": "llmfile mock"})
        elif path == "/metrics":
            s = self.state
            text = (f"llamacpp:tokens_predicted_total {s.tokens_predicted}\n"
                    f"llamacpp:requests_processing {s.processing}\n").encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(text)))
            self.end_headers()
            self.wfile.write(text)
        else:
            self.send_error_json(404, f"no route {path}")

    def do_POST(self):
        path = self.path.split("?")[0]
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        if not self.authorized():
            return
        if path not in ("/v1/chat/completions", "/chat/completions"):
            self.send_error_json(404, f"no route {path}")
            return
        try:
            body = json.loads(raw)
        except ValueError as e:
            self.send_error_json(400, f"the body is not JSON: {e}")
            return
        with self.state.lock:
            self.state.bodies.append(body)
        messages = body.get("messages") if isinstance(body, dict) else None
        if not isinstance(messages, list) or not messages:
            self.send_error_json(400, "'messages' must be a non-empty array")
            return
        max_tokens = body.get("max_tokens", SLOT_CTX)
        if not isinstance(max_tokens, int) or max_tokens < 1:
            self.send_error_json(400, "'max_tokens' must be a positive integer")
            return
        if max_tokens > SLOT_CTX:
            self.send_error_json(400, f"'max_tokens' is {max_tokens} but a slot's context holds {SLOT_CTX} tokens; "
                                      f"ask for at most {SLOT_CTX}")
            return
        text, fail = reply_for(messages)
        words = re.findall(r"\S+\s*|\s+", text)[:max_tokens]
        finish = "length" if len(words) < len(re.findall(r"\S+\s*|\s+", text)) else "stop"
        if not body.get("stream"):
            with self.state.lock:
                self.state.tokens_predicted += len(words)
            self.send_json(200, {"id": "chatcmpl-mock", "object": "chat.completion", "model": MODEL_ID,
                                 "choices": [{"index": 0, "message": {"role": "assistant", "content": "".join(words)},
                                              "finish_reason": finish}]})
            return
        self.stream(words, finish, fail)

    def stream(self, words, finish, fail):
        s = self.state
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.end_headers()  # HTTP/1.0: the body ends when the connection closes
        with s.lock:
            s.processing += 1
        try:
            self.event(chunk({"role": "assistant", "content": ""}))
            for i, word in enumerate(words):
                time.sleep(s.delay)
                self.event(chunk({"content": word}))
                with s.lock:
                    s.tokens_predicted += 1
                if fail and i == 3:
                    self.event({"error": {"message": "the engine failed (mock)", "type": "server_error", "code": 500}})
                    break
            else:
                self.event(chunk({}, finish))
            self.wfile.write(b"data: [DONE]\n\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            with s.lock:
                s.aborted += 1
        finally:
            with s.lock:
                s.processing -= 1

    def event(self, obj):
        self.wfile.write(b"data: " + json.dumps(obj).encode() + b"\n\n")
        self.wfile.flush()


class MockServer:
    def __init__(self, port=0, api_key=None, delay=0.02, host="127.0.0.1"):
        self.state = MockState(api_key, delay)
        handler = type("BoundHandler", (Handler,), {"state": self.state})
        self.httpd = ThreadingHTTPServer((host, port), handler)
        self.httpd.daemon_threads = True
        self.url = f"http://{host}:{self.httpd.server_address[1]}/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def start(port=0, api_key=None, delay=0.02):
    """Starts a mock server on a thread; returns it (.url, .state, .close())."""
    server = MockServer(port, api_key, delay)
    server.thread.start()
    return server


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=8099)
    ap.add_argument("--api-key")
    ap.add_argument("--delay", type=float, default=0.03, help="seconds between streamed words")
    args = ap.parse_args()
    server = MockServer(args.port, args.api_key, args.delay)
    print(f"page mock server: listening on {server.url}", flush=True)
    try:
        server.httpd.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
