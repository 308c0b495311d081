//! A method's job, and the one driver that runs every method's job on the
//! training loop.

use std::sync::atomic::AtomicBool;

use super::objective::Objective;
use super::{OnProgress, ReportOf, RunSpec, TrainLoop};

/// A method's job: the run it makes (a [`RunSpec`]) plus the method's own
/// options, from which it makes its objective.
pub trait Job {
    /// The method's objective (RL's borrows the job: its engines).
    type Objective<'j>: Objective
    where
        Self: 'j;
    /// What the method reports when the run ends.
    type Report;

    fn spec(&self) -> &RunSpec;

    fn objective(&self) -> Result<Self::Objective<'_>, ErrorOf<'_, Self>>;

    /// The method's report from the loop's and the objective's.
    fn report<'j>(
        objective: Self::Objective<'j>,
        run: ReportOf<Self::Objective<'j>>,
    ) -> Self::Report;
}

/// One item of a job's data.
pub type ItemOf<'j, J> = <<J as Job>::Objective<'j> as Objective>::Item;
/// A job's error.
pub type ErrorOf<'j, J> = <<J as Job>::Objective<'j> as Objective>::Error;

/// Runs `job` on `items`; `stop` raised (ctrl+c) saves a checkpoint after
/// the current step and ends the run.
pub fn run<'j, J: Job>(
    job: &'j J,
    items: Vec<ItemOf<'j, J>>,
    stop: &AtomicBool,
    on_progress: &mut OnProgress<'_, J::Objective<'j>>,
) -> Result<J::Report, ErrorOf<'j, J>> {
    let mut objective = job.objective()?;
    let report = TrainLoop::new(job.spec(), stop).run(&mut objective, items, on_progress)?;
    Ok(J::report(objective, report))
}
