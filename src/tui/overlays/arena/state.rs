//! A blind A/B round in the chat: two candidates for the same context (two
//! seeds, two temperatures, base vs adapter, or two adapters), written one
//! after the other, shown side by side in random order; the annotator picks
//! left / right / tie / both bad, then sees which was which.

use std::path::PathBuf;

use crate::config::SamplingConfig;
use crate::tui::action::Action;
use crate::tui::app::ReplyTarget;
use her_core::prefs::Verdict;
use her_engine::Finished;

/// Which adapter a candidate is written with.
#[derive(Debug, Clone, PartialEq)]
pub enum AdapterUse {
    /// Whatever the chat has loaded now.
    Current,
    /// No adapter: the base model.
    Off,
    Load {
        path: PathBuf,
        scale: f32,
    },
}

/// How one candidate is produced.
#[derive(Debug, Clone, PartialEq)]
pub struct Contender {
    /// Revealed after the choice: "seed 1234", "adapter persona.gguf"…
    pub label: String,
    pub sampling: SamplingConfig,
    pub adapter: AdapterUse,
}

/// What `/arena` was asked to compare.
#[derive(Debug, Clone, PartialEq)]
pub enum ArenaMode {
    /// Same settings, two seeds.
    Seeds,
    /// Current temperature vs this one.
    Temperature(f32),
    /// The loaded adapter vs the base model.
    Base,
    /// The current model state vs this adapter.
    Adapter(PathBuf),
}

impl ArenaMode {
    /// Parses `/arena` arguments; no arguments picks base-vs-adapter when an
    /// adapter is loaded, else two seeds.
    pub fn parse(args: &[&str], adapter_loaded: bool) -> Result<Self, String> {
        match args {
            [] if adapter_loaded => Ok(Self::Base),
            [] | ["seeds"] => Ok(Self::Seeds),
            ["base"] if adapter_loaded => Ok(Self::Base),
            ["base"] => Err("/arena base: no adapter is loaded (use /adapter PATH first)".into()),
            ["temp" | "temperature", t] => match t.parse::<f32>() {
                Ok(t) if (0.0..=5.0).contains(&t) => Ok(Self::Temperature(t)),
                _ => Err(format!("/arena temp: '{t}' is not a temperature in 0..=5")),
            },
            ["adapter", path] => Ok(Self::Adapter(PathBuf::from(path))),
            _ => Err(ARENA_USAGE.into()),
        }
    }

    /// The two contenders, from the chat's sampling settings; `entropy`
    /// picks fresh seeds.
    pub fn contenders(&self, sampling: &SamplingConfig, entropy: u64) -> [Contender; 2] {
        let seed_a = (entropy as u32) | 1;
        let seed_b = ((entropy >> 32) as u32).wrapping_add(7919) | 1;
        let with_seed = |seed: u32| SamplingConfig {
            seed,
            ..sampling.clone()
        };
        let current = |label: String, seed: u32| Contender {
            label,
            sampling: with_seed(seed),
            adapter: AdapterUse::Current,
        };
        match self {
            Self::Seeds => [
                current(format!("seed {seed_a}"), seed_a),
                current(format!("seed {seed_b}"), seed_b),
            ],
            Self::Temperature(t) => [
                current(format!("temperature {}", sampling.temperature), seed_a),
                Contender {
                    label: format!("temperature {t}"),
                    sampling: SamplingConfig {
                        temperature: *t,
                        ..with_seed(seed_b)
                    },
                    adapter: AdapterUse::Current,
                },
            ],
            Self::Base => [
                current("the loaded adapter".into(), seed_a),
                Contender {
                    label: "the base model (no adapter)".into(),
                    sampling: with_seed(seed_b),
                    adapter: AdapterUse::Off,
                },
            ],
            Self::Adapter(path) => [
                current("the current model".into(), seed_a),
                Contender {
                    label: format!("adapter {}", path.display()),
                    sampling: with_seed(seed_b),
                    adapter: AdapterUse::Load {
                        path: path.clone(),
                        scale: 1.0,
                    },
                },
            ],
        }
    }
}

pub const ARENA_USAGE: &str =
    "/arena [seeds | temp T | base | adapter PATH]: two blind candidates for the next reply";

/// One candidate's output.
#[derive(Debug, Clone, PartialEq)]
pub struct Output {
    pub raw: String,
    pub finished: Finished,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Phase {
    /// Writing candidate `0` or `1` (text hidden: its order would unblind it).
    Writing(usize),
    Choosing,
    /// The choice was made and saved; identities are shown.
    Revealed(Verdict),
}

#[derive(Debug, Clone, PartialEq)]
pub struct ArenaRound {
    /// Where the kept candidate goes.
    pub target: ReplyTarget,
    pub speaker: String,
    pub contenders: [Contender; 2],
    pub outputs: Vec<Output>,
    /// The raw text of the candidate being written (prefill first).
    pub writing: String,
    /// Index of the candidate shown on the left.
    pub shown_first: usize,
    pub phase: Phase,
    /// The adapter the chat had before the round, restored after it.
    pub restore: Option<(PathBuf, f32)>,
}

/// What a key does in the arena.
#[derive(Debug, Clone, PartialEq)]
pub enum ArenaKey {
    Nothing,
    /// The verdict, in generation order (not the order shown).
    Decide(Verdict),
    /// Leave: during writing this cancels the round.
    Close,
}

impl ArenaRound {
    /// The candidate indices in the order shown (left, right).
    pub fn shown(&self) -> [usize; 2] {
        [self.shown_first, 1 - self.shown_first]
    }

    pub fn key(&self, action: &Action) -> ArenaKey {
        let [left, right] = self.shown();
        let side = |i: usize| {
            if i == 0 {
                Verdict::Cand1
            } else {
                Verdict::Cand2
            }
        };
        match (&self.phase, action) {
            (_, Action::CloseOverlay | Action::Quit) => ArenaKey::Close,
            (Phase::Revealed(_), Action::Submit | Action::ListChoose) => ArenaKey::Close,
            (Phase::Choosing, Action::Insert('a') | Action::CursorLeft) => {
                ArenaKey::Decide(side(left))
            }
            (Phase::Choosing, Action::Insert('b') | Action::CursorRight) => {
                ArenaKey::Decide(side(right))
            }
            (Phase::Choosing, Action::Insert('t' | '=')) => ArenaKey::Decide(Verdict::Tie),
            (Phase::Choosing, Action::Insert('x')) => ArenaKey::Decide(Verdict::BothBad),
            _ => ArenaKey::Nothing,
        }
    }

    /// The candidate kept in the chat: the winner, the left one on a tie,
    /// none when both are bad.
    pub fn kept(&self, verdict: Verdict) -> Option<usize> {
        match verdict {
            Verdict::Cand1 => Some(0),
            Verdict::Cand2 => Some(1),
            Verdict::Tie => Some(self.shown_first),
            Verdict::BothBad => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round(shown_first: usize) -> ArenaRound {
        let sampling = SamplingConfig::default();
        ArenaRound {
            target: ReplyTarget::After(None),
            speaker: "E".into(),
            contenders: ArenaMode::Seeds.contenders(&sampling, 42),
            outputs: Vec::new(),
            writing: String::new(),
            shown_first,
            phase: Phase::Choosing,
            restore: None,
        }
    }

    #[test]
    fn picks_map_from_screen_sides_to_generation_order() {
        let swapped = round(1);
        assert_eq!(
            swapped.key(&Action::Insert('a')),
            ArenaKey::Decide(Verdict::Cand2)
        );
        assert_eq!(
            swapped.key(&Action::CursorRight),
            ArenaKey::Decide(Verdict::Cand1)
        );
        let straight = round(0);
        assert_eq!(
            straight.key(&Action::Insert('a')),
            ArenaKey::Decide(Verdict::Cand1)
        );
        assert_eq!(
            straight.key(&Action::Insert('x')),
            ArenaKey::Decide(Verdict::BothBad)
        );
        assert_eq!(swapped.kept(Verdict::Tie), Some(1));
        assert_eq!(swapped.kept(Verdict::BothBad), None);
    }

    #[test]
    fn contenders_differ_in_exactly_what_is_compared() {
        let sampling = SamplingConfig::default();
        let [a, b] = ArenaMode::Seeds.contenders(&sampling, 0xdead_beef_0000_0001);
        assert_ne!(a.sampling.seed, b.sampling.seed);
        assert_eq!(a.sampling.temperature, b.sampling.temperature);
        let [a, b] = ArenaMode::Temperature(1.3).contenders(&sampling, 5);
        assert_eq!(
            (a.sampling.temperature, b.sampling.temperature),
            (sampling.temperature, 1.3)
        );
        let [a, b] = ArenaMode::Base.contenders(&sampling, 5);
        assert_eq!(
            (a.adapter, b.adapter),
            (AdapterUse::Current, AdapterUse::Off)
        );
    }

    #[test]
    fn arguments_parse() {
        assert_eq!(ArenaMode::parse(&[], false), Ok(ArenaMode::Seeds));
        assert_eq!(ArenaMode::parse(&[], true), Ok(ArenaMode::Base));
        assert!(ArenaMode::parse(&["base"], false).is_err());
        assert_eq!(
            ArenaMode::parse(&["temp", "1.2"], false),
            Ok(ArenaMode::Temperature(1.2))
        );
        assert!(ArenaMode::parse(&["temp", "hot"], false).is_err());
        assert!(ArenaMode::parse(&["what"], false).is_err());
    }
}
