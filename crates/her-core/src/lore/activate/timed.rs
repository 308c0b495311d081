//! Timed effects (sticky, cooldown, delay) as a pure value the caller keeps.
//!
//! SillyTavern keeps `{sticky, cooldown}` records `{start, end, protected}`
//! per `book.uid` in the chat's metadata, where `start`/`end` count chat
//! messages (`WorldInfoTimedEffects`). Here every change is an event:
//! a scan takes the state, returns the events it caused and the state after
//! them. The session log stores a scan's events with the message it
//! generated; the state for the next scan on a branch is the replay of the
//! events recorded along that branch's path from the root. A branch switch or
//! a resume therefore recomputes the state of exactly that path, and a
//! regenerated reply (a sibling) never sees its discarded sibling's effects.
//! The "chat did not advance" rule (a record whose start is not before the
//! current message count is dropped) is kept as SillyTavern has it, so a
//! state carried to a shorter branch by mistake still corrects itself.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EffectKind {
    Sticky,
    Cooldown,
}

/// One running effect. It is in force for scans with
/// `start < message count < end` (and from `start` on when `protected`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimedEffect {
    pub kind: EffectKind,
    pub book: String,
    pub uid: u32,
    pub start: u64,
    pub end: u64,
    /// A cooldown that follows a sticky: in force at once.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub protected: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    /// Its time ran out.
    Expired,
    /// The chat is not longer than when it started (swipe, regenerate,
    /// deleted messages).
    ChatRewound,
    /// The entry is in no book of this scan any more, and its time ran out.
    EntryGone,
    /// The entry no longer has this effect.
    EffectRemoved,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "event")]
pub enum TimedEvent {
    Started(TimedEffect),
    Ended {
        kind: EffectKind,
        book: String,
        uid: u32,
        reason: EndReason,
    },
}

/// The effects in force, one per (kind, book, uid).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimedState {
    #[serde(default)]
    effects: Vec<TimedEffect>,
}

impl TimedState {
    pub fn effects(&self) -> &[TimedEffect] {
        &self.effects
    }

    pub fn get(&self, kind: EffectKind, book: &str, uid: u32) -> Option<&TimedEffect> {
        self.effects
            .iter()
            .find(|e| e.kind == kind && e.uid == uid && e.book == book)
    }

    /// Applies one event: a start replaces any record of the same kind and
    /// entry; an end removes it.
    pub fn apply(&mut self, event: &TimedEvent) {
        match event {
            TimedEvent::Started(effect) => {
                self.remove(effect.kind, &effect.book, effect.uid);
                self.effects.push(effect.clone());
            }
            TimedEvent::Ended {
                kind, book, uid, ..
            } => self.remove(*kind, book, *uid),
        }
    }

    /// The state after `events`, in order (e.g. every scan recorded on the
    /// path from a session's root to the current message).
    pub fn replay<'a>(events: impl IntoIterator<Item = &'a TimedEvent>) -> TimedState {
        let mut state = TimedState::default();
        events.into_iter().for_each(|e| state.apply(e));
        state
    }

    /// This state with `events` applied.
    pub fn with_events(&self, events: &[TimedEvent]) -> TimedState {
        let mut state = self.clone();
        for event in events {
            state.apply(event);
        }
        state
    }

    fn remove(&mut self, kind: EffectKind, book: &str, uid: u32) {
        self.effects
            .retain(|e| !(e.kind == kind && e.uid == uid && e.book == book));
    }
}

/// What an entry needs to know about timed effects in one scan.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EntryTimers {
    pub sticky: u32,
    pub cooldown: u32,
}

/// The effects in force for one scan, and the events so far.
#[derive(Debug)]
pub struct ScanTimers {
    pub state: TimedState,
    pub events: Vec<TimedEvent>,
    /// Entry index → end of the effect in force.
    sticky: HashMap<usize, u64>,
    cooldown: HashMap<usize, u64>,
    length: u64,
}

impl ScanTimers {
    /// SillyTavern's `checkTimedEffects` for a chat of `length` messages:
    /// sticky records first (an ending sticky starts its entry's cooldown),
    /// then cooldown records. `find` maps (book, uid) to an entry index and
    /// its timers.
    pub fn check(
        previous: &TimedState,
        length: u64,
        find: impl Fn(&str, u32) -> Option<(usize, EntryTimers)>,
    ) -> ScanTimers {
        let mut timers = ScanTimers {
            state: previous.clone(),
            events: Vec::new(),
            sticky: HashMap::new(),
            cooldown: HashMap::new(),
            length,
        };
        for kind in [EffectKind::Sticky, EffectKind::Cooldown] {
            let records: Vec<TimedEffect> = timers
                .state
                .effects
                .iter()
                .filter(|e| e.kind == kind)
                .cloned()
                .collect();
            for record in records {
                let found = find(&record.book, record.uid);
                let end = |timers: &mut ScanTimers, reason| {
                    timers.push(TimedEvent::Ended {
                        kind,
                        book: record.book.clone(),
                        uid: record.uid,
                        reason,
                    })
                };
                if length <= record.start && !record.protected {
                    end(&mut timers, EndReason::ChatRewound);
                    continue;
                }
                let Some((index, entry)) = found else {
                    if length >= record.end {
                        end(&mut timers, EndReason::EntryGone);
                    }
                    continue;
                };
                let has_effect = match kind {
                    EffectKind::Sticky => entry.sticky > 0,
                    EffectKind::Cooldown => entry.cooldown > 0,
                };
                if !has_effect {
                    end(&mut timers, EndReason::EffectRemoved);
                    continue;
                }
                if length >= record.end {
                    end(&mut timers, EndReason::Expired);
                    if kind == EffectKind::Sticky && entry.cooldown > 0 {
                        // The cooldown after a sticky holds from now on.
                        timers.push(TimedEvent::Started(TimedEffect {
                            kind: EffectKind::Cooldown,
                            book: record.book.clone(),
                            uid: record.uid,
                            start: length,
                            end: length + u64::from(entry.cooldown),
                            protected: true,
                        }));
                    }
                    continue;
                }
                let active = match kind {
                    EffectKind::Sticky => &mut timers.sticky,
                    EffectKind::Cooldown => &mut timers.cooldown,
                };
                active.insert(index, record.end);
            }
        }
        timers
    }

    fn push(&mut self, event: TimedEvent) {
        self.state.apply(&event);
        self.events.push(event);
    }

    pub fn is_sticky(&self, index: usize) -> bool {
        self.sticky.contains_key(&index)
    }

    /// End of the cooldown in force, if any.
    pub fn cooldown_until(&self, index: usize) -> Option<u64> {
        self.cooldown.get(&index).copied()
    }

    /// SillyTavern's `setTimedEffects`: an activated entry with sticky or
    /// cooldown starts it unless a record already runs.
    pub fn on_activated(&mut self, book: &str, uid: u32, timers: EntryTimers) {
        for (kind, length) in [
            (EffectKind::Sticky, timers.sticky),
            (EffectKind::Cooldown, timers.cooldown),
        ] {
            if length == 0 || self.state.get(kind, book, uid).is_some() {
                continue;
            }
            self.push(TimedEvent::Started(TimedEffect {
                kind,
                book: book.to_string(),
                uid,
                start: self.length,
                end: self.length + u64::from(length),
                protected: false,
            }));
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const STICKY_2_COOLDOWN_3: EntryTimers = EntryTimers {
        sticky: 2,
        cooldown: 3,
    };

    fn find(book: &str, uid: u32) -> Option<(usize, EntryTimers)> {
        (book == "b" && uid == 1).then_some((0, STICKY_2_COOLDOWN_3))
    }

    #[test]
    fn sticky_then_cooldown_follow_the_message_count() {
        // Activated at 4 messages: sticky for scans at 5 (not 4, not 6).
        let mut t = ScanTimers::check(&TimedState::default(), 4, find);
        t.on_activated("b", 1, STICKY_2_COOLDOWN_3);
        let after_4 = t.state.clone();
        assert_eq!(t.events.len(), 2);
        let t5 = ScanTimers::check(&after_4, 5, find);
        assert!(t5.is_sticky(0));
        // At 6 the sticky ends and a protected cooldown runs to 9.
        let t6 = ScanTimers::check(&t5.state, 6, find);
        assert!(!t6.is_sticky(0));
        assert_eq!(t6.cooldown_until(0), Some(9));
        assert!(
            t6.state
                .get(EffectKind::Cooldown, "b", 1)
                .unwrap()
                .protected
        );
        let t8 = ScanTimers::check(&t6.state, 8, find);
        assert_eq!(t8.cooldown_until(0), Some(9));
        let t9 = ScanTimers::check(&t8.state, 9, find);
        assert_eq!(t9.cooldown_until(0), None);
        assert!(t9.state.effects().is_empty());
    }

    #[test]
    fn a_rewound_chat_drops_unprotected_records() {
        let mut t = ScanTimers::check(&TimedState::default(), 4, find);
        t.on_activated("b", 1, STICKY_2_COOLDOWN_3);
        let again = ScanTimers::check(&t.state, 4, find);
        assert!(!again.is_sticky(0));
        assert!(again.state.effects().is_empty());
        assert!(again.events.iter().all(|e| matches!(
            e,
            TimedEvent::Ended {
                reason: EndReason::ChatRewound,
                ..
            }
        )));
    }

    #[test]
    fn events_replay_to_the_same_state_and_survive_json() {
        let mut t = ScanTimers::check(&TimedState::default(), 4, find);
        t.on_activated("b", 1, STICKY_2_COOLDOWN_3);
        let t6 = ScanTimers::check(&t.state, 6, find);
        let all: Vec<TimedEvent> = t.events.iter().chain(&t6.events).cloned().collect();
        assert_eq!(TimedState::replay(&all), t6.state);
        let json = serde_json::to_string(&all).unwrap();
        let back: Vec<TimedEvent> = serde_json::from_str(&json).unwrap();
        assert_eq!(back, all);
    }

    #[test]
    fn records_of_missing_entries_wait_for_their_end() {
        let state = TimedState::replay(&[TimedEvent::Started(TimedEffect {
            kind: EffectKind::Sticky,
            book: "gone".into(),
            uid: 9,
            start: 2,
            end: 5,
            protected: false,
        })]);
        let none = |_: &str, _: u32| None;
        assert_eq!(ScanTimers::check(&state, 4, none).state, state);
        assert!(
            ScanTimers::check(&state, 5, none)
                .state
                .effects()
                .is_empty()
        );
    }
}
