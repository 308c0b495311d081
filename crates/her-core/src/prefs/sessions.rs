//! Preference records from chat sessions: the `rating` and `arena` events the
//! TUI logs, and the implicit preferences in the branch tree (a kept swipe
//! beats its discarded siblings, an edit beats the reply it rewrote).
//!
//! The session log is the single place these live; records are derived here
//! when preferences are exported, so nothing is stored twice.

use serde::{Deserialize, Serialize};

use super::pairs::{
    Alternative, PairMeta, implicit_pair_from_edit, implicit_pair_from_thinking_edit,
    implicit_pairs_from_swipes,
};
use super::record::{
    ContextMessage, PreferencePair, PreferenceRecord, Provenance, RatedLayer, Rating, RatingScore,
    Role, Verdict, prompt_sha256,
};
use crate::character::Character;
use crate::generation::Provenance as EngineProvenance;
use crate::prompt::{Additions, HerPrompt, Line, PromptOptions, PromptVariant};
use crate::session::{Node, NodeId, Role as SpeakerRole, Session};
use crate::story::StoryLog;

/// `type` of the rating events in a session log.
pub const RATING_EVENT: &str = "rating";
/// `type` of the arena events in a session log.
pub const ARENA_EVENT: &str = "arena";

/// A rating given in the chat, as logged in the session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RatingEvent {
    #[serde(rename = "type")]
    pub kind: String,
    pub id: String,
    /// Key of the rated message.
    pub key: String,
    pub annotator: String,
    pub score: ChatScore,
    #[serde(default = "whole")]
    pub layer: RatedLayer,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rationale: Option<String>,
    /// The exact rendered prompt the reply answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    #[serde(default)]
    pub prompt_sha256: String,
    pub created_at: String,
}

fn whole() -> RatedLayer {
    RatedLayer::Whole
}

/// The chat's rating keys: thumbs or 1–5 stars.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChatScore {
    Up,
    Down,
    #[serde(untagged)]
    Stars {
        stars: u8,
    },
}

impl From<ChatScore> for RatingScore {
    fn from(score: ChatScore) -> Self {
        match score {
            ChatScore::Up => Self::ThumbsUp,
            ChatScore::Down => Self::ThumbsDown,
            ChatScore::Stars { stars } => Self::Stars(stars),
        }
    }
}

/// One blind A/B round in the chat, as logged in the session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArenaEvent {
    #[serde(rename = "type")]
    pub kind: String,
    pub id: String,
    /// Key of the message both candidates answer (`None` at the start).
    pub parent: Option<String>,
    pub speaker: String,
    pub annotator: String,
    /// In generation order; `shown_first` says which one was on the left.
    pub candidates: [ArenaCandidate; 2],
    pub shown_first: usize,
    /// In the order of `candidates`, not the order shown.
    pub verdict: Verdict,
    pub prompt: String,
    /// What lore, memory and the author's note added to the prompt.
    #[serde(default, skip_serializing_if = "Additions::is_empty")]
    pub additions: Additions,
    pub created_at: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArenaCandidate {
    /// Raw reply, prefill included.
    pub text: String,
    /// What made it: "seed 41", "adapter persona.gguf", "base"…
    pub label: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provenance: Option<EngineProvenance>,
}

/// How to rebuild the prompts of a session.
pub struct SessionPlayers<'a> {
    /// The characters the model played (the lead first); lookups by name.
    pub cast: &'a [Character],
    pub variant: PromptVariant,
    /// The configured persona name (a character's own persona wins).
    pub user_name: &'a str,
    /// Who made the implicit choices (the studio's annotator).
    pub annotator: &'a str,
}

/// Records found in one session, and what could not be used.
#[derive(Debug, Default)]
pub struct Collected {
    pub records: Vec<PreferenceRecord>,
    pub notes: Vec<String>,
}

/// All preference records of one session.
pub fn collect_session(session: &Session, players: &SessionPlayers<'_>) -> Collected {
    let mut out = Collected::default();
    let reader = Reader::new(session, players);
    for event in session.other_events() {
        let kind = event.value.get("type").and_then(|t| t.as_str());
        let result = match kind {
            Some(RATING_EVENT) => serde_json::from_value::<RatingEvent>(event.value.clone())
                .map_err(|e| e.to_string())
                .and_then(|e| reader.rating(&e)),
            Some(ARENA_EVENT) => serde_json::from_value::<ArenaEvent>(event.value.clone())
                .map_err(|e| e.to_string())
                .and_then(|e| reader.arena(&e)),
            _ => continue,
        };
        match result {
            Ok(record) => out.records.push(record),
            Err(why) => out.notes.push(format!("line {}: {why}", event.line)),
        }
    }
    reader.implicit(&mut out);
    out
}

/// A character reply on a session's active branch, with the context it
/// answered and the newest whole-reply rating anyone gave it.
#[derive(Debug, Clone, PartialEq)]
pub struct KeptReply {
    pub character: String,
    pub context: Vec<ContextMessage>,
    /// Raw, plan included.
    pub reply: String,
    pub rating: Option<RatingScore>,
}

/// The replies a user kept: every character turn on the active branch
/// except greetings (written by the character's author, not the model).
pub fn kept_replies(session: &Session, players: &SessionPlayers<'_>) -> Vec<KeptReply> {
    let reader = Reader::new(session, players);
    let tree = session.tree();
    let mut ratings: std::collections::HashMap<String, RatingScore> = Default::default();
    for e in session.other_events() {
        if let Ok(r) = serde_json::from_value::<RatingEvent>(e.value.clone())
            && r.kind == RATING_EVENT
            && r.layer == RatedLayer::Whole
        {
            ratings.insert(r.key, r.score.into());
        }
    }
    tree.active_path()
        .into_iter()
        .filter_map(|id| tree.node(id))
        .filter(|n| {
            matches!(
                n.message.role,
                SpeakerRole::Character | SpeakerRole::Narrator
            ) && n.parent.is_some_and(|p| p != NodeId::ROOT)
                && !n.message.meta.incomplete
        })
        .filter_map(|n| {
            let skip = engine_provenance(n).map_or(0, |p| p.dropped_turns);
            let parent = n.parent.unwrap_or(NodeId::ROOT);
            let additions = reader.additions_of(&n.key);
            let rebuilt = reader
                .rebuild(parent, &n.message.speaker, skip, &additions)
                .ok()?;
            Some(KeptReply {
                character: rebuilt.character,
                context: rebuilt.context,
                reply: n.message.text.clone(),
                rating: ratings.get(&n.key).copied(),
            })
        })
        .collect()
}

struct Reader<'a> {
    session: &'a Session,
    players: &'a SessionPlayers<'a>,
    /// The session's lore, memory and note events, read once.
    story: StoryLog,
}

/// The prompt a reply answered, rebuilt from the tree.
struct Rebuilt {
    character: String,
    context: Vec<ContextMessage>,
    prompt: String,
}

impl<'a> Reader<'a> {
    fn new(session: &'a Session, players: &'a SessionPlayers<'a>) -> Self {
        Reader {
            session,
            players,
            story: StoryLog::read(session).0,
        }
    }

    fn node_by_key(&self, key: &str) -> Result<&Node, String> {
        let tree = self.session.tree();
        tree.find(key)
            .and_then(|id| tree.node(id))
            .ok_or_else(|| format!("message {key:?} is not in the session"))
    }

    /// The prompt `speaker` got for a reply under `parent`, `skip` oldest
    /// turns left out.
    /// What lore, memory and note added to reply `key`'s prompt, as logged
    /// with it (nothing for replies from before they were logged).
    fn additions_of(&self, key: &str) -> Additions {
        self.story
            .contexts
            .get(key)
            .map(|c| c.additions.clone())
            .unwrap_or_default()
    }

    fn rebuild(
        &self,
        parent: NodeId,
        speaker: &str,
        skip: usize,
        additions: &Additions,
    ) -> Result<Rebuilt, String> {
        let character = self
            .players
            .cast
            .iter()
            .find(|c| c.name == speaker)
            .ok_or_else(|| format!("{speaker:?} is not a character of this studio"))?;
        let tree = self.session.tree();
        let path: Vec<&Node> = tree
            .path_to(parent)
            .into_iter()
            .filter_map(|id| tree.node(id))
            .collect();
        // A lost message would teach the model a made-up context.
        if let Some(lost) = path.iter().find(|n| n.unreadable) {
            return Err(format!(
                "the context holds message {:?}, whose line could not be read; left out",
                lost.key
            ));
        }
        let lines: Vec<Line> = path
            .iter()
            .map(|n| Line::new(n.message.speaker.clone(), n.message.text.clone()))
            .collect();
        let options = PromptOptions::new(
            self.players.variant,
            character.user_name(self.players.user_name),
        );
        let prompt = HerPrompt::build_with(character, &options, &lines, additions);
        Ok(Rebuilt {
            character: character.name.clone(),
            context: prompt
                .messages(skip)
                .into_iter()
                .map(|(role, content)| ContextMessage::new(chat_role(role), content))
                .collect(),
            prompt: prompt.render_with_skip(skip),
        })
    }

    fn rating(&self, event: &RatingEvent) -> Result<PreferenceRecord, String> {
        let node = self.node_by_key(&event.key)?;
        if node.unreadable {
            return Err(format!(
                "the rated message {:?} could not be read; left out",
                event.key
            ));
        }
        let engine = engine_provenance(node);
        let skip = engine.as_ref().map_or(0, |p| p.dropped_turns);
        let parent = node.parent.unwrap_or(NodeId::ROOT);
        let additions = self.additions_of(&event.key);
        let rebuilt = self.rebuild(parent, &node.message.speaker, skip, &additions)?;
        // The prompt logged with the rating is exact; a rebuilt one only
        // stands in when it hashes the same.
        let prompt = match &event.prompt {
            Some(p) => Some(p.clone()),
            None => {
                Some(rebuilt.prompt.clone()).filter(|p| prompt_sha256(p) == event.prompt_sha256)
            }
        };
        let rating = Rating {
            id: event.id.clone(),
            annotator: event.annotator.clone(),
            implicit: false,
            character: rebuilt.character,
            session: Some(self.session.id().to_string()),
            context: rebuilt.context,
            reply: node.message.text.clone(),
            score: event.score.into(),
            layer: event.layer,
            tags: event.tags.clone(),
            rationale: event.rationale.clone(),
            provenance: match (prompt, engine) {
                (Some(prompt), Some(engine)) => Some(provenance(prompt, &engine)),
                _ => None,
            },
            created_at: event.created_at.clone(),
        };
        let record = PreferenceRecord::Rating(rating);
        record.validate().map_err(|e| e.to_string())?;
        Ok(record)
    }

    fn arena(&self, event: &ArenaEvent) -> Result<PreferenceRecord, String> {
        let parent = match &event.parent {
            Some(key) => self.node_by_key(key)?.id,
            None => NodeId::ROOT,
        };
        let skip = event.candidates[0]
            .provenance
            .as_ref()
            .map_or(0, |p| p.dropped_turns);
        let rebuilt = self.rebuild(parent, &event.speaker, skip, &event.additions)?;
        let prov = |c: &ArenaCandidate| {
            c.provenance
                .as_ref()
                .map(|p| provenance(event.prompt.clone(), p))
        };
        let [a, b] = &event.candidates;
        let pair = PreferencePair {
            id: event.id.clone(),
            annotator: event.annotator.clone(),
            implicit: false,
            character: rebuilt.character,
            session: Some(self.session.id().to_string()),
            context: rebuilt.context,
            cand_1: a.text.clone(),
            cand_2: b.text.clone(),
            verdict: event.verdict,
            cand_1_provenance: prov(a),
            cand_2_provenance: prov(b),
            principles: Vec::new(),
            thinking_edit: None,
            rationale: None,
            created_at: event.created_at.clone(),
        };
        let record = PreferenceRecord::Pair(pair);
        record.validate().map_err(|e| e.to_string())?;
        Ok(record)
    }

    /// Kept swipes and edits, for every place in the tree with a choice.
    fn implicit(&self, out: &mut Collected) {
        let tree = self.session.tree();
        let parents = std::iter::once(NodeId::ROOT).chain(tree.nodes().map(|n| n.id));
        for parent in parents {
            let Some(node) = tree.node(parent) else {
                continue;
            };
            let Some(&kept_id) = node.children.get(node.selected) else {
                continue;
            };
            if node.children.len() < 2 || tree.is_deleted(kept_id) {
                continue;
            }
            match self.choice(parent, kept_id) {
                Ok(pairs) => out
                    .records
                    .extend(pairs.into_iter().map(PreferenceRecord::Pair)),
                Err(why) => out.notes.push(why),
            }
        }
    }

    fn choice(&self, parent: NodeId, kept_id: NodeId) -> Result<Vec<PreferencePair>, String> {
        let tree = self.session.tree();
        let Some(kept) = tree.node(kept_id) else {
            return Ok(Vec::new());
        };
        let generated = |n: &Node| n.message.meta.provenance.is_some();
        let edit_source = kept.message.meta.edited_from.as_deref();
        let thinking_edit = kept.message.meta.thinking_edit.as_deref();
        let is_reply = matches!(
            kept.message.role,
            SpeakerRole::Character | SpeakerRole::Narrator
        );
        // Greetings and the user's own lines are authored, not sampled: not
        // choosing one says nothing about quality.
        if !is_reply || !(generated(kept) || edit_source.is_some()) {
            return Ok(Vec::new());
        }
        let skip = engine_provenance(kept).map_or(0, |p| p.dropped_turns);
        let additions = self.additions_of(&kept.key);
        let rebuilt = self.rebuild(parent, &kept.message.speaker, skip, &additions)?;
        let meta = PairMeta {
            annotator: self.players.annotator.to_string(),
            character: rebuilt.character.clone(),
            session: Some(self.session.id().to_string()),
            context: rebuilt.context.clone(),
            created_at: kept.message.created_at.clone(),
        };
        let alternative = |n: &Node| {
            let prov = engine_provenance(n)
                .filter(|p| {
                    n.message.meta.continued_from.is_none()
                        && p.prompt_sha256 == prompt_sha256(&rebuilt.prompt)
                })
                .map(|p| provenance(rebuilt.prompt.clone(), &p));
            Alternative::new(n.message.text.clone(), prov)
        };
        let mut pairs = Vec::new();
        let siblings = tree.node(parent).map_or(&[][..], |p| p.children.as_slice());
        let mut discarded = Vec::new();
        for &id in siblings {
            let Some(other) = tree.node(id) else { continue };
            if id == kept_id || !generated(other) || other.message.speaker != kept.message.speaker {
                continue;
            }
            // A continuation's source is the same reply cut short; an edit's
            // source is handled as an edit below.
            if kept.message.meta.continued_from.as_deref() == Some(other.key.as_str())
                || edit_source == Some(other.key.as_str())
                || thinking_edit.is_some_and(|e| e.of == other.key)
            {
                continue;
            }
            discarded.push(alternative(other));
        }
        let kept_alt = alternative(kept);
        pairs.extend(implicit_pairs_from_swipes(&kept_alt, &discarded, &meta));
        if let Some(source) = edit_source
            .and_then(|k| tree.find(k))
            .and_then(|id| tree.node(id))
            && let Some(pair) =
                implicit_pair_from_edit(&alternative(source), &kept.message.text, &meta)
        {
            pairs.push(pair);
        }
        if let Some(edit) = thinking_edit
            && let Some(source) = tree.find(&edit.of).and_then(|id| tree.node(id))
            && let Some(pair) =
                implicit_pair_from_thinking_edit(&alternative(source), &kept_alt, edit, &meta)
        {
            pairs.push(pair);
        }
        Ok(pairs)
    }
}

fn chat_role(role: &str) -> Role {
    match role {
        "system" => Role::System,
        "assistant" => Role::Assistant,
        _ => Role::User,
    }
}

/// The engine's record of how a message was generated, if it has one.
fn engine_provenance(node: &Node) -> Option<EngineProvenance> {
    node.message
        .meta
        .provenance
        .clone()
        .and_then(|v| serde_json::from_value(v).ok())
}

/// The record's provenance from the engine's, with the exact prompt text.
pub fn provenance(prompt: String, engine: &EngineProvenance) -> Provenance {
    Provenance {
        prompt_sha256: prompt_sha256(&prompt),
        prompt_tokens_sha256: Some(engine.prompt_tokens_sha256.clone()).filter(|h| !h.is_empty()),
        prompt,
        model: engine.model.clone(),
        model_fingerprint: engine.model_fingerprint.clone(),
        adapter_sha256: engine.adapter.as_ref().map(|a| a.sha256.clone()),
        adapter_name: engine
            .adapter
            .as_ref()
            .and_then(|a| a.path.file_name().map(|n| n.to_string_lossy().into_owned())),
        sampling: engine
            .sampling
            .as_ref()
            .and_then(|s| serde_json::to_value(s).ok())
            .unwrap_or_default(),
        seed: Some(engine.seed),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests;
