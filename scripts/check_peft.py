#!/usr/bin/env python3
"""The PEFT export checked by its real consumers (run by scripts/check-peft.sh).

A q/k-only LoRA that `her train sft` trained on SmolLM2 (llama arch: the GGUF's
q/k rows are permuted) until it replays two replies is checked three ways:

1. llama.cpp (llama-server, greedy) with the run's adapter.gguf replays both
   replies token for token (and the base model does not);
2. transformers + PEFT with the run's peft/ folder, on the same GGUF
   (transformers dequantizes it and un-permutes q/k), replays them too;
3. PEFT's logits on the samples match the trainer's own (candle, `her bench
   logits`) within TOLERANCE, while the adapter moves them far more;
4. the other way: `her import adapter` of the run's peft/ gives adapter.gguf
   back byte for byte, and of an adapter PEFT itself wrote (q/k/v, rsLoRA,
   random B) gives a GGUF whose candle logits match PEFT's within TOLERANCE.

Prints one JSON object with every figure on stdout; exits 1 when a check fails.
"""

import argparse
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request

# max |Δ log-softmax| (nats) allowed between PEFT and candle over every
# position and the full vocabulary, adapter on. Both run f32 on the same
# dequantized Q4_1 weights (transformers dequantizes the GGUF with gguf-py,
# d·q + m per block, as candle does) and the same token ids; what differs is
# summation order, rope's sin/cos and the softmax/rms_norm kernels across 30
# layers. The bound is the one crates/her-train/tests/train_parity.rs holds candle to against
# llama.cpp on SmolLM2's layers in f32; the same gap WITHOUT the adapter is
# printed as the floor (7e-5 when measured), and a wrong row order costs nats.
TOLERANCE = 1e-3


def log(msg):
    print(f"[check-peft] {msg}", file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def read_samples(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def llama_replays(server, model, adapter, prompts, lengths, threads):
    """Greedy continuations from llama-server, as token ids."""
    port = free_port()
    cmd = [server, "-m", model, "--host", "127.0.0.1", "--port", str(port), "-c", "1024",
           "-t", str(threads), "-np", "1", "--log-disable"]
    if adapter:
        cmd += ["--lora", adapter]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(600):
            try:
                with urllib.request.urlopen(url + "/health", timeout=1) as r:
                    if r.status == 200:
                        break
            except Exception:
                time.sleep(0.1)
        else:
            raise RuntimeError("llama-server did not start")
        out = []
        for prompt, n in zip(prompts, lengths):
            body = json.dumps({
                "prompt": prompt, "n_predict": n, "temperature": 0.0, "top_k": 1,
                "cache_prompt": False, "return_tokens": True,
            }).encode()
            req = urllib.request.Request(url + "/completion", body, {"Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=120) as r:
                out.append(json.load(r)["tokens"])
        return out
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def her(binary, *args):
    subprocess.run([binary, *args], check=True, stdout=sys.stderr)


def sha256(path):
    import hashlib
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def compare(reference, candidate):
    """max |Δ log-softmax|, mean KL(reference ‖ candidate) and top-1 agreement."""
    import torch
    a = torch.log_softmax(reference.double(), -1)
    b = torch.log_softmax(candidate.double(), -1)
    return {
        "max_abs_logsoftmax": float((a - b).abs().max()),
        "mean_kl": float((a.exp() * (a - b)).sum(-1).mean()),
        "top1_agree": float((a.argmax(-1) == b.argmax(-1)).double().mean()),
    }


def merge(stats):
    return {
        "max_abs_logsoftmax": max(s["max_abs_logsoftmax"] for s in stats),
        "mean_kl": sum(s["mean_kl"] for s in stats) / len(stats),
        "top1_agree": min(s["top1_agree"] for s in stats),
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True, help="the base GGUF")
    ap.add_argument("--run", required=True, help="the run folder (adapter.gguf, peft/)")
    ap.add_argument("--data", required=True, help="the samples the run learned")
    ap.add_argument("--logits", required=True, help="`her bench logits` output with the adapter")
    ap.add_argument("--base-logits", required=True, help="the same without the adapter")
    ap.add_argument("--llama-server", required=True)
    ap.add_argument("--her", required=True, help="the build whose import and bench logits run")
    ap.add_argument("--work", required=True, help="a folder for the import check's files")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    import torch
    from peft import LoraConfig, PeftModel, get_peft_model
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM
    import transformers
    import peft as peft_pkg

    torch.set_num_threads(args.threads)
    samples = read_samples(args.data)
    ours = load_file(args.logits)
    base_ours = load_file(args.base_logits)
    ids = [ours[f"ids.{i}"].long().tolist() for i in range(len(samples))]
    starts = [int(ours[f"completion_start.{i}"][0]) for i in range(len(samples))]
    prompts = [x[:s] for x, s in zip(ids, starts)]
    replies = [x[s:] for x, s in zip(ids, starts)]
    # The reply without its closing <|im_end|>: what a greedy run must write first.
    texts = [r[:-1] for r in replies]
    lengths = [len(t) for t in texts]
    report = {"reply_tokens": lengths}

    # 1. llama.cpp with the adapter GGUF (and without, to show training did it).
    adapter = os.path.join(args.run, "adapter.gguf")
    got = llama_replays(args.llama_server, args.model, adapter, prompts, lengths, args.threads)
    base_got = llama_replays(args.llama_server, args.model, None, prompts, lengths, args.threads)
    report["llama_cpp_replays"] = [g[: len(t)] == t for g, t in zip(got, texts)]
    report["llama_cpp_base_replays"] = [g[: len(t)] == t for g, t in zip(base_got, texts)]
    log(f"llama.cpp replays: {report['llama_cpp_replays']} (base: {report['llama_cpp_base_replays']})")

    # 2. transformers + PEFT with the exported folder.
    model_dir, gguf_file = os.path.split(os.path.abspath(args.model))
    base = AutoModelForCausalLM.from_pretrained(model_dir, gguf_file=gguf_file, dtype=torch.float32)
    base.eval()
    with torch.no_grad():
        base_theirs = [base(torch.tensor([x])).logits[0] for x in ids]
    model = PeftModel.from_pretrained(base, os.path.join(args.run, "peft"))
    model.eval()
    replays = []
    with torch.no_grad():
        for p, t in zip(prompts, texts):
            out = model.generate(
                torch.tensor([p]), attention_mask=torch.ones(1, len(p), dtype=torch.long),
                max_new_tokens=len(t), do_sample=False, num_beams=1,
            )
            replays.append(out[0, len(p):].tolist()[: len(t)] == t)
        theirs = [model(torch.tensor([x])).logits[0] for x in ids]
    report["peft_replays"] = replays
    log(f"transformers + PEFT replays: {replays}")

    # 3. Logits: PEFT vs candle, with and without the adapter.
    adapted = merge([compare(ours[f"logits.{i}"], theirs[i]) for i in range(len(ids))])
    floor = merge([compare(base_ours[f"logits.{i}"], base_theirs[i]) for i in range(len(ids))])
    effect = merge([compare(base_ours[f"logits.{i}"], ours[f"logits.{i}"]) for i in range(len(ids))])
    report["peft_vs_candle_adapted"] = adapted
    report["peft_vs_candle_base"] = floor
    report["adapter_effect_in_candle"] = effect
    report["tolerance"] = TOLERANCE

    # 4. The import: our own export back, and an adapter PEFT wrote itself.
    roundtrip = os.path.join(args.work, "roundtrip.gguf")
    her(args.her, "import", "adapter", os.path.join(args.run, "peft"), "--model", args.model,
        "--out", roundtrip, "--force")
    report["import_of_our_export_is_byte_identical"] = sha256(roundtrip) == sha256(adapter)
    fresh = AutoModelForCausalLM.from_pretrained(model_dir, gguf_file=gguf_file, dtype=torch.float32)
    theirs_dir = os.path.join(args.work, "peft-written")
    torch.manual_seed(0)
    written = get_peft_model(fresh, LoraConfig(
        r=8, lora_alpha=16, lora_dropout=0.0, use_rslora=True, task_type="CAUSAL_LM",
        target_modules=["q_proj", "k_proj", "v_proj"]))
    with torch.no_grad():
        for name, p in written.named_parameters():
            # PEFT starts B at zero, which would make the check vacuous.
            if "lora_B" in name:
                p.normal_(0.0, 0.05)
    written.save_pretrained(theirs_dir)
    written.eval()
    imported = os.path.join(args.work, "peft-written.gguf")
    her(args.her, "import", "adapter", theirs_dir, "--model", args.model, "--out", imported, "--force")
    imported_logits = os.path.join(args.work, "peft-written-logits.safetensors")
    her(args.her, "bench", "logits", "--model", args.model, "--data", args.data,
        "--adapter", imported, "--out", imported_logits)
    ours_imported = load_file(imported_logits)
    with torch.no_grad():
        peft_written = [written(torch.tensor([x])).logits[0] for x in ids]
    report["imported_vs_peft"] = merge(
        [compare(peft_written[i], ours_imported[f"logits.{i}"]) for i in range(len(ids))])
    report["peft_written_effect"] = merge(
        [compare(base_theirs[i], peft_written[i]) for i in range(len(ids))])
    report["versions"] = {"torch": torch.__version__, "transformers": transformers.__version__,
                          "peft": peft_pkg.__version__}
    checks = {
        "llama_cpp_replays": all(report["llama_cpp_replays"]),
        "base_does_not_replay": not any(report["llama_cpp_base_replays"]),
        "peft_replays": all(replays),
        "logits_within_tolerance": adapted["max_abs_logsoftmax"] <= TOLERANCE,
        "adapter_moves_logits": effect["max_abs_logsoftmax"] > 100 * TOLERANCE,
        "import_of_our_export_is_byte_identical": report["import_of_our_export_is_byte_identical"],
        "imported_matches_peft": report["imported_vs_peft"]["max_abs_logsoftmax"] <= TOLERANCE,
        "peft_written_adapter_moves_logits":
            report["peft_written_effect"]["max_abs_logsoftmax"] > 100 * TOLERANCE,
    }
    report["checks"] = checks
    report["passed"] = all(checks.values())
    print(json.dumps(report, indent=2))
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
