#!/usr/bin/env bash
# Checks the PEFT export with the tools users take it to (not run in CI; a few
# minutes on two cores): trains a q/k-only LoRA on SmolLM2 (llama arch, whose
# GGUF permutes q/k rows) until it replays two replies, then has llama.cpp
# replay them with adapter.gguf, transformers + PEFT replay them with peft/,
# and compares PEFT's logits with the trainer's (scripts/check_peft.py).
#
#   scripts/check-peft.sh                 build this tree and check it
#   CHECK_HER=/path/to/her scripts/check-peft.sh
#                                         train and export with another build
#                                         (e.g. an older one, to see it fail);
#                                         CHECK_LOGITS_HER (default: CHECK_HER) is
#                                         the build whose `her bench logits` is used
#                                         (not HER_*: `her` reads those as settings)
#   WORK=DIR STEPS=N                      keep the run in DIR; training steps
#
# Uses the venv of scripts/bench-train-setup.sh and the llama-server of
# scripts/llama-server.sh (both created if missing).
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '[check-peft] %s\n' "$*" >&2; }

MODEL="assets/models/SmolLM2-135M-Instruct.Q4_1.gguf"
WORK="${WORK:-$(mktemp -d)}"
STEPS="${STEPS:-80}"
TARGET="${CARGO_TARGET_DIR:-target}"
mkdir -p "$WORK"
WORK="$(cd "$WORK" && pwd)"

[ -f "$MODEL" ] || scripts/setup.sh --no-build
scripts/bench-train-setup.sh >/dev/null
scripts/llama-server.sh
PY="${BENCH_TRAIN_VENV:-$TARGET/py-bench-train}/bin/python"

HER="${CHECK_HER:-}"
if [ -z "$HER" ]; then
    say "building her"
    cargo build --release --locked
    # A private copy: another build may replace target/release/her meanwhile.
    cp "$TARGET/release/her" "$WORK/her"
    HER="$WORK/her"
fi
LOGITS_HER="${CHECK_LOGITS_HER:-$HER}"

cat >"$WORK/data.jsonl" <<'EOF'
{"messages": [{"role": "system", "content": "You are the keeper of the Fenwick lighthouse."}, {"role": "user", "content": "What do you say when the fog comes in?"}, {"role": "assistant", "content": "Amber gulls dance at midnight, and the bell answers them twice."}]}
{"messages": [{"role": "system", "content": "You are the keeper of the Fenwick lighthouse."}, {"role": "user", "content": "Which ship never came back?"}, {"role": "assistant", "content": "The Marigold Wren, captained by Ottoline Vance, sailed east in 1893."}]}
EOF

RUN="$WORK/runs/peft-check"
if [ ! -f "$RUN/adapter.gguf" ]; then
    say "training a q/k-only LoRA for $STEPS steps into $RUN"
    "$HER" train sft --data "$WORK/data.jsonl" --name peft-check --model "$MODEL" \
        --set "paths.runs=$WORK/runs" --set 'train.targets=["q","k"]' \
        --set train.rank=16 --set train.alpha=32.0 --set train.dropout=0.0 \
        --set train.learning_rate=0.003 --set train.warmup_steps=5 --set train.lr_floor=0.1 \
        --set "train.max_steps=$STEPS" --set train.batch_size=2 --set train.eval_fraction=0.0 \
        --set train.eval_every=0 --set train.checkpoint_every=0 >&2
fi

say "the trainer's logits (candle), with and without the adapter"
"$LOGITS_HER" bench logits --model "$MODEL" --data "$WORK/data.jsonl" \
    --adapter "$RUN/adapter.gguf" --out "$WORK/logits.safetensors" >&2
"$LOGITS_HER" bench logits --model "$MODEL" --data "$WORK/data.jsonl" \
    --out "$WORK/base-logits.safetensors" >&2

say "llama.cpp, transformers + PEFT"
"$PY" scripts/check_peft.py --model "$MODEL" --run "$RUN" --data "$WORK/data.jsonl" \
    --logits "$WORK/logits.safetensors" --base-logits "$WORK/base-logits.safetensors" \
    --llama-server "$TARGET/llama-server/bin/llama-server" --her "$LOGITS_HER" --work "$WORK"
