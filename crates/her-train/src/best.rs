//! The best held-out loss of a run and early stopping, as Hugging Face's
//! trainer has them (`load_best_model_at_end` with `eval_loss`, and
//! `EarlyStoppingCallback(early_stopping_patience, early_stopping_threshold)`).

/// The held-out evaluations of a run so far.
#[derive(Debug, Clone, PartialEq)]
pub struct BestTracker {
    patience: u32,
    threshold: f64,
    /// (step, loss) of the lowest finite held-out loss.
    best: Option<(u64, f64)>,
    /// Evaluations since the last one that beat the best by more than
    /// `threshold`.
    stale: u32,
}

impl BestTracker {
    /// `patience` 0 never stops.
    pub fn new(patience: u32, threshold: f64) -> Self {
        Self {
            patience,
            threshold,
            best: None,
            stale: 0,
        }
    }

    /// Records the held-out loss at `step`; returns whether it is the best
    /// so far (the lowest; ties keep the earlier step). The evaluation
    /// before the first step measures the base model, not a result of the
    /// run, so it is no candidate and does not count toward patience.
    pub fn record(&mut self, step: u64, loss: f64) -> bool {
        if step == 0 {
            return false;
        }
        let improves = match self.best {
            None => loss.is_finite(),
            Some((_, best)) => best - loss > self.threshold,
        };
        self.stale = if improves { 0 } else { self.stale + 1 };
        let is_best = loss.is_finite() && self.best.is_none_or(|(_, best)| loss < best);
        if is_best {
            self.best = Some((step, loss));
        }
        is_best
    }

    pub fn best(&self) -> Option<(u64, f64)> {
        self.best
    }

    /// Whether `patience` evaluations in a row brought no improvement.
    pub fn should_stop(&self) -> bool {
        self.patience > 0 && self.stale >= self.patience
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_lowest_loss_and_ignores_the_base_model() {
        let mut t = BestTracker::new(0, 0.0);
        assert!(!t.record(0, 0.1), "step 0 is the base model");
        assert!(t.record(10, 2.0));
        assert!(t.record(20, 1.5));
        assert!(!t.record(30, 1.7));
        assert!(!t.record(40, 1.5), "a tie keeps the earlier step");
        assert!(!t.record(50, f64::NAN));
        assert_eq!(t.best(), Some((20, 1.5)));
        assert!(!t.should_stop(), "patience 0 never stops");
    }

    #[test]
    fn stops_after_patience_evaluations_without_a_large_enough_gain() {
        let mut t = BestTracker::new(2, 0.1);
        t.record(10, 2.0);
        // Better, but by less than the threshold: a new best that does not
        // reset patience (as Hugging Face's callback counts it).
        assert!(t.record(20, 1.95));
        assert!(!t.should_stop());
        assert!(!t.record(30, 2.5));
        assert!(t.should_stop());
        assert_eq!(t.best(), Some((20, 1.95)));

        let mut t = BestTracker::new(2, 0.1);
        t.record(10, 2.0);
        t.record(20, 2.2);
        assert!(t.record(30, 1.5), "a real gain resets the count");
        t.record(40, 1.6);
        assert!(!t.should_stop());
        t.record(50, 1.6);
        assert!(t.should_stop());
    }
}
