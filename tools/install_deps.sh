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
# PyPI package names; each is checked by importing the module of the same name.
PIP_PACKAGES=(numpy gguf pytest selenium)

missing=()
for pair in "${APT_COMMANDS[@]}"; do
    cmd="${pair%%:*}"; pkg="${pair##*:}"
    [ "$cmd" = python3 ] && cmd="$PYTHON"
    command -v "$cmd" >/dev/null 2>&1 && continue
    case " ${missing[*]} " in *" $pkg "*) ;; *) missing+=("$pkg") ;; esac
done
command -v pip3 >/dev/null 2>&1 || "$PYTHON" -m pip --version >/dev/null 2>&1 || missing+=(python3-pip)
if [ ${#missing[@]} -gt 0 ]; then
    echo "install_deps: apt-get install ${missing[*]}"
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

need_pip=()
for pkg in "${PIP_PACKAGES[@]}"; do
    mod="$pkg"
    "$PYTHON" -c "import $mod" >/dev/null 2>&1 || need_pip+=("$pkg")
done
if [ ${#need_pip[@]} -gt 0 ]; then
    echo "install_deps: pip install ${need_pip[*]}"
    "$PYTHON" -m pip install -q "${need_pip[@]}" ||
        "$PYTHON" -m pip install -q --break-system-packages "${need_pip[@]}"
fi
