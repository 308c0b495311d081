//! The calibration set: short scenes written by us in HER's format, each a
//! clean transcript and variants with one planted flaw. A variant replaces
//! one or two turns of the clean transcript, so each (clean, flawed) pair
//! differs only where the flaw was planted.
//!
//! One TOML file per scene (see `assets/eval/calibration/`):
//! ```toml
//! title = "…"
//! book = "…"
//! scenario = "…"
//! [[character]]
//! name = "…"
//! profile = "…"
//! [[turn]]
//! speaker = "…"
//! text = "<system_thinking>…</system_thinking>Name: …"
//! [[flawed]]
//! kind = "out_of_character"   # see FlawKind
//! flaw = "what was planted"
//! [[flawed.replace]]
//! turn = 3                    # 1-based
//! text = "…"
//! ```

use her_core::fsutil::IoError;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::EvalError;
use crate::score::Dimension;
use her_core::character::ENVIRONMENT;

/// The planted flaws, each in the dimension a judge should see it in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FlawKind {
    /// A reply the character would never give.
    OutOfCharacter,
    /// A line that contradicts the scenario or an earlier line.
    Contradiction,
    /// A flat, robotic reply.
    Robotic,
    /// The plot goes nowhere.
    Stalled,
    /// The character talks in another character's voice.
    OtherVoice,
    /// A turn that says again what was already said.
    Repetition,
}

impl FlawKind {
    /// The name in calibration files ("out_of_character").
    pub fn key(self) -> &'static str {
        match self {
            FlawKind::OutOfCharacter => "out_of_character",
            FlawKind::Contradiction => "contradiction",
            FlawKind::Robotic => "robotic",
            FlawKind::Stalled => "stalled",
            FlawKind::OtherVoice => "other_voice",
            FlawKind::Repetition => "repetition",
        }
    }

    pub fn dimension(self) -> Dimension {
        match self {
            FlawKind::OutOfCharacter | FlawKind::OtherVoice => Dimension::CharacterFidelity,
            FlawKind::Contradiction => Dimension::StorylineConsistency,
            FlawKind::Robotic | FlawKind::Repetition => Dimension::Anthropomorphism,
            FlawKind::Stalled => Dimension::StorylineQuality,
        }
    }
}

/// A transcript: (speaker, raw text) in order.
pub type Lines = Vec<(String, String)>;

/// One clean transcript with a planted flaw.
#[derive(Debug, Clone, PartialEq)]
pub struct FlawedVariant {
    pub kind: FlawKind,
    /// What was planted, for the report.
    pub flaw: String,
    pub lines: Lines,
    /// The replaced turns (0-based).
    pub turns: Vec<usize>,
}

/// One calibration scene.
#[derive(Debug, Clone, PartialEq)]
pub struct CalibrationScene {
    /// The file stem.
    pub id: String,
    pub title: String,
    pub book: String,
    pub scenario: String,
    /// (name, profile).
    pub characters: Vec<(String, String)>,
    pub clean: Lines,
    pub variants: Vec<FlawedVariant>,
}

impl CalibrationScene {
    /// Turns by characters (the narrator's do not count), as the score's
    /// allowance counts them.
    pub fn actor_turns(lines: &Lines) -> usize {
        lines.iter().filter(|(s, _)| s != ENVIRONMENT).count()
    }
}

/// The whole set and where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct CalibrationSet {
    /// A folder, or "built-in".
    pub source: String,
    /// sha256 over the files' names and texts, in order.
    pub sha256: String,
    pub scenes: Vec<CalibrationScene>,
}

impl CalibrationSet {
    /// (clean, flawed) pairs per dimension, in [`Dimension::ALL`] order.
    pub fn pairs_per_dimension(&self) -> [usize; 4] {
        let mut counts = [0; 4];
        for variant in self.scenes.iter().flat_map(|s| &s.variants) {
            counts[variant.kind.dimension().index()] += 1;
        }
        counts
    }
}

/// The set shipped in `assets/eval/calibration/`, compiled in so a studio
/// without the folder still has it.
const BUILT_IN: &[(&str, &str)] = &[
    (
        "01-pride-and-prejudice.toml",
        include_str!("../../../../assets/eval/calibration/01-pride-and-prejudice.toml"),
    ),
    (
        "02-great-gatsby.toml",
        include_str!("../../../../assets/eval/calibration/02-great-gatsby.toml"),
    ),
    (
        "03-sherlock-holmes.toml",
        include_str!("../../../../assets/eval/calibration/03-sherlock-holmes.toml"),
    ),
    (
        "04-frankenstein.toml",
        include_str!("../../../../assets/eval/calibration/04-frankenstein.toml"),
    ),
    (
        "05-jane-eyre.toml",
        include_str!("../../../../assets/eval/calibration/05-jane-eyre.toml"),
    ),
    (
        "06-moby-dick.toml",
        include_str!("../../../../assets/eval/calibration/06-moby-dick.toml"),
    ),
    (
        "07-alice.toml",
        include_str!("../../../../assets/eval/calibration/07-alice.toml"),
    ),
    (
        "08-dracula.toml",
        include_str!("../../../../assets/eval/calibration/08-dracula.toml"),
    ),
];

/// The folder of the shipped set inside a studio.
pub const SET_DIR: &str = "assets/eval/calibration";
/// A calibration file larger than this is refused unread.
const MAX_FILE_BYTES: u64 = 1 << 20;

/// The compiled-in set.
pub fn built_in() -> Result<CalibrationSet, EvalError> {
    let files: Vec<(String, String)> = BUILT_IN
        .iter()
        .map(|(name, text)| ((*name).to_string(), (*text).to_string()))
        .collect();
    parse_set("built-in", &files, Path::new(SET_DIR))
}

/// The `.toml` files of `dir`, by name.
pub fn from_dir(dir: &Path) -> Result<CalibrationSet, EvalError> {
    let paths = her_core::fsutil::toml_files(dir)
        .map_err(IoError::at("read the calibration folder", dir))?;
    let mut files = Vec::new();
    for path in paths {
        let meta = std::fs::metadata(&path).map_err(IoError::at("read", &path))?;
        let size = meta.len();
        if !meta.is_file() {
            return Err(EvalError::BadFile {
                path,
                message: "not a regular file".into(),
            });
        }
        if size > MAX_FILE_BYTES {
            return Err(EvalError::BadFile {
                path,
                message: format!(
                    "{size} bytes; a calibration scene is at most {MAX_FILE_BYTES} bytes"
                ),
            });
        }
        let text = her_core::fsutil::read::text(&path, her_core::fsutil::read::Kind::Character)?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        files.push((name, text));
    }
    if files.is_empty() {
        return Err(EvalError::BadFile {
            path: dir.to_path_buf(),
            message: "no .toml calibration scenes in it".into(),
        });
    }
    parse_set(&dir.display().to_string(), &files, dir)
}

fn parse_set(
    source: &str,
    files: &[(String, String)],
    dir: &Path,
) -> Result<CalibrationSet, EvalError> {
    let mut hashed = String::new();
    let mut scenes = Vec::new();
    for (name, text) in files {
        hashed.push_str(&format!("{name}\n{}\n{text}\n", text.len()));
        scenes.push(parse_scene(name, text, &dir.join(name))?);
    }
    Ok(CalibrationSet {
        source: source.to_string(),
        sha256: her_core::hashing::sha256_hex(hashed.as_bytes()),
        scenes,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SceneFile {
    title: String,
    book: String,
    scenario: String,
    #[serde(rename = "character")]
    characters: Vec<CharacterEntry>,
    #[serde(rename = "turn")]
    turns: Vec<TurnEntry>,
    #[serde(rename = "flawed", default)]
    flawed: Vec<FlawedEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CharacterEntry {
    name: String,
    profile: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TurnEntry {
    speaker: String,
    text: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FlawedEntry {
    kind: FlawKind,
    flaw: String,
    replace: Vec<Replacement>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Replacement {
    turn: usize,
    text: String,
}

/// Parses and checks one scene file (`path` only names it in errors).
pub fn parse_scene(name: &str, text: &str, path: &Path) -> Result<CalibrationScene, EvalError> {
    let bad = |message: String| EvalError::BadFile {
        path: path.to_path_buf(),
        message,
    };
    let file: SceneFile = toml::from_str(text).map_err(|e| bad(e.to_string()))?;
    if file.characters.is_empty() || file.turns.is_empty() {
        return Err(bad(
            "a calibration scene needs [[character]] and [[turn]] entries".into(),
        ));
    }
    let names: Vec<&str> = file.characters.iter().map(|c| c.name.as_str()).collect();
    for (i, turn) in file.turns.iter().enumerate() {
        if turn.speaker != ENVIRONMENT && !names.contains(&turn.speaker.as_str()) {
            return Err(bad(format!(
                "turn {} is spoken by '{}', who is not a [[character]] (or '{ENVIRONMENT}')",
                i + 1,
                turn.speaker
            )));
        }
    }
    let clean: Lines = file
        .turns
        .iter()
        .map(|t| (t.speaker.clone(), t.text.clone()))
        .collect();
    let mut variants = Vec::new();
    for (v, entry) in file.flawed.iter().enumerate() {
        let mut lines = clean.clone();
        let mut turns = Vec::new();
        if entry.replace.is_empty() {
            return Err(bad(format!("[[flawed]] {} replaces no turn", v + 1)));
        }
        for r in &entry.replace {
            let index = r.turn.wrapping_sub(1);
            let Some(line) = lines.get_mut(index) else {
                return Err(bad(format!(
                    "[[flawed]] {} replaces turn {}, but the scene has turns 1 to {}",
                    v + 1,
                    r.turn,
                    clean.len()
                )));
            };
            if turns.contains(&index) || line.1 == r.text {
                return Err(bad(format!(
                    "[[flawed]] {} replaces turn {} twice or with the same text",
                    v + 1,
                    r.turn
                )));
            }
            line.1 = r.text.clone();
            turns.push(index);
        }
        variants.push(FlawedVariant {
            kind: entry.kind,
            flaw: entry.flaw.clone(),
            lines,
            turns,
        });
    }
    Ok(CalibrationScene {
        id: name.trim_end_matches(".toml").to_string(),
        title: file.title,
        book: file.book,
        scenario: file.scenario,
        characters: file
            .characters
            .into_iter()
            .map(|c| (c.name, c.profile))
            .collect(),
        clean,
        variants,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const SMALL: &str = r#"
title = "Tea"
book = "A Book"
scenario = "Tea at the vicarage."
[[character]]
name = "Ann"
profile = "Kind."
[[turn]]
speaker = "Ann"
text = "<system_thinking>p</system_thinking>Ann: More tea?"
[[turn]]
speaker = "Environment"
text = "The kettle sings."
[[flawed]]
kind = "robotic"
flaw = "flat"
[[flawed.replace]]
turn = 1
text = "<system_thinking>p</system_thinking>Ann: Tea status: available."
"#;

    #[test]
    fn a_variant_differs_only_where_planted() {
        let scene = parse_scene("tea.toml", SMALL, Path::new("tea.toml")).unwrap();
        assert_eq!(
            serde_json::to_value(FlawKind::OtherVoice).unwrap(),
            FlawKind::OtherVoice.key()
        );
        assert_eq!(scene.id, "tea");
        assert_eq!(scene.clean.len(), 2);
        let v = &scene.variants[0];
        assert_eq!((v.kind, v.turns.as_slice()), (FlawKind::Robotic, &[0][..]));
        assert_eq!(v.lines[1], scene.clean[1]);
        assert_ne!(v.lines[0], scene.clean[0]);
        assert_eq!(CalibrationScene::actor_turns(&scene.clean), 1);
    }

    #[test]
    fn bad_files_name_themselves() {
        let cases = [
            (SMALL.replace("turn = 1", "turn = 3"), "turns 1 to 2"),
            (SMALL.replace("\"robotic\"", "\"vague\""), "unknown variant"),
            (
                SMALL.replace("speaker = \"Ann\"", "speaker = \"Bob\""),
                "'Bob'",
            ),
            (
                SMALL.replace("Tea status: available.", "More tea?"),
                "same text",
            ),
        ];
        for (text, needle) in cases {
            let err = parse_scene("x.toml", &text, Path::new("cal/x.toml"))
                .unwrap_err()
                .to_string();
            assert!(err.contains("cal/x.toml") && err.contains(needle), "{err}");
        }
    }

    /// Every file in the folder is compiled in, and the shipped set has
    /// enough pairs per dimension for its accuracy to mean something.
    #[test]
    fn the_shipped_set_is_complete() {
        let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../..")
            .join(SET_DIR);
        let from_folder = from_dir(&dir).unwrap();
        let compiled = built_in().unwrap();
        assert_eq!(from_folder.sha256, compiled.sha256);
        assert_eq!(from_folder.scenes, compiled.scenes);
        for (count, d) in compiled.pairs_per_dimension().iter().zip(Dimension::ALL) {
            assert!(*count >= super::super::MIN_PAIRS, "{d:?}: {count}");
        }
        for scene in &compiled.scenes {
            let kinds: Vec<FlawKind> = scene.variants.iter().map(|v| v.kind).collect();
            assert_eq!(kinds.len(), 6, "{}", scene.id);
        }
    }
}
