//! `her bench train`'s packing section: our trainer on the micro-batches
//! `her train sft` builds from the data file, with `train.packing` off (one
//! sample per row, right-padded, rows grouped by length) and on (samples
//! packed into rows of `train.max_seq_len` positions, a micro-batch's rows
//! joined without padding, attention kept inside each sample). Both sides
//! see every sample once per epoch;
//! the figure is useful tokens/s: positions holding a real token (padding
//! is work that teaches nothing), and labelled tokens/s beside it.

use std::path::Path;

use anyhow::bail;

use super::train::{base_plan, mode_name, ours_in_child};
use crate::app::AppContext;
use crate::cli::BenchTrainArgs;
use her_train::bench::{Plan, PlanBatch, SideResult};
use her_train::data::{Batch, Batching, LossOn, read_jsonl, tokenize_turns};
use her_train::model::BaseMode;
use her_train::tokenizer;

/// Runs both sides in child processes and prints the section.
pub fn run(
    app: &AppContext,
    args: &BenchTrainArgs,
    model: &Path,
    data: &Path,
    work: &Path,
    mode: BaseMode,
    threads: usize,
) -> anyhow::Result<()> {
    let train = &app.config().train;
    let row_len = match args.pack_len {
        0 => train.max_seq_len as usize,
        n => n,
    };
    let loss_on: LossOn = train.loss_on.parse().map_err(anyhow::Error::msg)?;
    let mut sides = Vec::new();
    for packing in [false, true] {
        let plan = sft_plan(model, data, args, packing, row_len, loss_on)?;
        let path = work.join(format!("plan-packing-{packing}.json"));
        std::fs::write(&path, serde_json::to_vec(&plan)?)?;
        eprintln!(
            "-- ours, {} base, SFT batches with packing {}",
            mode_name(mode),
            if packing { "on" } else { "off" }
        );
        sides.push((plan, ours_in_child(&path, mode, threads)?));
    }
    report(&sides, args, row_len, loss_on, mode);
    Ok(())
}

/// The first `args.steps` micro-batches `her train sft` would train on,
/// epoch after epoch (samples longer than `row_len` tokens left out, as
/// there).
fn sft_plan(
    model: &Path,
    data: &Path,
    args: &BenchTrainArgs,
    packing: bool,
    row_len: usize,
    loss_on: LossOn,
) -> anyhow::Result<Plan> {
    let tokenizer = tokenizer::from_gguf(model)?;
    let mut samples = Vec::new();
    for sample in read_jsonl(data)? {
        let t = tokenize_turns(&tokenizer, &sample, loss_on)?;
        if t.ids.len() <= row_len {
            samples.push(t);
        }
    }
    if samples.is_empty() {
        bail!(
            "'{}' has no sample of at most {row_len} tokens",
            data.display()
        );
    }
    let batching = Batching::new(&samples, packing, row_len);
    let mut batches: Vec<Batch> = Vec::with_capacity(args.steps);
    let mut epoch = 0;
    while batches.len() < args.steps {
        let more = batching.epoch(&samples, args.batch, super::train::SEED, epoch);
        batches.extend(more.into_iter().take(args.steps - batches.len()));
        epoch += 1;
    }
    let source = format!(
        "{} ({} samples, packing {})",
        data.display(),
        samples.len(),
        if packing { "on" } else { "off" }
    );
    let plan_batches = batches.iter().map(plan_batch).collect();
    Ok(base_plan(model, source, plan_batches, Vec::new(), args))
}

fn plan_batch(b: &Batch) -> PlanBatch {
    let rows = |v: &[u32]| v.chunks(b.cols).map(<[u32]>::to_vec).collect();
    PlanBatch {
        ids: rows(&b.ids),
        labels: b.labels.chunks(b.cols).map(<[i64]>::to_vec).collect(),
        positions: b.positions,
        tokens: b.tokens,
        sample_lens: if b.is_packed() {
            b.sample_lens.clone()
        } else {
            Vec::new()
        },
    }
}

/// The plan's batches of the measured steps.
fn measured<'a>(plan: &'a Plan, r: &SideResult) -> &'a [PlanBatch] {
    let skip = r.steps.len() - r.measured().len();
    plan.batches.get(skip..).unwrap_or_default()
}

fn report(
    sides: &[(Plan, SideResult)],
    args: &BenchTrainArgs,
    row_len: usize,
    loss_on: LossOn,
    mode: BaseMode,
) {
    println!(
        "\n  packing: ours, {} base, the SFT micro-batches of the data ({} samples or packed \
         rows of up to {row_len} positions per step, the rows joined without padding; loss on \
         {} assistant turn{})",
        mode_name(mode),
        args.batch,
        match loss_on {
            LossOn::Last => "the final",
            LossOn::All => "every",
        },
        if loss_on == LossOn::All { "s" } else { "" }
    );
    println!(
        "  side                       useful tok/s  labelled tok/s  padding  positions/step  s/step  peak MiB  others busy"
    );
    for (plan, r) in sides {
        let batches = measured(plan, r);
        let useful: usize = batches.iter().map(|b| b.positions).sum();
        let labelled: usize = batches.iter().map(|b| b.tokens).sum();
        let slots: usize = batches
            .iter()
            .map(|b| b.ids.len() * b.ids.first().map_or(0, Vec::len))
            .sum();
        let secs: f64 = r.measured().iter().map(|s| s.step_s).sum();
        let per_s = |n: usize| if secs > 0.0 { n as f64 / secs } else { 0.0 };
        let name = if plan.batches.iter().any(|b| !b.sample_lens.is_empty()) {
            "packed (packing on)"
        } else {
            "padded rows (packing off)"
        };
        let others = r
            .others_busy
            .map_or("?".to_string(), |x| format!("{:.0}%", x * 100.0));
        println!(
            "  {name:<26} {:>12.1}  {:>14.1}  {:>6.1}%  {:>14}  {:>6.2}  {:>8.0}  {others:>11}",
            per_s(useful),
            per_s(labelled),
            100.0 * (1.0 - useful as f64 / slots.max(1) as f64),
            useful / batches.len().max(1),
            secs / batches.len().max(1) as f64,
            r.peak_mib
        );
    }
    if let [(_, off), (_, on)] = sides {
        let ratio = if off.tokens_per_s() > 0.0 {
            on.tokens_per_s() / off.tokens_per_s()
        } else {
            f64::NAN
        };
        println!(
            "    packed ÷ padded useful tok/s = {ratio:.3}  (target > 1.0: {})",
            if ratio > 1.0 { "met" } else { "NOT met" }
        );
    }
}
