//! The memory plan: a run's predicted peak memory, term by term, before
//! anything loads; whether it fits the device; and the nearby settings
//! that would. `her train plan`, `--plan` on every train command, and the
//! loop's refusal of a run that does not fit all print [`PlanReport`].
//!
//! Pure functions of the model's shape (a GGUF header or a named shape)
//! and the settings; the device's free memory is read in [`device`].

pub mod device;
mod fit;
mod formula;
mod run;
mod shape;
mod table;
#[cfg(test)]
mod tests;

pub use fit::{Budget, FIT_SHARE, Suggestion, Suggestions, Verdict, suggestions, verdict};
pub use formula::{
    ACTIVATIONS, BASE, CUDA_CONTEXT_BYTES, ENGINE, HEAD, LORA, Plan, PlanDevice, PlanDtype,
    PlanSettings, RUNTIME, TILE, Term, attention_kept_bytes, fmt_bytes, layer_kept_bytes,
    lora_parameters, plan,
};
pub use run::{check_run, run_report, run_settings, runtime_bytes};
pub use shape::{NAMED_SHAPES, PlanShape};
pub use table::PlanReport;
