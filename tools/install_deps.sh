#!/usr/bin/env bash
# Installs what building and testing llmfile needs on a fresh Debian machine:
# a C compiler and make from apt, and the Python packages the tests use from PyPI.
# Idempotent and quiet when everything is present.
set -euo pipefail

PYTHON="${PYTHON:-python3}"
APT_PACKAGES=(gcc clang make python3 python3-pip libevent-dev libjansson-dev)
PIP_PACKAGES=(numpy gguf pytest openai llama-index-llms-llamafile)

missing=()
for cmd in gcc clang make; do command -v "$cmd" >/dev/null 2>&1 || missing+=("$cmd"); done
command -v "$PYTHON" >/dev/null 2>&1 || missing+=(python3)
# The server links these statically (see SERVER_LIBS in the Makefile).
for lib in libevent_core.a libevent_extra.a libjansson.a; do
    [ -n "$(ls /usr/lib/*/"$lib" /usr/lib/"$lib" 2>/dev/null)" ] || missing+=("$lib")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "install_deps: installing ${APT_PACKAGES[*]} (missing: ${missing[*]})"
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${APT_PACKAGES[@]}"
fi

need_pip=()
for pkg in "${PIP_PACKAGES[@]}"; do
    case "$pkg" in
        llama-index-llms-llamafile) mod=llama_index.llms.llamafile ;;
        *) mod="$pkg" ;;
    esac
    "$PYTHON" -c "import $mod" >/dev/null 2>&1 || need_pip+=("$pkg")
done
if [ ${#need_pip[@]} -gt 0 ]; then
    echo "install_deps: pip install ${need_pip[*]}"
    "$PYTHON" -m pip install -q "${need_pip[@]}" ||
        "$PYTHON" -m pip install -q --break-system-packages "${need_pip[@]}"
fi
