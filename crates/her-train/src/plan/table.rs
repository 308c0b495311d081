//! The plan as the text `her train plan`, `--plan` and a refused run print.

use std::fmt;

use crate::model::BaseMode;

use super::fit::{Budget, FIT_SHARE, Suggestions, Verdict, suggestion_lines, suggestions, verdict};
use super::formula::{Plan, PlanSettings, fmt_bytes, plan};
use super::shape::PlanShape;

/// A plan with its budget, verdict and suggestions.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanReport {
    pub shape: PlanShape,
    pub settings: PlanSettings,
    pub plan: Plan,
    pub budget: Budget,
    pub verdict: Verdict,
    /// Empty unless the plan does not fit.
    pub suggestions: Suggestions,
}

impl PlanReport {
    pub fn new(shape: PlanShape, settings: PlanSettings, runtime: u64, budget: Budget) -> Self {
        let p = plan(&shape, &settings, runtime);
        let v = verdict(&p, &budget);
        let suggestions = match v {
            Verdict::DoesNotFit => suggestions(&shape, &settings, runtime, &budget),
            _ => Suggestions::Single(Vec::new()),
        };
        Self {
            shape,
            settings,
            plan: p,
            budget,
            verdict: v,
            suggestions,
        }
    }

    /// One line: "qwen3-32b b1 t4096 r16 ckpt bf16 quantized: 27.4 GiB".
    pub fn settings_line(&self) -> String {
        let s = &self.settings;
        let targets: Vec<&str> = s.targets.iter().map(|t| t.short_name()).collect();
        format!(
            "batch {} × seq {} · rank {} on {} · {} · checkpointing {} · base {} · {}",
            s.batch,
            s.seq,
            s.rank,
            targets.join(","),
            s.dtype.as_str(),
            if s.checkpointing { "on" } else { "off" },
            match s.base {
                BaseMode::Quantized => "quantized",
                BaseMode::Dequantized => "dequantized",
            },
            s.device.as_str()
        )
    }
}

impl fmt::Display for PlanReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "memory plan for {} (predicted peak)", self.shape.name)?;
        writeln!(f, "  {}", self.settings_line())?;
        for t in &self.plan.terms {
            writeln!(f, "  {:<26}{:>11}   {}", t.name, fmt_bytes(t.bytes), t.note)?;
        }
        writeln!(f, "  {:<26}{:>11}", "total", fmt_bytes(self.plan.total()))?;
        let budget = self.budget.bytes.map_or("unknown".into(), fmt_bytes);
        writeln!(
            f,
            "  {:<26}{:>11}   {}",
            "budget", budget, self.budget.source
        )?;
        let share = (FIT_SHARE * 100.0).round();
        let verdict = match self.verdict {
            Verdict::Fits => format!("fits (within {share}% of the budget)"),
            Verdict::DoesNotFit => format!("does NOT fit (over {share}% of the budget)"),
            Verdict::Unknown => "cannot tell: the budget is unknown".into(),
        };
        write!(f, "  {verdict}")?;
        for line in suggestion_lines(&self.suggestions, &self.budget) {
            write!(f, "\n  {line}")?;
        }
        Ok(())
    }
}
