//! `her bench train`: LoRA SFT tokens/s and peak memory of our candle
//! trainer (quantized and dequantized base) against PyTorch + PEFT on the
//! same GGUF, the same token batches and the same machine, in one run.
//!
//! Every side runs in its own child process, one after the other, so each
//! peak RSS is measured in isolation and no two compute-heavy runtimes share
//! the cores. The batches are written once to a plan file that every side
//! reads: both train on identical tokens with identical labels.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, anyhow, bail};

use crate::app::AppContext;
use crate::cli::{BenchTrainArgs, TrainLoopArgs};
use her_core::rng::SplitMix64;
use her_train::bench::{
    Plan, PlanBatch, PlanLora, PlanOptimizer, SideResult, TokenizerCheck, train_side,
};
use her_train::data::{IGNORE, Tokenized, chatml_parts, read_jsonl, tokenize};
use her_train::lora::Target;
use her_train::model::BaseMode;
use her_train::optim::AdamWConfig;
use her_train::tokenizer;

/// The PyTorch side, embedded so it always matches this binary.
const TORCH_SCRIPT: &str = include_str!("../../scripts/bench_train_torch.py");

/// Folder name of the virtual environment made by scripts/bench-train-setup.sh.
const VENV_NAME: &str = "py-bench-train";

/// The targets set for this benchmark (toolchain.md's PyTorch anchor).
const RANK: usize = 16;
const ALPHA: f64 = 32.0;
pub(super) const SEED: u64 = 42;
const MAX_GRAD_NORM: f64 = 1.0;

pub fn run(app: &AppContext, args: &BenchTrainArgs) -> anyhow::Result<()> {
    if args.steps == 0 || args.batch == 0 || args.seq == 0 {
        bail!("--steps, --batch and --seq must be at least 1");
    }
    let model = match &args.model {
        Some(p) => std::path::absolute(p)?,
        None => app.model_path(),
    };
    her_engine::local::check_model_file(&model)?;
    let threads = match args.threads {
        0 => std::thread::available_parallelism().map_or(1, usize::from),
        n => n as usize,
    };
    if let Some(d) = &args.data
        && !d.is_file()
    {
        bail!("--data '{}' is not a file", d.display());
    }
    let data = args.data.clone().unwrap_or_else(|| {
        app.studio
            .root
            .join("assets")
            .join("datasets")
            .join("elizabeth-sft.jsonl")
    });
    let plan = make_plan(&model, &data, args)?;
    let labelled: usize = plan.batches.iter().map(|b| b.tokens).sum();
    let read: usize = plan.batches.iter().map(|b| b.positions).sum();

    let work = std::env::temp_dir()
        .join("her-studio")
        .join(format!("bench-train-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    let plan_path = work.join("plan.json");
    std::fs::write(&plan_path, serde_json::to_vec(&plan)?)?;

    println!(
        "her bench train: {}\n  batches: {} steps × {}×{} tokens from {} ({} of {} positions in the loss: --labels {})\n  LoRA r {RANK}, alpha {ALPHA}, dropout 0 on q,k,v,o,gate,up,down; AdamW lr {}, clip {MAX_GRAD_NORM}; activation checkpointing {}; our kernels {}; device {}, {}; {threads} threads; first step is warm-up\n",
        model.display(),
        args.steps,
        args.batch,
        args.seq,
        plan.source,
        labelled,
        read,
        args.labels,
        args.lr,
        if args.checkpointing { "on" } else { "off" },
        args.kernels,
        args.device,
        args.dtype,
    );

    let modes: Vec<BaseMode> = match args.base.as_deref() {
        Some("quantized") => vec![BaseMode::Quantized],
        Some("dequantized") => vec![BaseMode::Dequantized],
        _ => vec![BaseMode::Quantized, BaseMode::Dequantized],
    };
    let mut ours = Vec::new();
    for mode in modes {
        eprintln!("-- ours, {} base", mode_name(mode));
        let result = ours_in_child(&plan_path, mode, threads)?;
        ours.push((mode, result));
    }

    let torch = if args.skip_torch {
        None
    } else {
        match find_venv(app) {
            Some(python) => {
                eprintln!("-- PyTorch + PEFT ({})", python.display());
                let script = work.join("bench_train_torch.py");
                std::fs::write(&script, TORCH_SCRIPT)?;
                Some(torch_in_child(
                    &python, &script, &model, &plan_path, threads, args,
                )?)
            }
            None => {
                println!(
                    "PyTorch baseline skipped: no virtual environment '{VENV_NAME}' found (looked at {}).\n  Create it with: CARGO_TARGET_DIR=<the target dir> scripts/bench-train-setup.sh\n  (or set BENCH_TRAIN_VENV to its folder), then run this again.\n",
                    venv_candidates(app)
                        .iter()
                        .map(|p| p.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                );
                None
            }
        }
    };
    super::train_report::report(&ours, torch.as_ref(), args.checkpointing);

    if data.is_file() && !args.skip_packing {
        let mode = ours.first().map_or(BaseMode::Quantized, |(m, _)| *m);
        let packing = super::train_packing::run(app, args, &model, &data, &work, mode, threads);
        let _ = std::fs::remove_dir_all(&work);
        packing?;
    }
    let _ = std::fs::remove_dir_all(&work);
    Ok(())
}

pub(super) fn mode_name(mode: BaseMode) -> &'static str {
    match mode {
        BaseMode::Quantized => "quantized",
        BaseMode::Dequantized => "dequantized",
    }
}

/// The batches: the samples' ChatML text packed end to end (and repeated)
/// into rows of `seq` tokens, or seeded random ids if there is no data.
fn make_plan(model: &Path, data: &Path, args: &BenchTrainArgs) -> anyhow::Result<Plan> {
    let tokenizer = tokenizer::from_gguf(model)?;
    let completion_only = args.labels == "completion";
    let (source, batches, tokenizer_check) = if data.is_file() {
        let samples = read_jsonl(data)?;
        let mut stream: Vec<(u32, bool)> = Vec::new();
        let mut check = Vec::new();
        for s in &samples {
            let t: Tokenized = tokenize(&tokenizer, s)?;
            let (prompt, completion) = chatml_parts(s);
            check.push(TokenizerCheck {
                parts: vec![prompt, completion],
                ids: t.ids.clone(),
            });
            stream.extend(
                t.ids
                    .iter()
                    .enumerate()
                    .map(|(i, &id)| (id, i >= t.completion_start)),
            );
        }
        if stream.len() < 2 {
            bail!("'{}' has too few tokens to fill a batch", data.display());
        }
        let batches = pack(&stream, args, completion_only);
        (
            format!(
                "{} ({} samples, {} tokens, repeated)",
                data.display(),
                samples.len(),
                stream.len()
            ),
            batches,
            check,
        )
    } else {
        let vocab = tokenizer.get_vocab_size(true) as u64;
        let mut rng = SplitMix64::new(SEED);
        let stream: Vec<(u32, bool)> = (0..args.steps * args.batch * (args.seq + 1))
            .map(|_| ((rng.next_u64() % vocab) as u32, true))
            .collect();
        (
            format!("seeded random ids ('{}' not found)", data.display()),
            pack(&stream, args, false),
            Vec::new(),
        )
    };
    Ok(base_plan(model, source, batches, tokenizer_check, args))
}

/// A plan of `batches` with this benchmark's LoRA and optimizer settings.
pub(super) fn base_plan(
    model: &Path,
    source: String,
    batches: Vec<PlanBatch>,
    tokenizer_check: Vec<TokenizerCheck>,
    args: &BenchTrainArgs,
) -> Plan {
    let targets = Target::ALL
        .iter()
        .map(|t| {
            let name = t.peft_name();
            name.rsplit('.').next().unwrap_or(name).to_string()
        })
        .collect();
    let adam = AdamWConfig::default();
    Plan {
        model: model.to_path_buf(),
        source,
        lora: PlanLora {
            rank: RANK,
            alpha: ALPHA,
            dropout: 0.0,
            targets,
        },
        optimizer: PlanOptimizer {
            lr: args.lr,
            beta1: adam.beta1,
            beta2: adam.beta2,
            eps: adam.eps,
            weight_decay: 0.0,
            max_grad_norm: MAX_GRAD_NORM,
        },
        seed: SEED,
        checkpointing: args.checkpointing,
        kernels: args.kernels.clone(),
        device: args.device.clone(),
        dtype: args.dtype.clone(),
        batches,
        tokenizer_check,
    }
}

/// Row k reads `seq + 1` tokens of the (cyclic) stream from k·(seq+1): ids
/// are the first `seq`, labels the next token of each (or −100 where
/// `completion_only` and that token is not in an assistant turn).
fn pack(stream: &[(u32, bool)], args: &BenchTrainArgs, completion_only: bool) -> Vec<PlanBatch> {
    let n = stream.len();
    let mut batches = Vec::with_capacity(args.steps);
    for step in 0..args.steps {
        let (mut ids, mut labels, mut tokens) = (Vec::new(), Vec::new(), 0);
        for r in 0..args.batch {
            let start = (step * args.batch + r) * (args.seq + 1);
            let at = |t: usize| stream[(start + t) % n];
            ids.push((0..args.seq).map(|t| at(t).0).collect::<Vec<_>>());
            let row: Vec<i64> = (0..args.seq)
                .map(|t| {
                    let (next, in_completion) = at(t + 1);
                    if completion_only && !in_completion {
                        IGNORE
                    } else {
                        i64::from(next)
                    }
                })
                .collect();
            tokens += row.iter().filter(|&&y| y != IGNORE).count();
            labels.push(row);
        }
        batches.push(PlanBatch {
            ids,
            labels,
            positions: args.batch * args.seq,
            tokens,
            sample_lens: Vec::new(),
        });
    }
    batches
}

/// Runs `her bench train-loop` in a child process: its stderr (progress)
/// passes through, its stdout is the result line.
pub(super) fn ours_in_child(
    plan: &Path,
    mode: BaseMode,
    threads: usize,
) -> anyhow::Result<SideResult> {
    let exe = std::env::current_exe()?;
    let mut cmd = Command::new(exe);
    cmd.args(["bench", "train-loop", "--base", mode_name(mode), "--plan"])
        .arg(plan)
        // candle's CPU kernels size their thread pools from this.
        .env("RAYON_NUM_THREADS", threads.to_string());
    read_result(cmd, &format!("ours ({} base)", mode_name(mode)))
}

fn torch_in_child(
    python: &Path,
    script: &Path,
    model: &Path,
    plan: &Path,
    threads: usize,
    args: &BenchTrainArgs,
) -> anyhow::Result<SideResult> {
    let dtype = match args.dtype.as_str() {
        "bf16" => "bfloat16",
        _ => "float32",
    };
    // torch names devices as candle's setting does: cpu, cuda, cuda:N.
    let mut cmd = Command::new(python);
    cmd.arg(script)
        .arg("--model")
        .arg(model)
        .arg("--batches")
        .arg(plan)
        .args(["--threads", &threads.to_string()])
        .args(["--device", &args.device, "--dtype", dtype])
        .env("OMP_NUM_THREADS", threads.to_string())
        .env("MKL_NUM_THREADS", threads.to_string())
        // transformers must not look for the model or anything else online.
        .env("HF_HUB_OFFLINE", "1")
        .env("TRANSFORMERS_OFFLINE", "1")
        .env("TOKENIZERS_PARALLELISM", "false");
    read_result(cmd, "PyTorch + PEFT")
}

fn read_result(mut cmd: Command, what: &str) -> anyhow::Result<SideResult> {
    let before = cpu_ticks();
    let output = cmd
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .stdout(Stdio::piped())
        .output()
        .with_context(|| format!("starting {what}"))?;
    if !output.status.success() {
        bail!("{what} failed ({})", output.status);
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .ok_or_else(|| anyhow!("{what} printed no result line: '{stdout}'"))?;
    let mut result: SideResult =
        serde_json::from_str(line).with_context(|| format!("reading {what}'s result '{line}'"))?;
    if let (Some((busy0, total0)), Some((busy1, total1))) = (before, cpu_ticks()) {
        let total = total1.saturating_sub(total0) as f64;
        let busy = busy1.saturating_sub(busy0) as f64 / CLOCK_TICKS;
        if total > 0.0 {
            let others = (busy - result.cpu_s).max(0.0) * CLOCK_TICKS / total;
            result.others_busy = Some(others);
        }
    }
    Ok(result)
}

/// Linux's USER_HZ, the unit of /proc/stat and /proc/self/stat (100 on
/// every mainstream architecture).
const CLOCK_TICKS: f64 = 100.0;

/// (busy, total) CPU ticks of the whole machine from /proc/stat.
fn cpu_ticks() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest is inside user).
    let get = |i: usize| v.get(i).copied().unwrap_or(0);
    let busy = get(0) + get(1) + get(2) + get(5) + get(6) + get(7);
    Some((busy, busy + get(3) + get(4)))
}

/// This process's user + system CPU seconds, all threads.
fn own_cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // Fields after the command name (which may hold spaces): state is
    // field 3, utime 14, stime 15.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|x| x.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / CLOCK_TICKS
}

/// Where the virtual environment may be, in order: $BENCH_TRAIN_VENV,
/// $CARGO_TARGET_DIR/py-bench-train, next to this binary's target folder,
/// the studio's target/.
fn venv_candidates(app: &AppContext) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Some(dir) = std::env::var_os("BENCH_TRAIN_VENV") {
        out.push(PathBuf::from(dir));
    }
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        out.push(PathBuf::from(dir).join(VENV_NAME));
    }
    // target/release/her → target/py-bench-train
    if let Ok(exe) = std::env::current_exe()
        && let Some(target) = exe.parent().and_then(Path::parent)
    {
        out.push(target.join(VENV_NAME));
    }
    out.push(app.studio.root.join("target").join(VENV_NAME));
    out.dedup();
    out
}

fn find_venv(app: &AppContext) -> Option<PathBuf> {
    venv_candidates(app)
        .into_iter()
        .map(|v| v.join("bin").join("python"))
        .find(|p| p.is_file())
}

/// Our side in this process (run as a child of `her bench train`): the
/// trainer's steps on the plan's batches. Prints one JSON line.
pub fn run_train_loop(args: &TrainLoopArgs) -> anyhow::Result<()> {
    let plan: Plan = serde_json::from_slice(&her_core::fsutil::read::bytes(
        &args.plan,
        her_core::fsutil::read::Kind::Config,
    )?)?;
    let mode = match args.base.as_str() {
        "quantized" => BaseMode::Quantized,
        "dequantized" => BaseMode::Dequantized,
        other => bail!("--base '{other}': quantized or dequantized"),
    };
    let mut result = train_side(&plan, mode, &args.base).map_err(|e| anyhow!(e))?;
    result.cpu_s = own_cpu_seconds();
    result.versions = BTreeMap::from([(
        "her-studio".to_string(),
        Some(env!("CARGO_PKG_VERSION").to_string()),
    )]);
    println!("{}", serde_json::to_string(&result)?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use her_train::bench::StepTiming;

    fn args(steps: usize, batch: usize, seq: usize) -> BenchTrainArgs {
        BenchTrainArgs {
            model: None,
            steps,
            batch,
            seq,
            data: None,
            labels: "all".into(),
            threads: 1,
            lr: 2e-4,
            skip_torch: true,
            checkpointing: false,
            kernels: "fused".into(),
            device: "cpu".into(),
            dtype: "f32".into(),
            base: None,
            pack_len: 0,
            skip_packing: true,
        }
    }

    #[test]
    fn packing_shifts_labels_and_masks_prompts_when_asked() {
        // ids 0..10, the completion is 6..10.
        let stream: Vec<(u32, bool)> = (0..10).map(|i| (i, i >= 6)).collect();
        let all = pack(&stream, &args(2, 2, 3), false);
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].ids, vec![vec![0, 1, 2], vec![4, 5, 6]]);
        assert_eq!(all[0].labels, vec![vec![1, 2, 3], vec![5, 6, 7]]);
        // Row 3 starts at 12 ≡ 2 and wraps around.
        assert_eq!(all[1].ids, vec![vec![8, 9, 0], vec![2, 3, 4]]);
        assert_eq!(all[1].labels, vec![vec![9, 0, 1], vec![3, 4, 5]]);
        assert!(all.iter().all(|b| b.positions == 6 && b.tokens == 6));

        let masked = pack(&stream, &args(1, 2, 3), true);
        assert_eq!(
            masked[0].labels,
            vec![vec![IGNORE, IGNORE, IGNORE], vec![IGNORE, 6, 7]]
        );
        assert_eq!(masked[0].tokens, 2);
    }

    #[test]
    fn tokens_per_second_leaves_out_the_warm_up_step() {
        let step = |s: f64| StepTiming {
            loss: 1.0,
            positions: 100,
            forward_s: s / 2.0,
            backward_s: s / 4.0,
            optimizer_s: s / 4.0,
            step_s: s,
        };
        let r = SideResult {
            side: "x".into(),
            threads: 1,
            trainable_params: 0,
            load_s: 0.0,
            load_peak_mib: 0.0,
            peak_mib: 0.0,
            steps: vec![step(10.0), step(1.0), step(1.0)],
            cpu_s: 0.0,
            others_busy: None,
            attention: None,
            tokenizer_check: None,
            versions: BTreeMap::new(),
            gpu_peak_mib: None,
        };
        assert!((r.tokens_per_s() - 100.0).abs() < 1e-9);
        assert!((r.split().0 - 0.5).abs() < 1e-9);
    }
}
