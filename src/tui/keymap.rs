//! Key chords to actions, per layer. Every binding has a description that
//! the help overlay shows; user bindings from `[keys]` replace the defaults
//! of the actions they name and leave everything else alone.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use crate::tui::action::Action;

/// Where keyboard focus is: each has its own bindings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Layer {
    /// Typing a message.
    Input,
    /// Moving through the transcript.
    Transcript,
    /// A list: picker, tree view.
    List,
    /// Help, raw view and other read-only overlays.
    Overlay,
    /// A dialog that takes typed text and single-key choices (rating, arena).
    Dialog,
    /// The annotation screen (`her annotate`): none of the chat's global keys.
    Annotate,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Chord {
    pub code: KeyCode,
    pub mods: KeyModifiers,
}

impl Chord {
    pub fn from_event(key: &KeyEvent) -> Self {
        // Shift is part of the character for printable keys ('G', '?').
        let mods = if matches!(key.code, KeyCode::Char(_)) {
            key.modifiers - KeyModifiers::SHIFT
        } else {
            key.modifiers
        };
        Self {
            code: key.code,
            mods,
        }
    }

    /// Parses "ctrl+r", "alt+left", "f2", "enter", "?", "shift+tab".
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut mods = KeyModifiers::NONE;
        // A '+' at the end is the key itself: "+", "ctrl++".
        let (modifiers, key) = match text.strip_suffix('+') {
            Some("") => ("", "+"),
            Some(rest) if rest.ends_with('+') => (&rest[..rest.len() - 1], "+"),
            _ => text.rsplit_once('+').unwrap_or(("", text)),
        };
        let modifiers: Vec<&str> = if modifiers.is_empty() {
            Vec::new()
        } else {
            modifiers.split('+').collect()
        };
        for m in &modifiers {
            mods |= match m.to_ascii_lowercase().as_str() {
                "ctrl" | "control" => KeyModifiers::CONTROL,
                "alt" | "meta" => KeyModifiers::ALT,
                "shift" => KeyModifiers::SHIFT,
                other => {
                    return Err(format!(
                        "'{other}' in '{text}' is not a modifier (ctrl, alt, shift)"
                    ));
                }
            };
        }
        let lower = key.to_ascii_lowercase();
        let code = match lower.as_str() {
            "enter" | "return" => KeyCode::Enter,
            "esc" | "escape" => KeyCode::Esc,
            "tab" => KeyCode::Tab,
            "backtab" => KeyCode::BackTab,
            "backspace" => KeyCode::Backspace,
            "delete" | "del" => KeyCode::Delete,
            "left" => KeyCode::Left,
            "right" => KeyCode::Right,
            "up" => KeyCode::Up,
            "down" => KeyCode::Down,
            "home" => KeyCode::Home,
            "end" => KeyCode::End,
            "pageup" => KeyCode::PageUp,
            "pagedown" => KeyCode::PageDown,
            "space" => KeyCode::Char(' '),
            f if f.starts_with('f') && f.len() > 1 && f[1..].parse::<u8>().is_ok() => KeyCode::F(
                f[1..]
                    .parse()
                    .map_err(|_| format!("'{text}' is not a key"))?,
            ),
            _ => {
                let mut chars = key.chars();
                match (chars.next(), chars.next()) {
                    (Some(c), None) => KeyCode::Char(c),
                    _ => {
                        return Err(format!(
                            "'{text}' is not a key (try e.g. 'ctrl+r', 'f2', 'alt+left')"
                        ));
                    }
                }
            }
        };
        Ok(Self { code, mods })
    }
}

impl fmt::Display for Chord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.mods.contains(KeyModifiers::CONTROL) {
            f.write_str("ctrl+")?;
        }
        if self.mods.contains(KeyModifiers::ALT) {
            f.write_str("alt+")?;
        }
        if self.mods.contains(KeyModifiers::SHIFT) {
            f.write_str("shift+")?;
        }
        match self.code {
            KeyCode::Char(' ') => f.write_str("space"),
            KeyCode::Char(c) => write!(f, "{c}"),
            KeyCode::F(n) => write!(f, "f{n}"),
            KeyCode::Enter => f.write_str("enter"),
            KeyCode::Esc => f.write_str("esc"),
            KeyCode::Left => f.write_str("left"),
            KeyCode::Right => f.write_str("right"),
            KeyCode::Up => f.write_str("up"),
            KeyCode::Down => f.write_str("down"),
            KeyCode::PageUp => f.write_str("pageup"),
            KeyCode::PageDown => f.write_str("pagedown"),
            KeyCode::Home => f.write_str("home"),
            KeyCode::End => f.write_str("end"),
            KeyCode::Tab => f.write_str("tab"),
            KeyCode::Backspace => f.write_str("backspace"),
            KeyCode::Delete => f.write_str("delete"),
            other => write!(f, "{other:?}"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Keymap {
    bindings: HashMap<(Layer, Chord), Action>,
}

fn chord(text: &str) -> Chord {
    // Defaults are literals checked by a test; an unparsable one maps to F(0), which no key sends.
    Chord::parse(text).unwrap_or(Chord {
        code: KeyCode::F(0),
        mods: KeyModifiers::NONE,
    })
}

impl Default for Keymap {
    fn default() -> Self {
        use Action::*;
        use Layer::*;
        let global: &[(&str, Action)] = &[
            ("ctrl+q", Quit),
            ("f1", ToggleHelp),
            ("ctrl+c", StopGeneration),
            ("pageup", PageUp),
            ("pagedown", PageDown),
            ("f2", TogglePlan),
            ("f3", ToggleThoughts),
            ("f4", ToggleRaw),
            ("f5", ToggleTree),
            ("f6", ShowTokens),
            // Also in the transcript: a quick esc + arrow arrives as alt + arrow.
            ("alt+left", SwipePrev),
            ("alt+right", SwipeNext),
        ];
        // Rating keys: in the transcript and on the annotate screen.
        let rating: &[(&str, Action)] = &[
            ("+", RateUp),
            ("-", RateDown),
            ("1", RateStars(1)),
            ("2", RateStars(2)),
            ("3", RateStars(3)),
            ("4", RateStars(4)),
            ("5", RateStars(5)),
        ];
        let per_layer: &[(Layer, &[(&str, Action)])] = &[
            (
                Input,
                &[
                    ("enter", Submit),
                    ("alt+enter", Newline),
                    ("ctrl+j", Newline),
                    ("ctrl+e", OpenEditor),
                    ("esc", FocusTranscript),
                    ("up", HistoryPrev),
                    ("down", HistoryNext),
                    ("left", CursorLeft),
                    ("right", CursorRight),
                    ("home", CursorHome),
                    ("end", CursorEnd),
                    ("backspace", Backspace),
                    ("delete", DeleteForward),
                    ("ctrl+r", Regenerate),
                ],
            ),
            (
                Transcript,
                &[
                    ("up", SelectPrev),
                    ("k", SelectPrev),
                    ("down", SelectNext),
                    ("j", SelectNext),
                    ("left", SwipePrev),
                    ("h", SwipePrev),
                    ("right", SwipeNext),
                    ("l", SwipeNext),
                    ("r", Regenerate),
                    ("c", Continue),
                    ("e", EditSelected),
                    ("d", DeleteSelected),
                    ("P", PinSelected),
                    ("R", Rate),
                    ("A", Arena),
                    ("p", TogglePlan),
                    ("t", ToggleThoughts),
                    ("w", ToggleRaw),
                    ("b", ToggleTree),
                    ("i", FocusInput),
                    ("enter", FocusInput),
                    ("esc", FocusInput),
                    ("G", ScrollToBottom),
                    ("q", Quit),
                    ("?", ToggleHelp),
                ],
            ),
            (
                List,
                &[
                    ("up", ListUp),
                    ("k", ListUp),
                    ("down", ListDown),
                    ("j", ListDown),
                    ("enter", ListChoose),
                    ("esc", CloseOverlay),
                    ("y", Confirm),
                    ("n", Cancel),
                    ("r", Rate),
                ],
            ),
            (
                Overlay,
                &[
                    ("esc", CloseOverlay),
                    ("q", CloseOverlay),
                    ("up", ScrollUp),
                    ("k", ScrollUp),
                    ("down", ScrollDown),
                    ("j", ScrollDown),
                    ("?", ToggleHelp),
                ],
            ),
            (
                Dialog,
                &[
                    ("enter", Submit),
                    ("esc", CloseOverlay),
                    ("tab", NextField),
                    ("backspace", Backspace),
                    ("left", CursorLeft),
                    ("right", CursorRight),
                    ("up", ListUp),
                    ("down", ListDown),
                ],
            ),
        ];
        let annotate: &[(&str, Action)] = &[
            ("a", PickLeft),
            ("left", PickLeft),
            ("b", PickRight),
            ("right", PickRight),
            ("t", Tie),
            ("x", BothBad),
            ("s", Skip),
            ("u", Undo),
            ("j", ScrollDown),
            ("down", ScrollDown),
            ("k", ScrollUp),
            ("up", ScrollUp),
            ("q", Quit),
            ("esc", Quit),
            ("ctrl+c", Quit),
        ];
        let mut bindings = HashMap::new();
        for (layer, list) in per_layer {
            for (key, action) in global.iter().chain(list.iter()) {
                bindings.insert((*layer, chord(key)), action.clone());
            }
        }
        for layer in [Transcript, Annotate] {
            for (key, action) in rating {
                bindings.insert((layer, chord(key)), action.clone());
            }
        }
        for (key, action) in annotate {
            bindings.insert((Annotate, chord(key)), action.clone());
        }
        Self { bindings }
    }
}

impl Keymap {
    /// The built-in keys with config `[keys]` applied (an empty chord keeps
    /// the built-in ones).
    pub fn from_config(keys: &BTreeMap<String, String>) -> Result<Self, String> {
        let set: BTreeMap<String, String> = keys
            .iter()
            .filter(|(_, chord)| !chord.is_empty())
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        Self::default().with_overrides(&set)
    }

    /// Applies user bindings (action name → chord). Each named action loses
    /// its default chords in every layer that had it and gets the new one there.
    pub fn with_overrides(mut self, overrides: &BTreeMap<String, String>) -> Result<Self, String> {
        for (name, key) in overrides {
            let action = Action::from_name(name).ok_or_else(|| {
                let known: Vec<&str> = Action::NAMED.iter().map(|(n, _, _)| *n).collect();
                format!(
                    "[keys] '{name}' is not an action; expected one of: {}",
                    known.join(", ")
                )
            })?;
            let chord = Chord::parse(key).map_err(|e| format!("[keys] {name}: {e}"))?;
            let layers: Vec<Layer> = self
                .bindings
                .iter()
                .filter(|(_, a)| **a == action)
                .map(|((l, _), _)| *l)
                .collect();
            self.bindings.retain(|_, a| *a != action);
            for layer in if layers.is_empty() {
                vec![Layer::Transcript]
            } else {
                layers
            } {
                self.bindings.insert((layer, chord), action.clone());
            }
        }
        Ok(self)
    }

    /// The action for a key in a layer. In the input layer, unbound
    /// printable keys type themselves.
    pub fn action(&self, layer: Layer, key: &KeyEvent) -> Option<Action> {
        let chord = Chord::from_event(key);
        if let Some(action) = self.bindings.get(&(layer, chord)) {
            return Some(action.clone());
        }
        match (layer, key.code) {
            (Layer::Input | Layer::Dialog, KeyCode::Char(c))
                if !key
                    .modifiers
                    .intersects(KeyModifiers::CONTROL | KeyModifiers::ALT) =>
            {
                Some(Action::Insert(c))
            }
            (Layer::Input, KeyCode::Tab) => Some(Action::Insert('\t')),
            _ => None,
        }
    }

    /// (layer, chord, action) for the help overlay, grouped by layer.
    pub fn entries(&self) -> Vec<(Layer, String, Action)> {
        let mut entries: Vec<(Layer, String, Action)> = self
            .bindings
            .iter()
            .map(|((layer, chord), action)| (*layer, chord.to_string(), action.clone()))
            .collect();
        entries.sort_by(|a, b| (a.0, a.2.name(), &a.1).cmp(&(b.0, b.2.name(), &b.1)));
        entries
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn every_default_binding_parses() {
        let map = Keymap::default();
        assert!(map.entries().iter().all(|(_, c, _)| !c.contains("F(0)")));
    }

    #[test]
    fn every_default_key_parses() {
        // "+" once mapped to no key at all (rating up did nothing).
        for (layer, chord, action) in Keymap::default().entries() {
            assert_ne!(chord, "f0", "{action:?} in {layer:?} has no key");
        }
        assert_eq!(Chord::parse("+").unwrap().code, KeyCode::Char('+'));
        let ctrl_plus = Chord::parse("ctrl++").unwrap();
        assert_eq!(
            (ctrl_plus.code, ctrl_plus.mods),
            (KeyCode::Char('+'), KeyModifiers::CONTROL)
        );
    }

    #[test]
    fn chords_round_trip() {
        for text in [
            "ctrl+r",
            "alt+left",
            "f2",
            "enter",
            "?",
            "G",
            "ctrl+alt+x",
            "space",
        ] {
            assert_eq!(Chord::parse(text).unwrap().to_string(), text);
        }
        assert!(Chord::parse("hyper+x").is_err());
        assert!(Chord::parse("ctrl+").is_err());
    }

    #[test]
    fn overrides_replace_only_what_they_name() {
        let mut keys = BTreeMap::new();
        keys.insert("regenerate".to_string(), "ctrl+g".to_string());
        let map = Keymap::default().with_overrides(&keys).unwrap();
        let ctrl = |c| KeyEvent::new(KeyCode::Char(c), KeyModifiers::CONTROL);
        assert_eq!(
            map.action(Layer::Input, &ctrl('g')),
            Some(Action::Regenerate)
        );
        assert_eq!(map.action(Layer::Input, &ctrl('r')), None);
        assert_eq!(
            map.action(Layer::Input, &ctrl('q')),
            None.or(Some(Action::Quit))
        );
        keys.insert("fly".to_string(), "x".to_string());
        assert!(
            Keymap::default()
                .with_overrides(&keys)
                .unwrap_err()
                .contains("not an action")
        );
    }

    #[test]
    fn annotate_keys_are_their_own_and_follow_overrides() {
        let map = Keymap::default();
        let key = |c| KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE);
        let ctrl = |c| KeyEvent::new(KeyCode::Char(c), KeyModifiers::CONTROL);
        let left = KeyEvent::new(KeyCode::Left, KeyModifiers::NONE);
        assert_eq!(map.action(Layer::Annotate, &left), Some(Action::PickLeft));
        assert_eq!(map.action(Layer::Annotate, &key('u')), Some(Action::Undo));
        assert_eq!(map.action(Layer::Annotate, &ctrl('c')), Some(Action::Quit));
        // The chat's global chords stay out, and nothing types itself.
        assert_eq!(
            map.action(
                Layer::Annotate,
                &KeyEvent::new(KeyCode::F(2), KeyModifiers::NONE)
            ),
            None
        );
        assert_eq!(map.action(Layer::Annotate, &key('z')), None);
        let mut keys = BTreeMap::new();
        keys.insert("pick_left".to_string(), "1".to_string());
        keys.insert("rate_1".to_string(), "".to_string());
        let map = Keymap::from_config(&keys).unwrap();
        assert_eq!(
            map.action(Layer::Annotate, &key('1')),
            Some(Action::PickLeft)
        );
        assert_eq!(map.action(Layer::Annotate, &key('a')), None);
        assert_eq!(
            map.action(Layer::Transcript, &key('1')),
            Some(Action::RateStars(1))
        );
    }

    #[test]
    fn typing_in_the_input_layer() {
        let map = Keymap::default();
        let key = KeyEvent::new(KeyCode::Char('G'), KeyModifiers::SHIFT);
        assert_eq!(map.action(Layer::Input, &key), Some(Action::Insert('G')));
        assert_eq!(
            map.action(Layer::Transcript, &key),
            Some(Action::ScrollToBottom)
        );
    }
}
