//! Fitting a conversation into the context window.
//!
//! When the prompt plus the reply budget would overflow `n_ctx`, the oldest
//! history turns are dropped (never the system prompt or the newest user turn,
//! which the prompt source does not offer for dropping). Dropping is done with
//! some slack so that the next few turns fit without dropping again: every drop
//! changes the start of the prompt and so invalidates the KV cache.

/// How a prompt was fitted into the context.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fit {
    /// Oldest droppable turns left out.
    pub skip: usize,
    /// Prompt length in tokens after dropping.
    pub prompt_tokens: usize,
    /// Tokens the reply may use (less than asked when even the shortest prompt leaves less room).
    pub max_new_tokens: usize,
}

/// The prompt does not fit even with every droppable turn removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoFit {
    pub prompt_tokens: usize,
    pub n_ctx: usize,
}

/// Chooses how many turns to drop. `count(skip)` is the prompt length with
/// `skip` turns dropped; it must not grow as `skip` grows.
pub fn fit_prompt(
    mut count: impl FnMut(usize) -> usize,
    droppable: usize,
    min_skip: usize,
    n_ctx: usize,
    max_new: usize,
) -> Result<Fit, NoFit> {
    let start = min_skip.min(droppable);
    let first = count(start);
    if first + max_new <= n_ctx {
        return Ok(Fit {
            skip: start,
            prompt_tokens: first,
            max_new_tokens: max_new,
        });
    }
    // Leave a quarter of the window free after a drop, when the turns allow it.
    let relaxed = n_ctx - n_ctx / 4;
    for limit in [relaxed, n_ctx] {
        if let Some((skip, tokens)) = smallest_skip(&mut count, start, droppable, limit, max_new) {
            return Ok(Fit {
                skip,
                prompt_tokens: tokens,
                max_new_tokens: max_new,
            });
        }
    }
    let shortest = count(droppable);
    if shortest < n_ctx {
        return Ok(Fit {
            skip: droppable,
            prompt_tokens: shortest,
            max_new_tokens: n_ctx - shortest,
        });
    }
    Err(NoFit {
        prompt_tokens: shortest,
        n_ctx,
    })
}

/// Binary search for the smallest skip in `lo..=hi` whose prompt fits `limit`.
fn smallest_skip(
    count: &mut impl FnMut(usize) -> usize,
    lo: usize,
    hi: usize,
    limit: usize,
    max_new: usize,
) -> Option<(usize, usize)> {
    let fits = |tokens: usize| tokens + max_new <= limit;
    let top = count(hi);
    if !fits(top) {
        return None;
    }
    let (mut lo, mut hi, mut best) = (lo, hi, (hi, top));
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        let tokens = count(mid);
        if fits(tokens) {
            best = (mid, tokens);
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    Some(best)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// 100 tokens of system prompt and newest turn, 50 per droppable turn.
    fn counter(turns: usize) -> impl FnMut(usize) -> usize {
        move |skip| 100 + 50 * (turns - skip)
    }

    #[test]
    fn fits_without_dropping() {
        let fit = fit_prompt(counter(4), 4, 0, 1000, 200).unwrap();
        assert_eq!(
            fit,
            Fit {
                skip: 0,
                prompt_tokens: 300,
                max_new_tokens: 200
            }
        );
    }

    #[test]
    fn drops_oldest_turns_with_slack() {
        // 100 + 50*20 = 1100 tokens; 1000-token window, 200 for the reply.
        let fit = fit_prompt(counter(20), 20, 0, 1000, 200).unwrap();
        // Relaxed limit is 750: prompt must be <= 550, so 9 turns stay.
        assert_eq!(fit.skip, 11);
        assert_eq!(fit.prompt_tokens, 550);
    }

    #[test]
    fn keeps_previous_skip_when_it_still_fits() {
        let fit = fit_prompt(counter(21), 21, 11, 1000, 200).unwrap();
        assert_eq!(fit.skip, 11);
    }

    #[test]
    fn shrinks_the_reply_budget_as_a_last_resort() {
        let fit = fit_prompt(counter(2), 2, 0, 150, 200).unwrap();
        assert_eq!(
            fit,
            Fit {
                skip: 2,
                prompt_tokens: 100,
                max_new_tokens: 50
            }
        );
    }

    #[test]
    fn refuses_a_prompt_longer_than_the_window() {
        let err = fit_prompt(counter(2), 2, 0, 90, 10).unwrap_err();
        assert_eq!(
            err,
            NoFit {
                prompt_tokens: 100,
                n_ctx: 90
            }
        );
    }
}
