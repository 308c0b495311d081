//! Saving a simulated scene as an ordinary session file, so the TUI lists it
//! under its scene and opens it like any chat (plans and thoughts included,
//! shown by the usual panes).

use std::path::{Path, PathBuf};

use serde_json::json;

use super::simulate::SimTranscript;
use her_core::character::ENVIRONMENT;
use her_core::session::{
    Message, MessageMeta, NodeId, Role, SessionError, SessionFile, SessionHeader,
};

/// What the session header says about an evaluated scene.
#[derive(Debug, Clone)]
pub struct TranscriptInfo<'a> {
    pub eval_name: &'a str,
    pub system: &'a str,
    pub scene_id: &'a str,
    /// The scene's title: the TUI finds the scene file by it.
    pub scene_title: &'a str,
    /// The first character of the scene (the session's character).
    pub lead: &'a str,
    pub seed: u32,
    pub model: &'a str,
    pub model_fingerprint: &'a str,
    pub adapter_sha256: Option<&'a str>,
    pub settings: serde_json::Value,
}

/// The session title of an evaluated scene.
pub fn transcript_title(info: &TranscriptInfo) -> String {
    format!(
        "eval {} · {} · {} · seed {}",
        info.eval_name, info.scene_title, info.system, info.seed
    )
}

/// Writes `transcript` as a new session in `dir`; returns its path.
pub fn save_transcript(
    dir: &Path,
    info: &TranscriptInfo,
    transcript: &SimTranscript,
) -> Result<PathBuf, SessionError> {
    let mut header = SessionHeader::new(transcript_title(info));
    header.character = Some(info.lead.to_string());
    header.scene = Some(info.scene_title.to_string());
    header.model = Some(info.model.to_string());
    header.model_fingerprint = Some(info.model_fingerprint.to_string());
    header.adapter_sha256 = info.adapter_sha256.map(str::to_string);
    header.config = json!({
        "eval": info.eval_name,
        "system": info.system,
        "scene": info.scene_id,
        "seed": info.seed,
        "settings": info.settings,
    });
    let (mut file, mut session) = SessionFile::create(dir, header)?;
    let mut parent = NodeId::ROOT;
    for turn in &transcript.turns {
        let role = if turn.speaker == ENVIRONMENT {
            Role::Narrator
        } else {
            Role::Character
        };
        let meta = MessageMeta {
            finish_reason: Some(turn.finish_reason.to_string()),
            provenance: serde_json::to_value(&turn.provenance).ok(),
            ..MessageMeta::default()
        };
        let message = Message::new(turn.speaker.clone(), role, turn.text.clone()).with_meta(meta);
        let created = file.commit_with(&mut session, |s| {
            s.tree().append_under_event(parent, message)
        })?;
        if let Some(node) = created {
            parent = node;
        }
    }
    Ok(file.path().to_path_buf())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::simulate::SimTurn;
    use her_core::session::{list_sessions, load_session};
    use her_engine::FinishReason;

    #[test]
    fn a_transcript_reads_back_as_a_scene_session() {
        let dir = tempfile::tempdir().unwrap();
        let provenance = her_engine::Provenance {
            model: "m".into(),
            model_fingerprint: "f".into(),
            adapter: None,
            seed: 7,
            prompt_sha256: String::new(),
            prompt_tokens_sha256: String::new(),
            dropped_turns: 0,
            sampling: None,
            unapplied: Vec::new(),
        };
        let turn = |speaker: &str, text: &str| SimTurn {
            speaker: speaker.into(),
            text: text.into(),
            finish_reason: FinishReason::MaxTokens,
            provenance: provenance.clone(),
        };
        let transcript = SimTranscript {
            turns: vec![
                turn("Ann", "<system_thinking>p</system_thinking>Ann: Hello."),
                turn(ENVIRONMENT, "The kettle sings."),
                turn("Bob", "Bob: Hm."),
            ],
        };
        let info = TranscriptInfo {
            eval_name: "e1",
            system: "base",
            scene_id: "tea",
            scene_title: "Tea",
            lead: "Ann",
            seed: 3,
            model: "m",
            model_fingerprint: "f",
            adapter_sha256: None,
            settings: json!({"rounds": 3}),
        };
        let path = save_transcript(dir.path(), &info, &transcript).unwrap();
        let (session, issues) = load_session(&path).unwrap();
        assert!(issues.is_empty());
        let texts: Vec<(String, Role, String)> = session
            .tree()
            .active_path()
            .into_iter()
            .filter_map(|id| session.tree().node(id))
            .filter(|n| !n.key.is_empty())
            .map(|n| {
                (
                    n.message.speaker.clone(),
                    n.message.role,
                    n.message.text.clone(),
                )
            })
            .collect();
        assert_eq!(texts.len(), 3);
        assert_eq!(texts[1].1, Role::Narrator);
        assert_eq!(texts[0].2, transcript.turns[0].text);
        let listed = list_sessions(dir.path()).unwrap();
        assert_eq!(listed[0].scene.as_deref(), Some("Tea"));
        assert_eq!(listed[0].character.as_deref(), Some("Ann"));
        assert_eq!(listed[0].title, "eval e1 · Tea · base · seed 3");
        assert_eq!(listed[0].messages, 3);
    }
}
