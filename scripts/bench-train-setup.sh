#!/usr/bin/env bash
# Creates the Python baseline for `her bench train`: a virtual environment with
# CPU PyTorch, transformers (loads the GGUF), PEFT (LoRA), gguf and
# safetensors. Idempotent: with the pinned versions in place it only checks
# them and prints what is installed.
#
#   scripts/bench-train-setup.sh          venv at $CARGO_TARGET_DIR/py-bench-train
#                                         (or ./target/py-bench-train)
#   BENCH_TRAIN_VENV=DIR scripts/bench-train-setup.sh   elsewhere (then pass the
#                                         same variable to `her bench train`)
#
# PyTorch's own CPU-only wheel index is tried first (small, no CUDA runtime);
# where only PyPI is reachable the PyPI wheel is used, which also pulls the
# CUDA runtime packages (~3 GB on disk, unused here: the benchmark runs on CPU).
set -euo pipefail
cd "$(dirname "$0")/.."

# Versions verified with the benchmark (see README, "her bench train").
TORCH="torch==2.15.0"
PY_PACKAGES=(
    "transformers==5.24.0"
    "peft==0.21.2"
    "gguf==0.19.0"
    "safetensors==0.8.0"
    "numpy==2.4.6"
)
CPU_INDEX="https://download.pytorch.org/whl/cpu"

say() { printf '[bench-train-setup] %s\n' "$*" >&2; }

VENV="${BENCH_TRAIN_VENV:-${CARGO_TARGET_DIR:-$PWD/target}/py-bench-train}"
PY="$VENV/bin/python"

if [ ! -x "$PY" ]; then
    say "creating the virtual environment $VENV"
    mkdir -p "$(dirname "$VENV")"
    python3 -m venv "$VENV"
fi

installed() { # name==version → exit 0 when exactly that version is installed
    local name="${1%%==*}" want="${1##*==}" have
    have="$("$PY" -c "import importlib.metadata as m; print(m.version('$name'))" 2>/dev/null || true)"
    # The CPU index names its builds 2.x.y+cpu.
    [ "${have%%+*}" = "$want" ]
}

if installed "$TORCH"; then
    say "$TORCH already installed"
else
    say "installing $TORCH from the CPU-only index ($CPU_INDEX)"
    if ! "$PY" -m pip install --timeout 20 --retries 0 "$TORCH" --index-url "$CPU_INDEX"; then
        say "the CPU-only index is unreachable: installing $TORCH from PyPI (with its CUDA runtime packages)"
        "$PY" -m pip install "$TORCH"
    fi
fi

missing=()
for p in "${PY_PACKAGES[@]}"; do
    installed "$p" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    say "installing ${missing[*]}"
    # Keep the torch installed above: only the listed packages and what they need.
    "$PY" -m pip install "${missing[@]}" "$TORCH"
else
    say "transformers, peft, gguf, safetensors, numpy already installed"
fi

"$PY" - <<'EOF'
import importlib.metadata as m
import torch
names = ["torch", "transformers", "peft", "gguf", "safetensors", "numpy", "tokenizers", "accelerate"]
print("installed in", __import__("sys").prefix)
for n in names:
    print(f"  {n}=={m.version(n)}")
print(f"  torch CPU threads: {torch.get_num_threads()}, CUDA available: {torch.cuda.is_available()}")
EOF
