//! Training-set exports, JSONL with one sample per line:
//! TRL's conversational DPO and KTO formats, HER-layout SFT, HER-RM pairs.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::str::FromStr;

use serde::Serialize;

use super::record::{
    ContextMessage, PreferencePair, PreferenceRecord, RatedLayer, Rating, Role, Verdict,
};
use super::{PrefsError, write_atomic};
use crate::format::strip_system_thinking;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// TRL conversational preference: prompt / chosen / rejected.
    Dpo,
    /// TRL unpaired preference: prompt / completion / label.
    Kto,
    /// `{"messages": […]}`, only the last assistant turn keeps its plan.
    Sft,
    /// HER-RM pairs: context / cand_1 / cand_2 / better_response.
    HerRm,
}

impl Format {
    pub const ALL: [Self; 4] = [Self::Dpo, Self::Kto, Self::Sft, Self::HerRm];

    pub fn name(self) -> &'static str {
        match self {
            Self::Dpo => "dpo",
            Self::Kto => "kto",
            Self::Sft => "sft",
            Self::HerRm => "her_rm",
        }
    }

    /// The file [`export_all`] writes.
    pub fn file_name(self) -> &'static str {
        match self {
            Self::Dpo => "dpo.jsonl",
            Self::Kto => "kto.jsonl",
            Self::Sft => "sft.jsonl",
            Self::HerRm => "her_rm.jsonl",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Format {
    type Err = PrefsError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted = s.trim().to_ascii_lowercase().replace('-', "_");
        Self::ALL
            .into_iter()
            .find(|f| f.name() == wanted)
            .ok_or_else(|| PrefsError::UnknownFormat {
                value: s.to_string(),
            })
    }
}

/// What an export did: lines written, and records (or parts) left out, why.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExportReport {
    /// Lines written (a KTO pair gives two).
    pub written: usize,
    /// (record id, reason).
    pub skipped: Vec<(String, String)>,
}

impl ExportReport {
    /// Skips per reason with the record ids removed, for a one-line summary.
    pub fn skip_counts(&self) -> Vec<(String, usize)> {
        let mut counts: Vec<(String, usize)> = Vec::new();
        for (_, why) in &self.skipped {
            let key = why.split(':').next().unwrap_or(why).to_string();
            match counts.iter_mut().find(|(k, _)| *k == key) {
                Some((_, n)) => *n += 1,
                None => counts.push((key, 1)),
            }
        }
        counts
    }
}

/// Renders `records` in `format`: the JSONL text and the report.
pub fn render(
    records: &[PreferenceRecord],
    format: Format,
) -> Result<(String, ExportReport), PrefsError> {
    let mut out = Out::default();
    for record in records {
        if let Err(e) = record.validate() {
            out.skip(record.id(), format!("invalid: {e}"));
            continue;
        }
        match (format, record) {
            (Format::Dpo, PreferenceRecord::Pair(p)) => dpo(&mut out, p)?,
            (Format::Kto, PreferenceRecord::Pair(p)) => kto_pair(&mut out, p)?,
            (Format::Kto, PreferenceRecord::Rating(r)) => kto_rating(&mut out, r)?,
            (Format::Sft, PreferenceRecord::Pair(p)) => sft_pair(&mut out, p)?,
            (Format::Sft, PreferenceRecord::Rating(r)) => sft_rating(&mut out, r)?,
            (Format::HerRm, PreferenceRecord::Pair(p)) => her_rm(&mut out, p)?,
            (Format::Dpo | Format::HerRm, PreferenceRecord::Rating(r)) => out.skip(
                &r.id,
                "a rating, not a pair: derive pairs with pairs_from_ratings first".into(),
            ),
        }
    }
    Ok((out.text, out.report))
}

/// Renders and writes one format to `path` atomically.
pub fn export(
    records: &[PreferenceRecord],
    format: Format,
    path: &Path,
) -> Result<ExportReport, PrefsError> {
    let (text, report) = render(records, format)?;
    write_atomic(path, text.as_bytes())?;
    Ok(report)
}

/// Writes all four formats into `dir` under their [`Format::file_name`]s.
pub fn export_all(
    records: &[PreferenceRecord],
    dir: &Path,
) -> Result<Vec<(Format, ExportReport)>, PrefsError> {
    Format::ALL
        .into_iter()
        .map(|f| Ok((f, export(records, f, &dir.join(f.file_name()))?)))
        .collect()
}

#[derive(Debug, Serialize)]
struct Msg<'a> {
    role: &'static str,
    content: Cow<'a, str>,
}

impl<'a> Msg<'a> {
    fn assistant(content: &'a str) -> Self {
        Self {
            role: Role::Assistant.as_str(),
            content: Cow::Borrowed(content),
        }
    }
}

#[derive(Serialize)]
struct DpoLine<'a> {
    prompt: &'a [Msg<'a>],
    chosen: [Msg<'a>; 1],
    rejected: [Msg<'a>; 1],
}

#[derive(Serialize)]
struct KtoLine<'a> {
    prompt: &'a [Msg<'a>],
    completion: [Msg<'a>; 1],
    label: bool,
}

#[derive(Serialize)]
struct SftLine<'a> {
    messages: Vec<Msg<'a>>,
}

#[derive(Serialize)]
struct HerRmLine<'a> {
    context: &'a str,
    cand_1: &'a str,
    cand_2: &'a str,
    better_response: &'static str,
}

#[derive(Default)]
struct Out {
    text: String,
    report: ExportReport,
    /// Line → id of the record that first produced it.
    seen: HashMap<String, String>,
}

impl Out {
    fn skip(&mut self, id: &str, why: String) {
        self.report.skipped.push((id.to_string(), why));
    }

    /// Writes one sample unless an identical line is already there (a kept
    /// swipe beats several siblings: its SFT sample must count once).
    fn line(&mut self, id: &str, what: &str, sample: &impl Serialize) -> Result<(), PrefsError> {
        let line = serde_json::to_string(sample).map_err(|cause| PrefsError::Serialize {
            id: id.to_string(),
            cause,
        })?;
        if let Some(first) = self.seen.get(&line) {
            let why = format!("duplicate: {what}same sample as record {first:?}");
            self.skip(id, why);
            return Ok(());
        }
        self.text.push_str(&line);
        self.text.push('\n');
        self.report.written += 1;
        self.seen.insert(line, id.to_string());
        Ok(())
    }
}

/// The prompt as the policy sees it (her-format.md §2): earlier assistant
/// turns without their plans. The caller should already have done this;
/// stripping again is harmless and keeps a slip out of the training set.
fn prompt_messages(context: &[ContextMessage]) -> Vec<Msg<'_>> {
    context
        .iter()
        .map(|m| Msg {
            role: m.role.as_str(),
            content: match m.role {
                Role::Assistant => Cow::Owned(strip_system_thinking(&m.content)),
                Role::System | Role::User => Cow::Borrowed(m.content.as_str()),
            },
        })
        .collect()
}

fn undecided(verdict: Verdict) -> String {
    match verdict {
        Verdict::BothBad => "both bad: no chosen reply".into(),
        _ => "tie: no chosen reply".into(),
    }
}

fn dpo(out: &mut Out, p: &PreferencePair) -> Result<(), PrefsError> {
    let Some((winner, loser)) = p.winner_loser() else {
        out.skip(&p.id, undecided(p.verdict));
        return Ok(());
    };
    // Raw replies: the policy learns to plan, so the plan stays in both.
    let prompt = prompt_messages(&p.context);
    let line = DpoLine {
        prompt: &prompt,
        chosen: [Msg::assistant(winner)],
        rejected: [Msg::assistant(loser)],
    };
    out.line(&p.id, "", &line)
}

fn kto_pair(out: &mut Out, p: &PreferencePair) -> Result<(), PrefsError> {
    let labelled: Vec<(&str, bool, &str)> = match (p.verdict, p.winner_loser()) {
        (_, Some((winner, loser))) => vec![
            (winner, true, "chosen reply: "),
            (loser, false, "rejected reply: "),
        ],
        // Both bad is an explicit negative judgement of each reply.
        (Verdict::BothBad, None) => vec![
            (&p.cand_1, false, "cand_1: "),
            (&p.cand_2, false, "cand_2: "),
        ],
        _ => {
            out.skip(&p.id, "tie: says neither reply is good or bad".into());
            return Ok(());
        }
    };
    let prompt = prompt_messages(&p.context);
    for (reply, label, what) in labelled {
        let line = KtoLine {
            prompt: &prompt,
            completion: [Msg::assistant(reply)],
            label,
        };
        out.line(&p.id, what, &line)?;
    }
    Ok(())
}

/// The KTO label of a rating, or why it has none. A flaw in any layer makes
/// the whole reply a bad example; praise of one layer says nothing of the rest.
fn rating_label(r: &Rating) -> Result<bool, String> {
    match (r.score.polarity(), r.layer) {
        (None, _) => Err("neutral: 3 stars is neither good nor bad".into()),
        (Some(false), _) => Ok(false),
        (Some(true), RatedLayer::Whole) => Ok(true),
        (Some(true), layer) => Err(format!(
            "partial: a positive rating of the {} layer alone does not vouch for the whole reply",
            layer_name(layer)
        )),
    }
}

fn layer_name(layer: RatedLayer) -> &'static str {
    match layer {
        RatedLayer::Whole => "whole",
        RatedLayer::Plan => "plan",
        RatedLayer::Thinking => "thinking",
        RatedLayer::Visible => "visible",
    }
}

fn kto_rating(out: &mut Out, r: &Rating) -> Result<(), PrefsError> {
    let label = match rating_label(r) {
        Ok(label) => label,
        Err(why) => {
            out.skip(&r.id, why);
            return Ok(());
        }
    };
    let prompt = prompt_messages(&r.context);
    let line = KtoLine {
        prompt: &prompt,
        completion: [Msg::assistant(&r.reply)],
        label,
    };
    out.line(&r.id, "", &line)
}

fn sft_line(
    out: &mut Out,
    id: &str,
    context: &[ContextMessage],
    reply: &str,
) -> Result<(), PrefsError> {
    // Only the final turn keeps its plan: it is the one in the loss (§5).
    let mut messages = prompt_messages(context);
    messages.push(Msg::assistant(reply));
    out.line(id, "", &SftLine { messages })
}

fn sft_pair(out: &mut Out, p: &PreferencePair) -> Result<(), PrefsError> {
    match p.winner_loser() {
        Some((winner, _)) => sft_line(out, &p.id, &p.context, winner),
        None => {
            out.skip(&p.id, undecided(p.verdict));
            Ok(())
        }
    }
}

fn sft_rating(out: &mut Out, r: &Rating) -> Result<(), PrefsError> {
    match rating_label(r) {
        Ok(true) => sft_line(out, &r.id, &r.context, &r.reply),
        Ok(false) => {
            out.skip(&r.id, "negative: a bad reply is no SFT target".into());
            Ok(())
        }
        Err(why) => {
            out.skip(&r.id, why);
            Ok(())
        }
    }
}

/// HER-RM's context: `System: …`, `User: …`, `Assistant: …` blocks.
pub fn her_rm_context(context: &[ContextMessage]) -> String {
    prompt_messages(context)
        .iter()
        .zip(context)
        .map(|(m, original)| format!("{}: {}", original.role.rm_label(), m.content))
        .collect::<Vec<_>>()
        .join("\n\n")
}

fn her_rm(out: &mut Out, p: &PreferencePair) -> Result<(), PrefsError> {
    let better = match p.verdict {
        Verdict::Cand1 => "cand_1",
        Verdict::Cand2 => "cand_2",
        Verdict::Tie => "tie",
        Verdict::BothBad => {
            out.skip(&p.id, "both bad: HER-RM has no such label".into());
            return Ok(());
        }
    };
    // The judge never sees plans (§4); role thinking stays and is judged.
    let cand_1 = strip_system_thinking(&p.cand_1);
    let cand_2 = strip_system_thinking(&p.cand_2);
    if cand_1 == cand_2 {
        out.skip(
            &p.id,
            "identical: the candidates differ only in their plans".into(),
        );
        return Ok(());
    }
    let context = her_rm_context(&p.context);
    let line = HerRmLine {
        context: &context,
        cand_1: &cand_1,
        cand_2: &cand_2,
        better_response: better,
    };
    out.line(&p.id, "", &line)
}

#[cfg(test)]
mod tests;
