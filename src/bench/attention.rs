//! `her bench attention`: how one decoder layer's peak memory in forward
//! plus backward grows with the sequence length. With tiled attention it
//! grows linearly (slope ≈ 1 per doubling); an attention that keeps its
//! probabilities grows quadratically (≈ 2), and the table prints what the
//! old op kept beside the measurement.
//!
//! Each length runs in its own child process: a process's peak RSS only
//! ever grows, and glibc keeps freed memory.

use std::process::{Command, Stdio};

use anyhow::{Context, anyhow, bail};

use crate::cli::{AttentionLayerArgs, BenchAttentionArgs};
use her_train::bench_attention::{Kernels, LayerRun, LayerShape, run_layer};

const SEED: u64 = 19;
const MIB: f64 = 1024.0 * 1024.0;

fn kernels(name: &str) -> anyhow::Result<Kernels> {
    match name {
        "fused" => Ok(Kernels::Fused),
        "portable" => Ok(Kernels::Portable),
        other => bail!("--kernels '{other}': fused or portable"),
    }
}

pub fn run(args: &BenchAttentionArgs) -> anyhow::Result<()> {
    let kernels = kernels(&args.kernels)?;
    if args.lengths.is_empty() || args.lengths.contains(&0) {
        bail!("--t: give one or more positive lengths, e.g. --t 512,1024,2048,4096");
    }
    let threads = match args.threads {
        0 => std::thread::available_parallelism().map_or(1, usize::from),
        n => n as usize,
    };
    let s = LayerShape::qwen3_mid();
    println!(
        "her bench attention: one decoder layer, e {} nh {} nkv {} d {} f {}, LoRA r {} on q,k,v,o,gate,up,down; \
         b 1, forward + backward, checkpointing off; {} attention; {threads} threads; each t in its own process\n",
        s.n_embd,
        s.n_head,
        s.n_head_kv,
        s.head_dim,
        s.n_ff,
        s.lora_rank,
        kernels.name()
    );
    let mut runs = Vec::new();
    for &t in &args.lengths {
        eprintln!("-- t = {t}");
        runs.push(layer_in_child(t, kernels, threads)?);
    }
    report(&runs, s.n_head);
    Ok(())
}

fn report(runs: &[LayerRun], n_head: usize) {
    let Some(first) = runs.first() else {
        return;
    };
    println!(
        "{:>6}  {:>12}  {:>8}  {:>10}  {:>22}",
        "t", "peak−before", "×first", "fwd+bwd", "old op's probabilities"
    );
    for r in runs {
        // b · nh · t² · 4 bytes: the full probability matrices (the old op
        // kept their causal half plus its row blocks' diagonal tiles).
        let old = (n_head * r.t * r.t * 4) as f64 / MIB;
        println!(
            "{:>6}  {:>8.0} MiB  {:>8.2}  {:>8.2} s  {:>18.0} MiB",
            r.t,
            r.added_mib(),
            r.added_mib() / first.added_mib().max(f64::MIN_POSITIVE),
            r.seconds,
            old
        );
    }
    if let [.., a, b] = runs
        && b.t > a.t
    {
        let slope = (b.added_mib() / a.added_mib().max(f64::MIN_POSITIVE)).log2()
            / (b.t as f64 / a.t as f64).log2();
        println!(
            "\nslope log2(peak({}) / peak({})) per doubling of t: {slope:.2} (linear ≈ 1, quadratic ≈ 2)",
            b.t, a.t
        );
    }
}

/// Runs `her bench attention-layer` in a child process and reads its line.
fn layer_in_child(t: usize, kernels: Kernels, threads: usize) -> anyhow::Result<LayerRun> {
    let exe = std::env::current_exe()?;
    let output = Command::new(exe)
        .args(["bench", "attention-layer", "--kernels", kernels.name()])
        .args(["--t", &t.to_string()])
        // candle's CPU kernels size their thread pools from this.
        .env("RAYON_NUM_THREADS", threads.to_string())
        .stdin(Stdio::null())
        .output()?;
    if !output.status.success() {
        return Err(anyhow!(
            "the layer at t = {t} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let line = String::from_utf8_lossy(&output.stdout);
    serde_json::from_str(line.trim())
        .with_context(|| format!("reading the child's result '{line}'"))
}

/// The child: one length, its figures as one JSON line.
pub fn run_layer_child(args: &AttentionLayerArgs) -> anyhow::Result<()> {
    // As the trainer does: one malloc arena, so the peak is the step's
    // working set rather than a copy of it per pool thread.
    her_train::memory::use_one_malloc_arena();
    let run = run_layer(
        LayerShape::qwen3_mid(),
        args.length,
        kernels(&args.kernels)?,
        SEED,
    )
    .map_err(|e| anyhow!(e))?;
    println!("{}", serde_json::to_string(&run)?);
    Ok(())
}
