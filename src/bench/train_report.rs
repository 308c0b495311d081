//! The tables `her bench train` prints: each side's tok/s, step split,
//! peaks and loss curve, then the ratios against PyTorch and their targets.

use her_train::bench::SideResult;
use her_train::model::BaseMode;

use super::train::mode_name;

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "NOT met" }
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 { a / b } else { f64::NAN }
}

pub(super) fn report(
    ours: &[(BaseMode, SideResult)],
    torch: Option<&SideResult>,
    checkpointing: bool,
) {
    println!(
        "  side                     tok/s   s/step  fwd s  bwd s  opt s  load peak MiB  peak MiB  others busy  loss first → last"
    );
    let row = |name: &str, r: &SideResult| {
        let (f, b, o, s) = r.split();
        let first = r.steps.first().map_or(f64::NAN, |s| s.loss);
        let last = r.steps.last().map_or(f64::NAN, |s| s.loss);
        let others = r
            .others_busy
            .map_or("?".to_string(), |x| format!("{:.0}%", x * 100.0));
        println!(
            "  {name:<22} {:>7.1}  {s:>7.2}  {f:>5.2}  {b:>5.2}  {o:>5.2}  {:>13.0}  {:>8.0}  {others:>11}  {first:.4} → {last:.4}",
            r.tokens_per_s(),
            r.load_peak_mib,
            r.peak_mib,
        );
    };
    for (mode, r) in ours {
        let name = match mode {
            BaseMode::Quantized => "ours, quantized base",
            BaseMode::Dequantized => "ours, dequantized base",
        };
        row(name, r);
    }
    if let Some(t) = torch {
        row("PyTorch + PEFT", t);
    }
    // On a GPU the process's RSS says little: the device's peak does.
    let mut printed_gpu = false;
    for (name, r) in ours
        .iter()
        .map(|(mode, r)| (mode_name(*mode), r))
        .chain(torch.map(|t| ("PyTorch + PEFT", t)))
    {
        if let Some(gpu) = r.gpu_peak_mib {
            println!("  GPU peak, {name}: {gpu:.0} MiB");
            printed_gpu = true;
        }
    }
    if printed_gpu {
        println!(
            "  (ours: the device's memory in use, CUDA context and candle's pool included; PyTorch: its allocator's peak, tensors only)"
        );
    }
    let disturbed = ours
        .iter()
        .map(|(_, r)| r)
        .chain(torch)
        .any(|r| r.others_busy.is_some_and(|x| x > 0.05));
    println!(
        "  (others busy: the share of the machine's CPU time other processes used while that side ran{})",
        if disturbed {
            "; above 5% the figures are disturbed: run again on a quiet machine"
        } else {
            ""
        }
    );

    let get = |m: BaseMode| ours.iter().find(|(x, _)| *x == m).map(|(_, r)| r);
    let (q, d) = (get(BaseMode::Quantized), get(BaseMode::Dequantized));
    if torch.is_none() && (q.is_none() || d.is_none()) {
        return;
    }
    println!("\n  ratios");
    if let Some(t) = torch {
        let t_tps = t.tokens_per_s();
        if let Some(q) = q {
            let r = ratio(q.tokens_per_s(), t_tps);
            println!(
                "    ours quantized tok/s ÷ PyTorch tok/s    = {r:.3}  (target ≥ 1.0: {})",
                verdict(r >= 1.0)
            );
        }
        if let Some(d) = d {
            let r = ratio(d.tokens_per_s(), t_tps);
            println!(
                "    ours dequantized tok/s ÷ PyTorch tok/s  = {r:.3}  (target ≥ 1.0: {})",
                verdict(r >= 1.0)
            );
        }
    }
    if let (Some(q), Some(d)) = (q, d) {
        let r = ratio(q.peak_mib, d.peak_mib);
        if checkpointing {
            println!(
                "    ours quantized peak ÷ dequantized peak  = {r:.3}  (target ≤ 0.5: {})",
                verdict(r <= 0.5)
            );
        } else {
            // Without checkpointing both peaks are mostly the same
            // activations; QLoRA's setting (PEFT's kbit preparation too)
            // checkpoints, and that is where the target applies.
            println!(
                "    ours quantized peak ÷ dequantized peak  = {r:.3}  (the ≤ 0.5 target is \
                 for QLoRA's setting: run with --checkpointing)"
            );
        }
    }
    if let Some(t) = torch {
        for (mode, r) in ours {
            println!(
                "    ours {} peak ÷ PyTorch peak{} = {:.3}  (for information)",
                mode_name(*mode),
                if *mode == BaseMode::Quantized {
                    "  "
                } else {
                    ""
                },
                ratio(r.peak_mib, t.peak_mib)
            );
        }
        // Before the first update the LoRA branches are zero: every side
        // computes the base model's loss on the same tokens.
        if let Some(first) = t.steps.first() {
            for (mode, r) in ours {
                if let Some(o) = r.steps.first() {
                    println!(
                        "    first-step loss, ours {} − PyTorch = {:+.5}  (same tokens, LoRA B = 0: the base model's loss)",
                        mode_name(*mode),
                        o.loss - first.loss
                    );
                }
            }
        }
        if let Some(c) = &t.tokenizer_check
            && c.samples > 0
        {
            println!(
                "    transformers' GGUF tokenizer gives our ids on {}/{} samples",
                c.equal, c.samples
            );
        }
        let versions: Vec<String> = t
            .versions
            .iter()
            .map(|(k, v)| format!("{k} {}", v.as_deref().unwrap_or("?")))
            .collect();
        println!(
            "\n  PyTorch side: {} threads, attention {}, {}",
            t.threads,
            t.attention.as_deref().unwrap_or("?"),
            versions.join(", ")
        );
    }
}
