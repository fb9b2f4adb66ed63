"""Embeddings from llmfile --server --embedding through the clients people use: llama-index's
LlamafileEmbedding (written for llamafile's /embedding) and the openai SDK (list input,
encoding_format float and base64), on all-MiniLM-L6-v2 (tools/setup_embedding_model.sh),
checked against llama.cpp's vectors for the same texts (tests/data/goldens/embed-minilm.json,
tools/gen_embedding_goldens.py; tolerances as in tests/test_embedding.py)."""
import asyncio
import base64
import os

import numpy as np
import pytest

from test_embedding import MINILM, compare, load
from test_server import Server

CASES = [c for c in load("minilm")["cases"] if c["pooling"] == "model"]  # the model's own pooling (mean)
TEXTS = [c["text"] for c in CASES]


@pytest.fixture(scope="module")
def server(llmfile):
    assert os.path.isfile(MINILM), f"{MINILM} missing: run tools/setup_embedding_model.sh (make test does)"
    # No -c: an encoder's context is its positions (512).
    srv = Server(llmfile, "--embedding", "-m", MINILM, "-t", "2", log_name="embed_server")
    yield srv
    assert srv.stop() == 0, srv.stderr()


def check_all(vectors, what):
    assert len(vectors) == len(CASES), what
    for v, case in zip(vectors, CASES):
        compare(v, case["embedding"], "minilm", f"{what}: {case['name']}")


def test_start_up_line_and_no_chat(server):
    assert "(encoder: embeddings of up to 512 tokens)" in server.ready_line
    assert "warning" not in server.stderr()
    status, r, _ = server.post("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}]})
    assert status == 501 and "only embeds" in r["error"]["message"]


def test_llama_index_llamafile_embedding(server):
    from llama_index.embeddings.llamafile import LlamafileEmbedding
    emb = LlamafileEmbedding(base_url=server.url, request_timeout=120)
    compare(emb.get_text_embedding(TEXTS[0]), CASES[0]["embedding"], "minilm", "llama-index one text")
    compare(emb.get_query_embedding(TEXTS[1]), CASES[1]["embedding"], "minilm", "llama-index query")
    check_all(emb.get_text_embedding_batch(TEXTS), "llama-index batch")
    check_all(asyncio.run(emb.aget_text_embedding_batch(TEXTS)), "llama-index async batch")


def test_native_embedding_shapes(server):
    # llamafile's: one text -> {"embedding": [...]}, a list -> {"results": [{"index", "embedding"}]}
    one = server.post("/embedding", {"content": TEXTS[0]})[1]
    assert set(one) == {"embedding"} and len(one["embedding"]) == 384
    many = server.post("/embedding", {"content": TEXTS[:2]})[1]
    assert [r["index"] for r in many["results"]] == [0, 1]
    assert many["results"][0]["embedding"] == one["embedding"]


def test_openai_sdk_embeddings_match_llamacpp(server):
    import openai
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
    r = client.embeddings.create(model="minilm", input=TEXTS, encoding_format="float")
    assert [d.index for d in r.data] == list(range(len(TEXTS)))
    check_all([d.embedding for d in r.data], "openai float")
    assert r.usage.prompt_tokens == sum(len(c["tokens"]) for c in CASES)

    r64 = client.embeddings.create(model="minilm", input=TEXTS, encoding_format="base64")
    check_all([np.frombuffer(base64.b64decode(d.embedding), dtype="<f4") for d in r64.data], "openai base64")
    # Without encoding_format the SDK asks for base64 and decodes it itself.
    check_all([d.embedding for d in client.embeddings.create(model="minilm", input=TEXTS).data], "openai default")
    one = client.embeddings.create(model="minilm", input=TEXTS[0])
    compare(one.data[0].embedding, CASES[0]["embedding"], "minilm", "openai one string")
