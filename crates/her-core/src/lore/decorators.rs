//! Character Card V3 decorators: `@@name value` lines at the top of an
//! entry's content that change how it activates or where it goes.
//!
//! Parsing follows SillyTavern's `parseDecorators` (only when the content
//! starts with `@@`; a `@@@` line is a fallback tried only after a decorator
//! that was not understood) and the V3 spec for values (comma-separated,
//! first occurrence wins). SillyTavern itself implements only `@@activate`
//! and `@@dont_activate`; the others here map onto its options as the V3
//! spec and RisuAI define them.

use super::model::{MAX_INSERT_DEPTH, MAX_SCAN_DEPTH, Position, Role};

/// What an entry's decorators ask for; `None` leaves the entry's own option.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Decorators {
    /// `@@activate`: active without keys.
    pub activate: bool,
    /// `@@dont_activate`: never active (beats constant and sticky).
    pub dont_activate: bool,
    /// `@@position before_desc|after_desc|personality|scenario|pt_NAME`.
    pub position: Option<Position>,
    /// The outlet of `@@position pt_NAME`.
    pub outlet: Option<String>,
    /// `@@depth N` (at depth N unless `@@position` says otherwise); `@@end` is depth 0.
    pub depth: Option<u32>,
    /// `@@role system|user|assistant`.
    pub role: Option<Role>,
    /// `@@scan_depth N`.
    pub scan_depth: Option<u32>,
    /// `@@probability N` (RisuAI).
    pub probability: Option<f64>,
    /// `@@match_full_word` / `@@match_partial_word` (RisuAI).
    pub match_whole_words: Option<bool>,
    /// `@@additional_keys a,b`: one of each list must match too.
    pub additional_keys: Vec<Vec<String>>,
    /// `@@exclude_keys a,b`: none of these may match.
    pub exclude_keys: Vec<String>,
    /// `@@activate_only_after N`: only once N replies exist.
    pub activate_only_after: Option<u32>,
    /// `@@activate_only_every N`: only when the reply count is a multiple of N.
    pub activate_only_every: Option<u32>,
    /// Lines that took effect, for explanations.
    pub applied: Vec<String>,
    /// Lines not understood (or not reached), dropped from the content.
    pub ignored: Vec<String>,
}

impl Decorators {
    pub fn is_empty(&self) -> bool {
        self.applied.is_empty() && self.ignored.is_empty()
    }
}

/// Splits `content` into its decorators and the text that goes into the
/// prompt. Content made only of decorator lines leaves no text (SillyTavern
/// would keep the decorator lines as the text, which is not their intent).
pub fn parse(content: &str) -> (Decorators, &str) {
    let mut d = Decorators::default();
    if !content.starts_with("@@") {
        return (d, content);
    }
    let mut fallback = false;
    let mut offset = 0;
    for line in content.split('\n') {
        if !line.starts_with("@@") {
            return (d, &content[offset..]);
        }
        offset += line.len() + 1;
        let text = line.trim_end();
        let decorator = match text.strip_prefix("@@@") {
            Some(_) if !fallback => {
                d.ignored.push(text.to_string());
                continue;
            }
            Some(rest) => rest,
            None => &text[2..],
        };
        if apply(&mut d, decorator) {
            d.applied.push(text.to_string());
            fallback = false;
        } else {
            d.ignored.push(text.to_string());
            fallback = true;
        }
    }
    (d, "")
}

/// Applies one decorator (without its `@@`); false when unknown or invalid.
fn apply(d: &mut Decorators, decorator: &str) -> bool {
    let (name, value) = match decorator.split_once(char::is_whitespace) {
        Some((name, value)) => (name, value.trim()),
        None => (decorator, ""),
    };
    let number = |max: u32| value.parse::<u32>().ok().filter(|n| *n <= max);
    let list = || -> Vec<String> {
        value
            .split(',')
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .map(str::to_string)
            .collect()
    };
    match name {
        "activate" => d.activate = true,
        "dont_activate" => d.dont_activate = true,
        "depth" => match number(MAX_INSERT_DEPTH) {
            Some(n) => {
                d.depth.get_or_insert(n);
            }
            None => return false,
        },
        "end" => {
            d.depth.get_or_insert(0);
        }
        "role" => match value {
            "system" => {
                d.role.get_or_insert(Role::System);
            }
            "user" => {
                d.role.get_or_insert(Role::User);
            }
            "assistant" => {
                d.role.get_or_insert(Role::Assistant);
            }
            _ => return false,
        },
        "position" => {
            let (position, outlet) = match value {
                "before_desc" => (Position::BeforeChar, None),
                "after_desc" | "personality" => (Position::AfterChar, None),
                "scenario" => (Position::Scenario, None),
                other => match other.strip_prefix("pt_") {
                    Some(name) if !name.is_empty() => (Position::Outlet, Some(name.to_string())),
                    _ => return false,
                },
            };
            if d.position.is_none() {
                d.position = Some(position);
                d.outlet = outlet;
            }
        }
        "scan_depth" => match number(MAX_SCAN_DEPTH) {
            Some(n) => {
                d.scan_depth.get_or_insert(n);
            }
            None => return false,
        },
        "probability" => match value.parse::<f64>() {
            Ok(p) if (0.0..=100.0).contains(&p) => {
                d.probability.get_or_insert(p);
            }
            _ => return false,
        },
        "match_full_word" => {
            d.match_whole_words.get_or_insert(true);
        }
        "match_partial_word" => {
            d.match_whole_words.get_or_insert(false);
        }
        "additional_keys" => {
            let keys = list();
            if keys.is_empty() {
                return false;
            }
            d.additional_keys.push(keys);
        }
        "exclude_keys" => {
            let keys = list();
            if keys.is_empty() {
                return false;
            }
            d.exclude_keys.extend(keys);
        }
        "activate_only_after" => match number(u32::MAX) {
            Some(n) => {
                d.activate_only_after.get_or_insert(n);
            }
            None => return false,
        },
        "activate_only_every" => match number(u32::MAX).filter(|n| *n > 0) {
            Some(n) => {
                d.activate_only_every.get_or_insert(n);
            }
            None => return false,
        },
        _ => return false,
    }
    true
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn content_without_decorators_is_untouched() {
        let (d, rest) = parse("A tower.\n@@depth 2");
        assert!(d.is_empty());
        assert_eq!(rest, "A tower.\n@@depth 2");
    }

    #[test]
    fn decorators_are_read_and_stripped() {
        let (d, rest) =
            parse("@@depth 2\n@@role assistant\n@@scan_depth 5\nThe tower.\nIt is old.");
        assert_eq!(d.depth, Some(2));
        assert_eq!(d.role, Some(Role::Assistant));
        assert_eq!(d.scan_depth, Some(5));
        assert_eq!(rest, "The tower.\nIt is old.");
        assert_eq!(d.applied.len(), 3);
    }

    #[test]
    fn first_occurrence_wins_and_position_is_kept_with_its_outlet() {
        let (d, _) = parse("@@depth 1\n@@depth 7\n@@position pt_lore\n@@position scenario\nx");
        assert_eq!(d.depth, Some(1));
        assert_eq!(d.position, Some(Position::Outlet));
        assert_eq!(d.outlet.as_deref(), Some("lore"));
    }

    #[test]
    fn fallbacks_are_tried_only_after_an_unknown_decorator() {
        let (d, rest) = parse("@@frobnicate 3\n@@@activate\ntext");
        assert!(d.activate);
        assert_eq!(d.ignored, ["@@frobnicate 3"]);
        assert_eq!(rest, "text");
        let (d, _) = parse("@@dont_activate\n@@@activate\ntext");
        assert!(d.dont_activate && !d.activate);
        assert_eq!(d.ignored, ["@@@activate"]);
        // An invalid value is "not understood" too.
        let (d, _) = parse("@@depth many\n@@@depth 3\nx");
        assert_eq!(d.depth, Some(3));
    }

    #[test]
    fn key_lists_and_only_decorators() {
        let (d, rest) =
            parse("@@additional_keys sword, shield\n@@additional_keys king\n@@exclude_keys dream");
        assert_eq!(
            d.additional_keys,
            vec![
                vec!["sword".to_string(), "shield".into()],
                vec!["king".into()]
            ]
        );
        assert_eq!(d.exclude_keys, ["dream"]);
        assert_eq!(rest, "");
        let (d, _) = parse("@@activate_only_every 0\n@@activate_only_after 2\nx");
        assert_eq!(d.activate_only_every, None);
        assert_eq!(d.activate_only_after, Some(2));
    }
}
