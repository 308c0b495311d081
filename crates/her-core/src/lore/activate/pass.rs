//! One scan of a [`Library`]: the passes, the gates, the group picks, the
//! rolls and the budget, from the input messages to the outcome.

use std::collections::HashMap;

use super::super::explain::{
    Activation, ContextField, KeyMatch, LeftOut, Reason, SecondaryMatch, Source, Why,
};
use super::super::model::{Logic, MAX_SCAN_DEPTH};
use super::budget::{Spend, budget_tokens};
use super::compile::{Compiled, Key};
use super::groups::{Candidate, GroupContext};
use super::scan::{At, Buffer, INJECTED, View};
use super::timed::ScanTimers;
use super::{Library, ScanInput, ScanOutcome};
use super::{groups, roll};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PassKind {
    Initial,
    Recursion,
    MinActivations,
}

/// Names the rolls so different rolls of one scan differ.
const PROBABILITY_ROLL: u64 = 1;
const GROUP_ROLL: u64 = 2;

/// The state of one scan.
pub(super) struct Scan<'l, 'i> {
    lib: &'l Library,
    input: &'i ScanInput<'i>,
    tokens: &'i dyn Fn(&str) -> usize,
    length: u64,
    replies: u64,
    buffer: Buffer<'l>,
    timers: ScanTimers,
    spend: Spend,
    activated: Vec<bool>,
    failed_roll: Vec<bool>,
    accepted: Vec<(usize, Activation)>,
    left_out: Vec<Option<LeftOut>>,
    kind: PassKind,
    pass: u32,
    skew: usize,
    level: u32,
}

impl<'l, 'i> Scan<'l, 'i> {
    pub(super) fn new(
        lib: &'l Library,
        input: &'i ScanInput<'i>,
        tokens: &'i dyn Fn(&str) -> usize,
    ) -> Self {
        let s = &lib.settings;
        let length = input.messages.len() as u64;
        let timers = ScanTimers::check(input.timed, length, |book, uid| {
            let b = *lib.book_by_name.get(book)?;
            let i = *lib.by_uid.get(&(b, uid))?;
            Some((i, lib.entries[i].timers))
        });
        let wanted = if s.min_activations > 0 {
            MAX_SCAN_DEPTH
        } else {
            s.scan_depth.max(lib.max_scan_depth)
        };
        let depth = (wanted.min(MAX_SCAN_DEPTH) as usize).min(input.messages.len());
        let n = lib.entries.len();
        Scan {
            lib,
            input,
            tokens,
            length,
            replies: input.messages.iter().filter(|m| !m.is_user).count() as u64,
            buffer: Buffer::new(lib, input, depth),
            timers,
            spend: Spend::new(budget_tokens(s.budget, s.budget_cap, input.max_context)),
            activated: vec![false; n],
            failed_roll: vec![false; n],
            accepted: Vec::new(),
            left_out: vec![None; n],
            kind: PassKind::Initial,
            pass: 0,
            skew: 0,
            level: lib.delay_levels.first().copied().unwrap_or(0),
        }
    }

    pub(super) fn run(mut self) -> ScanOutcome {
        let lib = self.lib;
        let s = &lib.settings;
        let mut later_levels = lib.delay_levels.iter().skip(1).copied();
        loop {
            if s.max_recursion_steps > 0 && self.pass >= s.max_recursion_steps {
                break;
            }
            self.pass += 1;
            let mut candidates = self.collect();
            // Sticky entries first, the rest in base order.
            candidates.sort_by_key(|c| !c.sticky);
            self.apply_groups(&mut candidates);
            let fed = self.spend_budget(candidates);

            let mut next = None;
            let more_recursion = !fed.is_empty()
                || (self.kind == PassKind::MinActivations && self.buffer.has_recursion());
            if s.recursive && !self.spend.overflowed && more_recursion {
                next = Some(PassKind::Recursion);
            }
            if next.is_none()
                && !self.spend.overflowed
                && s.min_activations > 0
                && (self.accepted.len() as u64) < u64::from(s.min_activations)
            {
                let depth = s.scan_depth as usize + self.skew;
                let max = s.min_activations_depth_max as usize;
                let too_deep = (max > 0 && depth > max) || depth as u64 > self.length;
                if !too_deep {
                    self.skew += 1;
                    next = Some(PassKind::MinActivations);
                }
            }
            // Delayed levels only open while recursion can run at all
            // (SillyTavern opens them even with recursion off or the budget
            // spent, which "delay until recursion" does not mean).
            if next.is_none() && s.recursive && !self.spend.overflowed {
                if let Some(level) = later_levels.next() {
                    self.level = level;
                    next = Some(PassKind::Recursion);
                }
            }
            let Some(kind) = next else { break };
            for (entry, content) in fed {
                self.buffer.add_recursion(entry, self.pass, &content);
            }
            self.kind = kind;
        }
        self.finish()
    }

    /// The entries whose condition holds in this pass; gated ones that
    /// would have matched are remembered as left out.
    fn collect(&mut self) -> Vec<Candidate> {
        let lib = self.lib;
        let mut candidates = Vec::new();
        for &i in &lib.base_order {
            if self.activated[i] || self.failed_roll[i] {
                continue;
            }
            let e = &lib.entries[i];
            if !self.applies(e) {
                continue;
            }
            let sticky = self.timers.is_sticky(i);
            let view = self.view(e, self.kind != PassKind::MinActivations);
            match self.gate(i, e, sticky) {
                None => {
                    if let Some(why) = self.condition(e, sticky, view) {
                        candidates.push(Candidate {
                            entry: i,
                            why,
                            sticky,
                        });
                    }
                }
                Some(Reason::ExcludedFromRecursion) => {
                    // Only worth saying when other entries' content is what matched.
                    let chat_only = View {
                        recursion: false,
                        ..view
                    };
                    if self.condition(e, sticky, chat_only).is_none() {
                        if let Some(why) = self.condition(e, sticky, view) {
                            self.leave_out(i, why, Reason::ExcludedFromRecursion);
                        }
                    }
                }
                Some(reason) => {
                    if let Some(why) = self.condition(e, sticky, view) {
                        self.leave_out(i, why, reason);
                    }
                }
            }
        }
        candidates
    }

    /// Filters that make an entry not exist for this scan: disabled,
    /// generation type, character name and tags.
    fn applies(&self, e: &Compiled) -> bool {
        if e.disabled {
            return false;
        }
        if !e.triggers.is_empty() && !e.triggers.iter().any(|t| t == self.input.trigger) {
            return false;
        }
        if let Some(filter) = &e.filter {
            if !filter.names.is_empty() {
                let named = self
                    .input
                    .character
                    .is_some_and(|c| filter.names.iter().any(|n| n == c));
                if named == filter.exclude {
                    return false;
                }
            }
            if let (false, Some(tags)) = (filter.tags.is_empty(), self.input.character_tags) {
                let tagged = tags.iter().any(|t| filter.tags.contains(t));
                if tagged == filter.exclude {
                    return false;
                }
            }
        }
        true
    }

    /// SillyTavern's gates, in its order; `None` lets the entry through.
    fn gate(&self, i: usize, e: &Compiled, sticky: bool) -> Option<Reason> {
        if e.delay > 0 && self.length < u64::from(e.delay) {
            return Some(Reason::Delay {
                until: u64::from(e.delay),
            });
        }
        if !sticky {
            if let Some(until) = self.timers.cooldown_until(i) {
                return Some(Reason::Cooldown { until });
            }
        }
        let recursion = self.kind == PassKind::Recursion;
        if e.delay_level > 0 && !sticky && (!recursion || e.delay_level > self.level) {
            return Some(Reason::DelayedUntilRecursion {
                level: e.delay_level,
            });
        }
        if recursion && self.lib.settings.recursive && e.exclude_recursion && !sticky {
            return Some(Reason::ExcludedFromRecursion);
        }
        if let Some(n) = e.only_after {
            if self.replies < u64::from(n) {
                return Some(Reason::ReplyCount {
                    rule: format!("@@activate_only_after {n}"),
                });
            }
        }
        if let Some(n) = e.only_every {
            if self.replies % u64::from(n) != 0 {
                return Some(Reason::ReplyCount {
                    rule: format!("@@activate_only_every {n}"),
                });
            }
        }
        if e.dont_activate && !e.activate {
            return Some(Reason::DontActivate);
        }
        None
    }

    fn view(&self, e: &Compiled, recursion: bool) -> View {
        let global = self.lib.settings.scan_depth as usize + self.skew;
        View {
            depth: e
                .scan_depth
                .map_or(global, |d| d as usize)
                .min(MAX_SCAN_DEPTH as usize),
            mask: e.sources | INJECTED,
            recursion,
        }
    }

    /// What activates the entry in `view`, if anything does.
    fn condition(&mut self, e: &Compiled, sticky: bool, view: View) -> Option<Why> {
        if e.activate {
            return Some(Why::Decorator);
        }
        if e.constant {
            return Some(Why::Constant);
        }
        if sticky {
            return Some(Why::Sticky);
        }
        let (key, at) = e
            .primary
            .iter()
            .find_map(|k| self.buffer.find(k, view).map(|at| (k, at)))?;
        for set in &e.additional {
            if !set.iter().any(|k| self.buffer.find(k, view).is_some()) {
                return None;
            }
        }
        if e.exclude
            .iter()
            .any(|k| self.buffer.find(k, view).is_some())
        {
            return None;
        }
        let secondary = if e.selective && !e.secondary.is_empty() {
            Some(self.secondary(e, view)?)
        } else {
            None
        };
        Some(Why::Keys(KeyMatch {
            key: key.text.clone(),
            found_in: self.source(at),
            secondary,
        }))
    }

    fn secondary(&mut self, e: &Compiled, view: View) -> Option<SecondaryMatch> {
        let found: Vec<(&Key, Option<At>)> = e
            .secondary
            .iter()
            .map(|k| (k, self.buffer.find(k, view)))
            .collect();
        match e.logic {
            Logic::AndAny => found.iter().find_map(|(k, at)| {
                at.map(|at| SecondaryMatch::AndAny {
                    key: k.text.clone(),
                    found_in: self.source(at),
                })
            }),
            Logic::NotAll => {
                found
                    .iter()
                    .find(|(_, at)| at.is_none())
                    .map(|(k, _)| SecondaryMatch::NotAll {
                        missing: k.text.clone(),
                    })
            }
            Logic::NotAny => found
                .iter()
                .all(|(_, at)| at.is_none())
                .then_some(SecondaryMatch::NotAny),
            Logic::AndAll => found
                .iter()
                .all(|(_, at)| at.is_some())
                .then_some(SecondaryMatch::AndAll),
        }
    }

    /// SillyTavern's `getScore`: primary keys found, plus secondary keys
    /// for the positive logics.
    fn score(&mut self, i: usize) -> usize {
        let lib = self.lib;
        let e = &lib.entries[i];
        if e.primary.is_empty() {
            return 0;
        }
        let view = self.view(e, self.kind != PassKind::MinActivations);
        let mut count = |keys: &[Key]| {
            keys.iter()
                .filter(|k| self.buffer.find(k, view).is_some())
                .count()
        };
        let primary = count(&e.primary);
        let secondary = count(&e.secondary);
        match e.logic {
            _ if e.secondary.is_empty() => primary,
            Logic::AndAny => primary + secondary,
            Logic::AndAll if secondary == e.secondary.len() => primary + secondary,
            _ => primary,
        }
    }

    fn source(&self, at: At) -> Source {
        match at {
            At::Message(from_end) => Source::Message { from_end },
            At::Context(bit) => Source::Context {
                field: ContextField::ALL[usize::from(bit).min(5)],
            },
            At::Injected => Source::Injected,
            At::Recursion(entry) => {
                let e = &self.lib.entries[entry];
                Source::Recursion {
                    book: self.lib.books[e.book].0.name.clone(),
                    uid: e.uid,
                }
            }
        }
    }

    fn apply_groups(&mut self, candidates: &mut Vec<Candidate>) {
        let lib = self.lib;
        let mut scores: HashMap<usize, usize> = HashMap::new();
        for c in candidates.iter() {
            if !lib.entries[c.entry].groups.is_empty() {
                let score = self.score(c.entry);
                scores.insert(c.entry, score);
            }
        }
        let (seed, length, pass) = (self.input.seed, self.length, u64::from(self.pass));
        let accepted = &self.accepted;
        let earlier = |group: &str| {
            accepted
                .iter()
                .find(|(i, _)| lib.entries[*i].groups.iter().any(|g| g == group))
                .map(|(i, _)| lib.label(*i))
        };
        let roll =
            |group: &str| roll::unit(seed, &[GROUP_ROLL, length, pass, roll::text_id(group)]);
        let score = |i: usize| scores.get(&i).copied().unwrap_or(0);
        let removed = groups::filter(
            candidates,
            GroupContext {
                lib,
                earlier: &earlier,
                score: &score,
                roll: &roll,
            },
        );
        for r in removed {
            self.leave_out(r.candidate.entry, r.candidate.why, r.reason);
        }
    }

    /// Probability and budget, in candidate order. Returns the entries that
    /// feed recursion.
    fn spend_budget(&mut self, candidates: Vec<Candidate>) -> Vec<(usize, String)> {
        let lib = self.lib;
        let mut fed = Vec::new();
        for c in candidates {
            let e = &lib.entries[c.entry];
            if self.spend.overflowed && !e.ignore_budget {
                self.leave_out(c.entry, c.why, Reason::BudgetSpent);
                continue;
            }
            if e.use_probability && e.probability != 100.0 && !c.sticky {
                let book = roll::text_id(&lib.books[e.book].0.name);
                let roll = 100.0
                    * roll::unit(
                        self.input.seed,
                        &[PROBABILITY_ROLL, self.length, book, u64::from(e.uid)],
                    );
                if roll > e.probability {
                    self.failed_roll[c.entry] = true;
                    self.leave_out(
                        c.entry,
                        c.why,
                        Reason::Probability {
                            roll,
                            probability: e.probability,
                        },
                    );
                    continue;
                }
            }
            let content = match self.input.macros {
                Some(substitute) => substitute(&e.content),
                None => e.content.clone(),
            };
            let tokens = (self.tokens)(&format!("{content}\n"));
            let left = self.spend.left();
            if !self.spend.take(tokens, e.ignore_budget) {
                self.leave_out(c.entry, c.why, Reason::Budget { tokens, left });
                continue;
            }
            self.activated[c.entry] = true;
            self.left_out[c.entry] = None;
            if !e.prevent_recursion {
                fed.push((c.entry, content.clone()));
            }
            self.accepted.push((
                c.entry,
                Activation {
                    book: lib.books[e.book].0.name.clone(),
                    uid: e.uid,
                    comment: lib.comment(c.entry).to_string(),
                    content,
                    placement: e.placement.clone(),
                    order: e.order,
                    tokens,
                    pass: self.pass,
                    why: c.why,
                },
            ));
        }
        fed
    }

    /// Remembers why a matched entry stays out; the latest pass's reason
    /// wins, except that a group's first verdict (a lost roll, a lower
    /// score) is kept over the "group already served" that follows it.
    fn leave_out(&mut self, entry: usize, matched: Why, reason: Reason) {
        let is_group =
            |r: &Reason| matches!(r, Reason::GroupLost { .. } | Reason::GroupScore { .. });
        if self.left_out[entry]
            .as_ref()
            .is_some_and(|old| is_group(&old.reason) && is_group(&reason))
        {
            return;
        }
        self.left_out[entry] = Some(LeftOut {
            book: self.lib.books[self.lib.entries[entry].book].0.name.clone(),
            uid: self.lib.entries[entry].uid,
            comment: self.lib.comment(entry).to_string(),
            pass: self.pass,
            matched,
            reason,
        });
    }

    fn finish(mut self) -> ScanOutcome {
        let lib = self.lib;
        for (i, a) in &self.accepted {
            self.timers
                .on_activated(&a.book, a.uid, lib.entries[*i].timers);
        }
        let left_out = lib
            .base_order
            .iter()
            .filter_map(|&i| self.left_out[i].take())
            .collect();
        ScanOutcome {
            activated: self.accepted.into_iter().map(|(_, a)| a).collect(),
            left_out,
            timed: self.timers.state,
            timed_events: self.timers.events,
            budget: self.spend.budget,
            used_tokens: self.spend.used,
            overflowed: self.spend.overflowed,
            passes: self.pass,
        }
    }
}
