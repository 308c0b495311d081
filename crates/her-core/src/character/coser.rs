//! CoSER scene JSON (the data HER is evaluated on) into `Scene`s.

use std::path::Path;

use serde_json::{Map, Value};

use super::card::CardError;
use super::scene::ENVIRONMENT;
use super::{NextSpeaker, Scene, SceneMember};

/// Title length when a scene has no `topic`.
const TITLE_CHARS: usize = 60;

/// One imported scene with the reference dialogue from the book.
#[derive(Debug, Clone, PartialEq)]
pub struct CoserScene {
    pub scene: Scene,
    /// `(character, message)` in order: the original lines, for comparison.
    pub dialogues: Vec<(String, String)>,
    pub warnings: Vec<String>,
}

/// Reads one scene object, or an array of them.
pub fn import_coser(path: &Path) -> Result<Vec<CoserScene>, CardError> {
    let bytes = crate::fsutil::read::bytes(path, crate::fsutil::read::Kind::Coser)?;
    let text = std::str::from_utf8(&bytes).map_err(|e| CardError::Utf8 {
        path: path.to_path_buf(),
        what: "the file".into(),
        offset: e.valid_up_to(),
    })?;
    parse_coser(text, path)
}

pub fn parse_coser(text: &str, path: &Path) -> Result<Vec<CoserScene>, CardError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let root: Value =
        serde_json::from_str(text).map_err(|e| super::card::json_error(&e, path, "the file"))?;
    let ctx = Ctx { path };
    match &root {
        Value::Array(items) => {
            if items.is_empty() {
                return Err(ctx.error("(top level)", "is an empty array: no scenes"));
            }
            items
                .iter()
                .enumerate()
                .map(|(i, item)| ctx.scene(item, &format!("[{i}]")))
                .collect()
        }
        other => Ok(vec![ctx.scene(other, "")?]),
    }
}

struct Ctx<'a> {
    path: &'a Path,
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}.{key}")
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

impl Ctx<'_> {
    fn error(&self, field: &str, problem: &str) -> CardError {
        CardError::Field {
            path: self.path.to_path_buf(),
            field: field.to_string(),
            problem: problem.to_string(),
        }
    }

    fn object<'v>(&self, v: &'v Value, field: &str) -> Result<&'v Map<String, Value>, CardError> {
        v.as_object()
            .ok_or_else(|| self.error(field, &format!("must be an object, got {}", kind(v))))
    }

    /// A string field; absent or null is `None`.
    fn string(
        &self,
        obj: &Map<String, Value>,
        key: &str,
        prefix: &str,
    ) -> Result<Option<String>, CardError> {
        match obj.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(self.error(
                &join(prefix, key),
                &format!("must be a string, got {}", kind(other)),
            )),
        }
    }

    fn strings(
        &self,
        obj: &Map<String, Value>,
        key: &str,
        prefix: &str,
    ) -> Result<Vec<String>, CardError> {
        let field = join(prefix, key);
        match obj.get(key) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, item)| match item {
                    Value::String(s) => Ok(s.clone()),
                    other => Err(self.error(
                        &field,
                        &format!(
                            "must be an array of strings, but item '{i}' is {}",
                            kind(other)
                        ),
                    )),
                })
                .collect(),
            Some(other) => Err(self.error(
                &field,
                &format!("must be an array of strings, got {}", kind(other)),
            )),
        }
    }

    fn array<'v>(
        &self,
        obj: &'v Map<String, Value>,
        key: &str,
        prefix: &str,
    ) -> Result<&'v [Value], CardError> {
        match obj.get(key) {
            None | Some(Value::Null) => Ok(&[]),
            Some(Value::Array(items)) => Ok(items),
            Some(other) => Err(self.error(
                &join(prefix, key),
                &format!("must be an array, got {}", kind(other)),
            )),
        }
    }

    fn scene(&self, v: &Value, prefix: &str) -> Result<CoserScene, CardError> {
        let obj = self.object(
            v,
            if prefix.is_empty() {
                "(top level)"
            } else {
                prefix
            },
        )?;
        let mut warnings = Vec::new();
        let required = |key: &str| -> Result<String, CardError> {
            match self.string(obj, key, prefix)? {
                Some(s) if !s.trim().is_empty() => Ok(s),
                _ => Err(self.error(&join(prefix, key), "is missing or empty")),
            }
        };
        let book = required("book")?;
        let scenario = required("scenario")?;
        let topic = self.string(obj, "topic", prefix)?.unwrap_or_default();

        let background = match obj.get("plot") {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(s)) => s.clone(),
            Some(plot) => {
                let plot_prefix = join(prefix, "plot");
                let plot = self.object(plot, &plot_prefix)?;
                self.string(plot, "summary", &plot_prefix)?
                    .unwrap_or_default()
            }
        };

        let profiles_field = join(prefix, "character_profiles");
        let profiles = match obj.get("character_profiles") {
            None | Some(Value::Null) => None,
            Some(p) => Some(self.object(p, &profiles_field)?),
        };
        let profile_of = |name: &str| -> Result<Option<String>, CardError> {
            match profiles {
                Some(p) => self.string(p, name, &profiles_field),
                None => Ok(None),
            }
        };

        // Key characters carry the scene's motivations; order is kept.
        let mut members: Vec<SceneMember> = Vec::new();
        let key_field = join(prefix, "key_characters");
        for (i, kc) in self
            .array(obj, "key_characters", prefix)?
            .iter()
            .enumerate()
        {
            let kc_prefix = format!("{key_field}[{i}]");
            let kc = self.object(kc, &kc_prefix)?;
            let Some(name) = self
                .string(kc, "name", &kc_prefix)?
                .filter(|n| !n.trim().is_empty())
            else {
                return Err(self.error(&join(&kc_prefix, "name"), "is missing or empty"));
            };
            let description = self
                .string(kc, "description", &kc_prefix)?
                .unwrap_or_default();
            let motivation = match self.string(kc, "thought", &kc_prefix)? {
                Some(t) => t,
                None => self
                    .string(kc, "motivation", &kc_prefix)?
                    .unwrap_or_default(),
            };
            let profile = profile_of(&name)?
                .filter(|p| !p.trim().is_empty())
                .unwrap_or(description);
            add_member(&mut members, name, profile, motivation);
        }

        let speaking = self.strings(obj, "speaking_characters_w_env", prefix)?;
        let environment = speaking.iter().any(|s| s.eq_ignore_ascii_case(ENVIRONMENT));
        let mut fallback: Vec<String> = speaking
            .into_iter()
            .filter(|s| !s.eq_ignore_ascii_case(ENVIRONMENT))
            .collect();
        if members.is_empty() && fallback.is_empty() {
            fallback = self.strings(obj, "major_characters", prefix)?;
            if fallback.is_empty() {
                fallback = profiles
                    .map(|p| p.keys().cloned().collect())
                    .unwrap_or_default();
            }
        }
        for name in fallback {
            if name.trim().is_empty()
                || members
                    .iter()
                    .any(|m| m.name.as_deref() == Some(name.as_str()))
            {
                continue;
            }
            let profile = profile_of(&name)?.unwrap_or_default();
            add_member(&mut members, name, profile, String::new());
        }
        if members.is_empty() {
            return Err(self.error(
                &key_field,
                "names no characters (nor do 'speaking_characters_w_env', 'major_characters' or 'character_profiles')",
            ));
        }
        for m in &members {
            if m.profile.as_deref().is_none_or(|p| p.trim().is_empty()) {
                warnings.push(format!(
                    "'{}' has no profile",
                    m.name.as_deref().unwrap_or_default()
                ));
            }
        }

        let mut dialogues = Vec::new();
        let dlg_field = join(prefix, "dialogues");
        for (i, d) in self.array(obj, "dialogues", prefix)?.iter().enumerate() {
            let d_prefix = format!("{dlg_field}[{i}]");
            let d = self.object(d, &d_prefix)?;
            let character = self.string(d, "character", &d_prefix)?;
            let message = self.string(d, "message", &d_prefix)?;
            match (character, message) {
                (Some(c), Some(m)) => dialogues.push((c, m)),
                (None, _) => return Err(self.error(&join(&d_prefix, "character"), "is missing")),
                (_, None) => return Err(self.error(&join(&d_prefix, "message"), "is missing")),
            }
        }

        let title = if topic.trim().is_empty() {
            let mut t: String = scenario.trim().chars().take(TITLE_CHARS).collect();
            t.truncate(t.trim_end().len());
            t
        } else {
            topic.trim().to_string()
        };
        Ok(CoserScene {
            scene: Scene {
                title,
                book,
                background,
                scenario,
                environment,
                next_speaker: NextSpeaker::Model,
                members,
                ..Scene::default()
            },
            dialogues,
            warnings,
        })
    }
}

fn add_member(members: &mut Vec<SceneMember>, name: String, profile: String, motivation: String) {
    members.push(SceneMember {
        character: None,
        name: Some(name),
        profile: Some(profile),
        motivation,
    });
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const SCENE: &str = r#"{
      "book": "Pride and Prejudice",
      "topic": "The proposal at Hunsford",
      "scenario": "Darcy calls on Elizabeth alone at the parsonage.",
      "plot": {"summary": "Darcy has separated Bingley from Jane."},
      "character_profiles": {"Elizabeth Bennet": "Witty, proud of her judgement.", "Fitzwilliam Darcy": "Rich, reserved."},
      "key_characters": [
        {"name": "Fitzwilliam Darcy", "thought": "I must tell her.", "description": "A proud man."},
        {"name": "Elizabeth Bennet", "motivation": "I will not hear it.", "description": "unused"},
        {"name": "Mr. Collins", "description": "A clergyman."}
      ],
      "major_characters": ["Elizabeth Bennet", "Fitzwilliam Darcy"],
      "speaking_characters_w_env": ["Fitzwilliam Darcy", "Elizabeth Bennet", "Environment"],
      "dialogues": [
        {"character": "Fitzwilliam Darcy", "message": "In vain I have struggled."},
        {"character": "Elizabeth Bennet", "message": "I have never desired your good opinion."}
      ]
    }"#;

    #[test]
    fn imports_a_scene() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("scene.json");
        std::fs::write(&path, SCENE).unwrap();
        let scenes = import_coser(&path).unwrap();
        assert_eq!(scenes.len(), 1);
        let s = &scenes[0];
        assert_eq!(s.scene.title, "The proposal at Hunsford");
        assert_eq!(s.scene.book, "Pride and Prejudice");
        assert_eq!(s.scene.background, "Darcy has separated Bingley from Jane.");
        assert!(s.scene.environment);
        assert_eq!(s.scene.next_speaker, NextSpeaker::Model);
        let m = &s.scene.members;
        assert_eq!(m.len(), 3);
        assert_eq!(m[0].name.as_deref(), Some("Fitzwilliam Darcy"));
        assert_eq!(m[0].profile.as_deref(), Some("Rich, reserved."));
        assert_eq!(m[0].motivation, "I must tell her.");
        assert_eq!(m[1].motivation, "I will not hear it.");
        assert_eq!(m[2].profile.as_deref(), Some("A clergyman."));
        assert_eq!(s.dialogues.len(), 2);
        assert_eq!(s.dialogues[1].0, "Elizabeth Bennet");
        // The scene saves and loads as a her-studio scene.
        let saved = crate::character::store::save_scene(dir.path(), &s.scene, false).unwrap();
        assert_eq!(crate::character::load_scene(&saved).unwrap(), s.scene);
    }

    #[test]
    fn imports_an_array_and_titles_from_scenario() {
        let second = r#"{"book": "B", "scenario": "A very long scenario sentence that goes on and on well past sixty characters.",
                        "speaking_characters_w_env": ["Ann", "Bob"]}"#;
        let text = format!("[{SCENE}, {second}]");
        let scenes = parse_coser(&text, Path::new("set.json")).unwrap();
        assert_eq!(scenes.len(), 2);
        let s = &scenes[1].scene;
        assert_eq!(
            s.title,
            "A very long scenario sentence that goes on and on well past"
        );
        assert!(!s.environment);
        assert_eq!(s.members.len(), 2);
        assert_eq!(scenes[1].warnings.len(), 2, "{:?}", scenes[1].warnings);
    }

    #[test]
    fn bad_input_names_the_field() {
        let cases = [
            (
                r#"{"scenario": "x", "key_characters": [{"name": "A"}]}"#,
                "field 'book' is missing",
            ),
            (
                r#"[{"book": "B", "scenario": "x", "key_characters": [{"name": 3}]}]"#,
                "'[0].key_characters[0].name' must be a string",
            ),
            (
                r#"{"book": "B", "scenario": "x"}"#,
                "'key_characters' names no characters",
            ),
            (
                r#"{"book": "B", "scenario": "x", "key_characters": [{"name": "A"}], "dialogues": [{"character": "A"}]}"#,
                "'dialogues[0].message' is missing",
            ),
            (
                r#"{"book": "B", "scenario": "x", "speaking_characters_w_env": "A"}"#,
                "must be an array of strings",
            ),
            ("{\"book\": \n 1,", "line '2'"),
            ("[]", "no scenes"),
        ];
        for (text, want) in cases {
            let err = parse_coser(text, Path::new("s.json"))
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("'s.json'") && err.contains(want),
                "{text}\n{err}"
            );
        }
    }
}
