//! `her judge [QUEUE.jsonl]`: an AI judge compares candidate pairs in both
//! orders, its verdicts are logged as preference pairs by `judge:MODEL`, and
//! where people judged the same pair, how often the judge agrees with them.

use std::collections::HashMap;

use anyhow::Context;

use crate::app::AppContext;
use crate::cli::{JudgeArgs, PrefsFilterArgs};
use her_core::judge::{HumanAgreement, JudgeCase, agreement_with_humans};
use her_core::prefs::queue::read_queue;
use her_core::prefs::store::judge_log;
use her_core::prefs::{
    ContextMessage, PreferencePair, PreferenceRecord, Verdict, append_to_log, context_sha256,
    derive_id, now_rfc3339, write_atomic,
};
use her_engine::dialogue::judge::{PairVerdict, judge_pair};

/// One pair to judge.
struct Item {
    character: String,
    context: Vec<ContextMessage>,
    cand_1: String,
    cand_2: String,
}

pub fn run(app: &AppContext, args: &JudgeArgs) -> anyhow::Result<()> {
    let humans = human_pairs(app)?;
    let mut items = match &args.pairs {
        Some(path) => read_queue(path)?
            .into_iter()
            .filter_map(|q| match q.candidates.as_slice() {
                [a, b] => Some(Item {
                    character: q.character.clone(),
                    context: q.context.clone(),
                    cand_1: a.text.clone(),
                    cand_2: b.text.clone(),
                }),
                _ => None,
            })
            .collect::<Vec<_>>(),
        None => humans
            .iter()
            .map(|p| Item {
                character: p.character.clone(),
                context: p.context.clone(),
                cand_1: p.cand_1.clone(),
                cand_2: p.cand_2.clone(),
            })
            .collect(),
    };
    dedup_items(&mut items);
    if let Some(limit) = args.limit {
        items.truncate(limit);
    }
    if items.is_empty() {
        anyhow::bail!(
            "nothing to judge: give a queue file whose items have two candidates, or rate pairs \
             in the chat arena or with `her annotate` first"
        );
    }

    let engine = app.start_judge()?;
    let info = engine.model_info();
    let judge = format!("judge:{}", info.name);
    let log = judge_log(&app.config().prefs_dir(&app.studio.root), &info.name);
    if let Some(dir) = log.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let sampling = her_core::judge::judge_sampling(&app.config().sampling, true);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let index = human_index(&humans);
    let mut compared: Vec<(Verdict, Verdict)> = Vec::new();
    let mut ties_from_disagreement = 0;
    for (n, item) in items.iter().enumerate() {
        let case = JudgeCase {
            character: &item.character,
            context: &item.context,
            cand_1: &item.cand_1,
            cand_2: &item.cand_2,
        };
        let verdict = runtime.block_on(judge_pair(engine.as_ref(), &case, &sampling))?;
        if verdict.forward.better != verdict.reverse.better.swapped() {
            ties_from_disagreement += 1;
        }
        let record = verdict_record(&judge, item, &verdict);
        append_to_log(&log, &[PreferenceRecord::Pair(record)])?;
        print_verdict(n + 1, items.len(), item, &verdict, args.show_principles);
        if let Some(human) = index.get(&item_key(item)) {
            compared.extend(human.iter().map(|h| (*h, verdict.combined)));
        }
    }
    println!(
        "{} pairs judged; the two orders disagreed (counted as tie) on {ties_from_disagreement}; \
         verdicts appended to {}",
        items.len(),
        log.display()
    );
    report_agreement(&log, &judge, &agreement_with_humans(&compared))?;
    Ok(())
}

/// The explicit pairs people judged in this studio.
fn human_pairs(app: &AppContext) -> anyhow::Result<Vec<PreferencePair>> {
    let filter = PrefsFilterArgs {
        no_implicit: true,
        ..PrefsFilterArgs::default()
    };
    let records = super::prefs::filtered(app, &filter)?;
    Ok(records
        .into_iter()
        .filter_map(|r| match r {
            PreferenceRecord::Pair(p) if !p.annotator.starts_with("judge:") => Some(p),
            _ => None,
        })
        // Derived from two ratings: a comparison nobody made side by side.
        .filter(|p| !p.id.starts_with("rated-"))
        .collect())
}

/// Context and the two texts in a fixed order, with a flag for whether the
/// item's order had to be swapped to get there.
fn item_key_of(context: &[ContextMessage], a: &str, b: &str) -> ((String, String, String), bool) {
    let swapped = a > b;
    let (first, second) = if swapped { (b, a) } else { (a, b) };
    (
        (
            context_sha256(context),
            first.to_string(),
            second.to_string(),
        ),
        swapped,
    )
}

fn item_key(item: &Item) -> (String, String, String) {
    item_key_of(&item.context, &item.cand_1, &item.cand_2).0
}

/// Human verdicts per item, in the item's canonical order.
fn human_index(humans: &[PreferencePair]) -> HashMap<(String, String, String), Vec<Verdict>> {
    let mut index: HashMap<_, Vec<Verdict>> = HashMap::new();
    for p in humans {
        let (key, swapped) = item_key_of(&p.context, &p.cand_1, &p.cand_2);
        let verdict = if swapped {
            p.verdict.swapped()
        } else {
            p.verdict
        };
        index.entry(key).or_default().push(verdict);
    }
    index
}

/// Judges each distinct pair once, in its canonical order (a pair labelled by
/// three people is still one judgement), so human verdicts line up with it.
fn dedup_items(items: &mut Vec<Item>) {
    let mut seen = std::collections::HashSet::new();
    items.retain(|i| seen.insert(item_key(i)));
    for item in items.iter_mut() {
        if item.cand_1 > item.cand_2 {
            std::mem::swap(&mut item.cand_1, &mut item.cand_2);
        }
    }
}

fn verdict_record(judge: &str, item: &Item, verdict: &PairVerdict) -> PreferencePair {
    let ctx = context_sha256(&item.context);
    let principles = verdict
        .forward
        .principles
        .iter()
        .map(|p| format!("{}: {} (favours {})", p.dimension, p.principle, p.favours))
        .collect();
    PreferencePair {
        id: derive_id("judge", &[judge, &ctx, &item.cand_1, &item.cand_2]),
        annotator: judge.to_string(),
        implicit: false,
        character: item.character.clone(),
        session: None,
        context: item.context.clone(),
        cand_1: item.cand_1.clone(),
        cand_2: item.cand_2.clone(),
        verdict: verdict.combined,
        cand_1_provenance: None,
        cand_2_provenance: None,
        principles,
        thinking_edit: None,
        rationale: Some(format!(
            "given order: {}; swapped order: {} (in given terms)",
            verdict_name(verdict.forward.better),
            verdict_name(verdict.reverse.better.swapped())
        )),
        created_at: now_rfc3339(),
    }
}

fn verdict_name(v: Verdict) -> &'static str {
    match v {
        Verdict::Cand1 => "cand_1",
        Verdict::Cand2 => "cand_2",
        Verdict::Tie => "tie",
        Verdict::BothBad => "both bad",
    }
}

fn print_verdict(n: usize, total: usize, item: &Item, verdict: &PairVerdict, principles: bool) {
    println!(
        "[{n}/{total}] {}: {} (given order {}, swapped order {})",
        item.character,
        verdict_name(verdict.combined),
        verdict_name(verdict.forward.better),
        verdict_name(verdict.reverse.better.swapped())
    );
    if principles {
        for p in &verdict.forward.principles {
            println!("    - [{}] {} → {}", p.dimension, p.principle, p.favours);
        }
    }
}

/// Prints the agreement with people and keeps the latest figures next to the
/// judge's log.
fn report_agreement(
    log: &std::path::Path,
    judge: &str,
    agreement: &HumanAgreement,
) -> anyhow::Result<()> {
    if agreement.n == 0 {
        println!("no human verdicts on these pairs yet: agreement with people is unknown");
        return Ok(());
    }
    let kappa = agreement
        .kappa
        .map_or("undefined".to_string(), |k| format!("{k:.3}"));
    println!(
        "agreement with people: {}/{} = {:.1}% (Cohen's kappa {kappa})",
        agreement.agreements,
        agreement.n,
        agreement.rate * 100.0
    );
    let figures = serde_json::json!({
        "judge": judge,
        "pairs_with_human_verdicts": agreement.n,
        "agreements": agreement.agreements,
        "rate": agreement.rate,
        "kappa": agreement.kappa,
        "measured_at": now_rfc3339(),
    });
    let path = log.with_extension("agreement.json");
    write_atomic(&path, format!("{figures:#}\n").as_bytes())?;
    Ok(())
}
