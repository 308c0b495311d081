//! Saving characters and scenes as TOML files, safely named and written atomically.

use std::path::{Path, PathBuf};

use crate::fsutil::IoError;

use thiserror::Error;

use super::{Character, Scene, parse_character, parse_scene};

/// Longest file stem `slug` returns.
pub const MAX_SLUG: usize = 64;

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("cannot make a file name from '{name}': {reason}")]
    BadName { name: String, reason: String },
    #[error("'{path}' already exists; use --force to overwrite it")]
    Exists { path: PathBuf },
    #[error(transparent)]
    Io(#[from] IoError),
    #[error("cannot save '{path}': {message}")]
    Invalid { path: PathBuf, message: String },
}

/// A safe file stem for `name`: lowercase ASCII letters, digits and single
/// '-' between words, at most `MAX_SLUG` characters. Accented Latin letters
/// are transliterated, other characters dropped or turned into '-'.
pub fn slug(name: &str) -> Result<String, StoreError> {
    let mut out = String::with_capacity(MAX_SLUG + 8);
    // One '-' between words, none at the start.
    let dash = |out: &mut String| {
        if !out.is_empty() && !out.ends_with('-') {
            out.push('-');
        }
    };
    for c in name.chars() {
        if out.len() > MAX_SLUG {
            break;
        }
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if matches!(c, '\'' | '\u{2019}' | '\u{2bc}' | '\u{2018}') {
            // "D'Arcy" reads better as "darcy" than "d-arcy".
        } else if let Some(latin) = transliterate(c) {
            out.push_str(latin);
        } else if c.is_alphabetic() {
            // A letter with no ASCII spelling here (e.g. CJK): dropped.
        } else if !c.is_control() {
            dash(&mut out);
        }
    }
    // Only ASCII was pushed, so any byte index is a char boundary.
    out.truncate(MAX_SLUG);
    while out.ends_with('-') {
        out.pop();
    }
    let mut stem = out;
    if stem.is_empty() {
        return Err(StoreError::BadName {
            name: name
                .chars()
                .flat_map(char::escape_default)
                .take(80)
                .collect(),
            reason: "it has no letters or digits that can be used in a file name".into(),
        });
    }
    if is_windows_reserved(&stem) {
        // "con.toml" cannot be created on Windows.
        stem.push_str("-1");
    }
    Ok(stem)
}

fn is_windows_reserved(stem: &str) -> bool {
    matches!(stem, "con" | "prn" | "aux" | "nul")
        || ((stem.starts_with("com") || stem.starts_with("lpt"))
            && stem.len() == 4
            && stem.as_bytes()[3].is_ascii_digit())
}

/// ASCII spellings of common accented Latin letters.
fn transliterate(c: char) -> Option<&'static str> {
    let s = match c.to_lowercase().next().unwrap_or(c) {
        'à' | 'á' | 'â' | 'ã' | 'ä' | 'å' | 'ā' | 'ă' | 'ą' => "a",
        'æ' => "ae",
        'ç' | 'ć' | 'ĉ' | 'ċ' | 'č' => "c",
        'ď' | 'đ' | 'ð' => "d",
        'è' | 'é' | 'ê' | 'ë' | 'ē' | 'ĕ' | 'ė' | 'ę' | 'ě' => "e",
        'ĝ' | 'ğ' | 'ġ' | 'ģ' => "g",
        'ĥ' | 'ħ' => "h",
        'ì' | 'í' | 'î' | 'ï' | 'ĩ' | 'ī' | 'ĭ' | 'į' | 'ı' => "i",
        'ĵ' => "j",
        'ķ' => "k",
        'ĺ' | 'ļ' | 'ľ' | 'ŀ' | 'ł' => "l",
        'ñ' | 'ń' | 'ņ' | 'ň' => "n",
        'ò' | 'ó' | 'ô' | 'õ' | 'ö' | 'ø' | 'ō' | 'ŏ' | 'ő' => "o",
        'œ' => "oe",
        'ŕ' | 'ŗ' | 'ř' => "r",
        'ś' | 'ŝ' | 'ş' | 'š' | 'ș' => "s",
        'ß' => "ss",
        'ţ' | 'ť' | 'ŧ' | 'ț' => "t",
        'þ' => "th",
        'ù' | 'ú' | 'û' | 'ü' | 'ũ' | 'ū' | 'ŭ' | 'ů' | 'ű' | 'ų' => "u",
        'ŵ' => "w",
        'ý' | 'ÿ' | 'ŷ' => "y",
        'ź' | 'ż' | 'ž' => "z",
        _ => return None,
    };
    Some(s)
}

/// Writes `dir/<slug of name>.toml`; refuses to replace a file unless `overwrite`.
pub fn save_character(
    dir: &Path,
    character: &Character,
    overwrite: bool,
) -> Result<PathBuf, StoreError> {
    let path = dir.join(format!("{}.toml", slug(&character.name)?));
    let text = toml::to_string(character).map_err(|e| StoreError::Invalid {
        path: path.clone(),
        message: format!("cannot write it as TOML: {e}"),
    })?;
    // Never write a file that `her` could not load back.
    parse_character(&text, &path).map_err(|e| StoreError::Invalid {
        path: path.clone(),
        message: e.to_string(),
    })?;
    save(&path, &text, overwrite)
}

/// Writes `dir/<slug of title>.toml`; refuses to replace a file unless `overwrite`.
pub fn save_scene(dir: &Path, scene: &Scene, overwrite: bool) -> Result<PathBuf, StoreError> {
    let path = dir.join(format!("{}.toml", slug(&scene.title)?));
    let text = toml::to_string(scene).map_err(|e| StoreError::Invalid {
        path: path.clone(),
        message: format!("cannot write it as TOML: {e}"),
    })?;
    parse_scene(&text, &path).map_err(|e| StoreError::Invalid {
        path: path.clone(),
        message: e.to_string(),
    })?;
    save(&path, &text, overwrite)
}

fn save(path: &Path, text: &str, overwrite: bool) -> Result<PathBuf, StoreError> {
    match crate::fsutil::write_atomic(path, text.as_bytes(), overwrite) {
        Ok(()) => Ok(path.to_path_buf()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(StoreError::Exists {
            path: path.to_path_buf(),
        }),
        Err(cause) => Err(StoreError::Io(IoError::new(
            "write",
            path.to_path_buf(),
            cause,
        ))),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::character::{CardExtras, LoreEntry, Lorebook, NextSpeaker, Persona, SceneMember};

    #[test]
    fn slug_cases() {
        assert_eq!(slug("../etc/passwd").unwrap(), "etc-passwd");
        assert_eq!(slug("a/b").unwrap(), "a-b");
        assert_eq!(slug("a\\b").unwrap(), "a-b");
        assert_eq!(slug("Élodie  D'Arcy").unwrap(), "elodie-darcy");
        assert_eq!(slug("\u{7}bell").unwrap(), "bell");
        assert_eq!(slug("CON").unwrap(), "con-1");
        assert_eq!(slug("lpt9").unwrap(), "lpt9-1");
        assert_eq!(slug("...hidden").unwrap(), "hidden");
        assert_eq!(slug("Elizabeth Bennet").unwrap(), "elizabeth-bennet");
        assert_eq!(slug("Straße Ærø").unwrap(), "strasse-aero");
        let err = slug("").unwrap_err().to_string();
        assert!(err.contains("cannot make a file name from ''"), "{err}");
        assert!(slug("..").is_err());
        assert!(slug("夏目").is_err());
        let long = slug(&"ab ".repeat(67)).unwrap();
        assert!(long.len() <= MAX_SLUG && !long.ends_with('-'), "{long}");
        assert_eq!(slug(&"x".repeat(200)).unwrap(), "x".repeat(64));
    }

    fn sample_character() -> Character {
        Character {
            name: "Élodie D'Arcy".into(),
            book: "A Book".into(),
            profile: "Line one.\nLine two with \"quotes\" and '''.\n".into(),
            greetings: vec!["Hello {{user}}.".into(), "Second\ngreeting".into()],
            examples: vec!["ex".into()],
            tags: vec!["t".into()],
            user: Some(Persona {
                name: "Ann".into(),
                description: "A visitor".into(),
            }),
            lorebook: Some(Lorebook {
                name: "World".into(),
                scan_depth: Some(3),
                entries: vec![LoreEntry {
                    keys: vec!["castle".into()],
                    content: "It is old.\nVery old.".into(),
                    enabled: false,
                    id: Some(4),
                    extensions_json: r#"{"a":1}"#.into(),
                    ..LoreEntry::default()
                }],
                ..Lorebook::default()
            }),
            card: Some(CardExtras {
                creator: "me".into(),
                extensions_json: r#"{"z":[1,2],"a":{"b":null}}"#.into(),
                ..CardExtras::default()
            }),
            ..Character::default()
        }
    }

    #[test]
    fn saved_character_parses_back_equal_and_is_not_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let c = sample_character();
        let path = save_character(dir.path(), &c, false).unwrap();
        assert_eq!(path, dir.path().join("elodie-darcy.toml"));
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.contains("\"\"\"\nLine one."),
            "multiline strings stay readable:\n{text}"
        );
        assert_eq!(parse_character(&text, &path).unwrap(), c);

        let err = save_character(dir.path(), &c, false)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("elodie-darcy.toml") && err.contains("--force"),
            "{err}"
        );
        let mut changed = c.clone();
        changed.profile = "New.".into();
        save_character(dir.path(), &changed, true).unwrap();
        assert_eq!(crate::character::load_character(&path).unwrap(), changed);
        // No temp files left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn invalid_character_is_not_written() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = sample_character();
        c.book = " ".into();
        let err = save_character(dir.path(), &c, false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("'book' must not be empty"), "{err}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn saved_scene_parses_back_equal() {
        let dir = tempfile::tempdir().unwrap();
        let scene = Scene {
            title: "Tea at Netherfield".into(),
            book: "Pride and Prejudice".into(),
            scenario: "A wet afternoon.\nEveryone is bored.".into(),
            environment: true,
            next_speaker: NextSpeaker::Model,
            members: vec![
                SceneMember {
                    character: Some("elizabeth-bennet".into()),
                    ..SceneMember::default()
                },
                SceneMember {
                    name: Some("Mr. Hurst".into()),
                    profile: Some("Dozes.".into()),
                    motivation: "Sleep.".into(),
                    ..SceneMember::default()
                },
            ],
            ..Scene::default()
        };
        let path = save_scene(dir.path(), &scene, false).unwrap();
        assert_eq!(path.file_name().unwrap(), "tea-at-netherfield.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(parse_scene(&text, &path).unwrap(), scene);
        assert!(matches!(
            save_scene(dir.path(), &scene, false),
            Err(StoreError::Exists { .. })
        ));
    }

    proptest::proptest! {
        #[test]
        fn slug_is_always_a_safe_stem(name in "\\PC{0,80}|[./\\\\\u{0}-\u{1f} a-zA-Z]{0,80}|.{0,300}") {
            if let Ok(s) = slug(&name) {
                proptest::prop_assert!(!s.is_empty() && s.len() <= MAX_SLUG);
                proptest::prop_assert!(!s.contains('/') && !s.contains('\\') && !s.contains(".."));
                proptest::prop_assert!(!s.chars().any(char::is_control));
                proptest::prop_assert!(s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'));
                proptest::prop_assert!(!s.starts_with('-') && !s.starts_with('.') && !is_windows_reserved(&s));
            }
        }
    }
}
