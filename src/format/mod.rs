//! The HER reply format: tags, and the history rules that depend on them.
//!
//! A reply looks like
//! `<system_thinking>PLAN</system_thinking>Name: <role_thinking>…</role_thinking><role_action>…</role_action>speech`.

mod strip;

pub use strip::{strip_role_thinking, strip_speaker_prefix, strip_system_thinking};

/// What the generation prompt ends with, so the model writes its plan first.
pub const PREFILL: &str = "<system_thinking>";
