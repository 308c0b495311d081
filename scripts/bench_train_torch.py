#!/usr/bin/env python3
"""The PyTorch + PEFT side of `her bench train`.

Loads the model from the SAME GGUF with transformers (dequantized to f32),
applies PEFT LoRA, and trains on exactly the token batches the Rust side
wrote (ids and already-shifted labels, -100 = not in the loss): forward,
backward, gradient clipping and an AdamW step per batch. Prints one JSON line
on stdout; progress goes to stderr.

Run by `her bench train` (which embeds this file); by hand:
    target/py-bench-train/bin/python scripts/bench_train_torch.py \
        --model assets/models/SmolLM2-135M-Instruct.Q4_1.gguf --batches B.json --threads 2
"""

import argparse
import importlib.metadata
import json
import os
import resource
import sys
import time


def peak_mib():
    # Linux reports ru_maxrss in KiB.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def cpu_seconds():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def log(msg):
    print(f"[torch] {msg}", file=sys.stderr, flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True, help="the GGUF file")
    ap.add_argument("--batches", required=True, help="JSON written by `her bench train`")
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--device", default="cpu", help="cpu or cuda (scripts/gpu-check)")
    ap.add_argument(
        "--dtype",
        default="float32",
        choices=["float32", "bfloat16"],
        help="the base model's dtype; LoRA weights stay float32 (PEFT's autocast_adapter_dtype)",
    )
    args = ap.parse_args()

    # Before torch starts its pools.
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    os.environ.setdefault("MKL_NUM_THREADS", str(args.threads))
    import torch
    import torch.nn.functional as F
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    dtype = getattr(torch, args.dtype)
    on_gpu = device.type == "cuda"

    def sync():
        # GPU work is asynchronous: time only what has finished.
        if on_gpu:
            torch.cuda.synchronize()

    with open(args.batches) as f:
        spec = json.load(f)
    lora = spec["lora"]
    opt = spec["optimizer"]

    model_dir, gguf_file = os.path.split(os.path.abspath(args.model))
    t0 = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(model_dir, gguf_file=gguf_file)
    model = AutoModelForCausalLM.from_pretrained(model_dir, gguf_file=gguf_file, dtype=dtype)
    model.config.use_cache = False
    model.to(device)
    load_s = time.perf_counter() - t0

    # The tokenizer from the GGUF should give the ids the Rust side used.
    same = 0
    for sample in spec.get("tokenizer_check", []):
        ids = []
        for part in sample["parts"]:
            ids += tokenizer.encode(part, add_special_tokens=False)
        same += ids == sample["ids"]
    tokenizer_check = {"equal": same, "samples": len(spec.get("tokenizer_check", []))}

    config = LoraConfig(
        r=lora["rank"],
        lora_alpha=lora["alpha"],
        lora_dropout=lora["dropout"],
        target_modules=lora["targets"],
        bias="none",
        task_type="CAUSAL_LM",
    )
    model = get_peft_model(model, config)
    if spec.get("checkpointing"):
        # The frozen embedding output needs a gradient for the recomputed
        # blocks to see one (PEFT's usual recipe).
        model.enable_input_require_grads()
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    n_trainable = sum(p.numel() for p in params)
    optimizer = torch.optim.AdamW(
        params,
        lr=opt["lr"],
        betas=(opt["beta1"], opt["beta2"]),
        eps=opt["eps"],
        weight_decay=opt["weight_decay"],
    )
    load_peak = peak_mib()
    if on_gpu:
        torch.cuda.reset_peak_memory_stats()
    log(f"loaded in {load_s:.1f} s, {n_trainable} trainable parameters, {args.threads} threads")

    steps = []
    for i, batch in enumerate(spec["batches"]):
        ids = torch.tensor(batch["ids"], dtype=torch.long, device=device)
        labels = torch.tensor(batch["labels"], dtype=torch.long, device=device)
        positions = int(batch["positions"])
        sync()
        t_start = time.perf_counter()
        logits = model(input_ids=ids).logits
        # Labels are already shifted (label[t] is the token after ids[t]).
        loss = F.cross_entropy(
            logits.reshape(-1, logits.shape[-1]).float(), labels.reshape(-1), ignore_index=-100
        )
        sync()
        t_fwd = time.perf_counter()
        loss.backward()
        sync()
        t_bwd = time.perf_counter()
        if opt["max_grad_norm"] > 0:
            torch.nn.utils.clip_grad_norm_(params, opt["max_grad_norm"])
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        sync()
        t_end = time.perf_counter()
        del logits
        step = {
            "loss": float(loss.detach()),
            "positions": positions,
            "forward_s": t_fwd - t_start,
            "backward_s": t_bwd - t_fwd,
            "optimizer_s": t_end - t_bwd,
            "step_s": t_end - t_start,
        }
        steps.append(step)
        log(
            f"step {i + 1}/{len(spec['batches'])}: loss {step['loss']:.4f}, "
            f"{step['step_s']:.2f} s, {positions / step['step_s']:.1f} tok/s, peak {peak_mib():.0f} MiB"
        )

    versions = {}
    for name in ["torch", "transformers", "peft", "gguf", "safetensors", "numpy"]:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    print(
        json.dumps(
            {
                "side": "torch",
                "threads": torch.get_num_threads(),
                "attention": getattr(model.config, "_attn_implementation", None),
                "dtype": args.dtype,
                "device": args.device,
                "gpu_peak_mib": torch.cuda.max_memory_allocated() / 2**20 if on_gpu else None,
                "trainable_params": n_trainable,
                "load_s": load_s,
                "load_peak_mib": load_peak,
                "peak_mib": peak_mib(),
                "tokenizer_check": tokenizer_check,
                "steps": steps,
                "cpu_s": cpu_seconds(),
                "versions": versions,
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
