//! Whether a plan fits its device, and the nearby settings that would.

use crate::lora::Target;
use crate::model::BaseMode;

use super::formula::{Plan, PlanDevice, PlanDtype, PlanSettings, fmt_bytes, plan};
use super::shape::PlanShape;

/// A run must stay under this share of the budget: allocator slack and
/// what the formulas leave out.
pub const FIT_SHARE: f64 = 0.95;

/// The memory a run may use.
#[derive(Debug, Clone, PartialEq)]
pub struct Budget {
    /// `None`: not known (no CUDA device, or no /proc/meminfo).
    pub bytes: Option<u64>,
    /// Where the figure comes from, for the table.
    pub source: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Fits,
    DoesNotFit,
    /// The budget is unknown.
    Unknown,
}

pub fn verdict(plan: &Plan, budget: &Budget) -> Verdict {
    match budget.bytes {
        None => Verdict::Unknown,
        Some(b) if plan.total() as f64 <= FIT_SHARE * b as f64 => Verdict::Fits,
        Some(_) => Verdict::DoesNotFit,
    }
}

/// A change of settings and the plan's total with it.
#[derive(Debug, Clone, PartialEq)]
pub struct Suggestion {
    /// What to set, e.g. "train.activation_checkpointing = true".
    pub change: String,
    pub total: u64,
}

/// What would fit, most useful first.
#[derive(Debug, Clone, PartialEq)]
pub enum Suggestions {
    /// Each of these changes alone fits.
    Single(Vec<Suggestion>),
    /// No single change fits; these together do.
    Combined(Suggestion),
    /// Nothing near fits: the smallest plan tried, and what it needs.
    Nothing { smallest: u64, base: u64 },
}

/// One step towards less memory: a label and the changed settings, or
/// `None` when it does not apply (already on, or at its floor).
type Step = fn(&PlanSettings) -> Option<(String, PlanSettings)>;

const MIN_SEQ: usize = 128;
/// The first [`STEPS`] cost only time or precision, not what is learned.
const FREE_STEPS: usize = 3;
const MIN_RANK: usize = 4;

/// The changes in the order a user would try them: the free ones first
/// (checkpointing costs time only, bf16 on a GPU and the quantized base
/// barely change the result), then smaller batches, rows, rank, targets.
const STEPS: [Step; 7] = [
    |s| {
        (!s.checkpointing).then(|| {
            let mut n = s.clone();
            n.checkpointing = true;
            ("train.activation_checkpointing = true".into(), n)
        })
    },
    |s| {
        (s.device == PlanDevice::Cuda && s.dtype == PlanDtype::F32).then(|| {
            let mut n = s.clone();
            n.dtype = PlanDtype::Bf16;
            ("bf16 activations (train.dtype = \"bf16\")".into(), n)
        })
    },
    |s| {
        (s.base == BaseMode::Dequantized).then(|| {
            let mut n = s.clone();
            n.base = BaseMode::Quantized;
            ("train.base = \"quantized\"".into(), n)
        })
    },
    |s| {
        (s.batch > 1).then(|| {
            let mut n = s.clone();
            n.batch = s.batch / 2;
            (
                format!(
                    "train.batch_size = {} (raise train.grad_accum to keep the step)",
                    n.batch
                ),
                n,
            )
        })
    },
    |s| {
        (s.seq / 2 >= MIN_SEQ).then(|| {
            let mut n = s.clone();
            n.seq = s.seq / 2;
            (
                format!(
                    "train.max_seq_len = {} (longer samples are left out)",
                    n.seq
                ),
                n,
            )
        })
    },
    |s| {
        (s.rank / 2 >= MIN_RANK).then(|| {
            let mut n = s.clone();
            n.rank = s.rank / 2;
            (format!("train.rank = {}", n.rank), n)
        })
    },
    |s| {
        let attention = [Target::Q, Target::K, Target::V, Target::O];
        (s.targets.iter().any(|t| !attention.contains(t))).then(|| {
            let mut n = s.clone();
            n.targets.retain(|t| attention.contains(t));
            if n.targets.is_empty() {
                n.targets = vec![Target::Q, Target::V];
            }
            ("train.targets = attention only".into(), n)
        })
    },
];

/// Nearby settings that fit `budget`. Single changes first; when none
/// fits alone, the steps are taken together in order (halvings repeated)
/// until the plan fits, and named together.
pub fn suggestions(
    shape: &PlanShape,
    settings: &PlanSettings,
    runtime: u64,
    budget: &Budget,
) -> Suggestions {
    let Some(limit) = budget.bytes else {
        return Suggestions::Single(Vec::new());
    };
    let fits = |total: u64| total as f64 <= FIT_SHARE * limit as f64;
    let total_of = |s: &PlanSettings| plan(shape, s, runtime).total();
    let singles: Vec<Suggestion> = STEPS
        .iter()
        .filter_map(|step| step(settings))
        .map(|(change, s)| Suggestion {
            change,
            total: total_of(&s),
        })
        .filter(|s| fits(s.total))
        .collect();
    if !singles.is_empty() {
        return Suggestions::Single(singles);
    }
    // Together: the free changes first, then one halving of each of the
    // others in turn (so no one setting shrinks alone), until it fits.
    let mut current = settings.clone();
    let mut changes: Vec<String> = Vec::new();
    let (free, shrinking) = STEPS.split_at(FREE_STEPS);
    let mut take = |current: &mut PlanSettings, step: &Step| -> Option<Option<Suggestion>> {
        let (change, next) = step(current)?;
        *current = next;
        // A repeated halving names only its last value.
        let key = change.split(" = ").next().unwrap_or("").to_owned();
        changes.retain(|c| !c.starts_with(&key));
        changes.push(change);
        let total = total_of(current);
        Some(fits(total).then(|| Suggestion {
            change: changes.join(", "),
            total,
        }))
    };
    for step in free {
        if let Some(Some(done)) = take(&mut current, step) {
            return Suggestions::Combined(done);
        }
    }
    loop {
        let mut any = false;
        for step in shrinking {
            match take(&mut current, step) {
                Some(Some(done)) => return Suggestions::Combined(done),
                Some(None) => any = true,
                None => {}
            }
        }
        if !any {
            break;
        }
    }
    let smallest = plan(shape, &current, runtime);
    Suggestions::Nothing {
        smallest: smallest.total(),
        base: smallest.term(super::formula::BASE).unwrap_or(0),
    }
}

/// The suggestions as lines for the table.
pub fn suggestion_lines(suggestions: &Suggestions, budget: &Budget) -> Vec<String> {
    let budget = budget.bytes.map_or("?".into(), fmt_bytes);
    match suggestions {
        Suggestions::Single(list) if list.is_empty() => Vec::new(),
        Suggestions::Single(list) => {
            let mut lines = vec!["each of these fits:".to_owned()];
            lines.extend(
                list.iter()
                    .map(|s| format!("  {} → {}", s.change, fmt_bytes(s.total))),
            );
            lines
        }
        Suggestions::Combined(s) => vec![
            "no single change fits; together these do:".to_owned(),
            format!("  {} → {}", s.change, fmt_bytes(s.total)),
        ],
        Suggestions::Nothing { smallest, base } => vec![format!(
            "nothing near these settings fits {budget}: the smallest tried needs {} (base weights \
             alone {}); use a smaller model, a smaller quantization, or a device with more memory",
            fmt_bytes(*smallest),
            fmt_bytes(*base)
        )],
    }
}
