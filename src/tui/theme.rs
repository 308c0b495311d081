//! Colours for each layer of a reply. Built-in dark and light themes; a
//! studio may add `assets/themes/NAME.toml` with the same fields.

use std::path::Path;

use ratatui::style::{Color, Modifier, Style};
use serde::Deserialize;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Theme {
    pub user: Color,
    pub character: Color,
    pub narrator: Color,
    pub speech: Color,
    pub action: Color,
    pub thought: Color,
    pub plan: Color,
    pub dim: Color,
    pub accent: Color,
    pub error: Color,
    pub selection: Color,
}

impl Theme {
    pub fn dark() -> Self {
        Self {
            user: Color::LightGreen,
            character: Color::LightYellow,
            narrator: Color::LightBlue,
            speech: Color::Reset,
            action: Color::Cyan,
            thought: Color::LightMagenta,
            plan: Color::DarkGray,
            dim: Color::DarkGray,
            accent: Color::LightCyan,
            error: Color::LightRed,
            selection: Color::Rgb(40, 44, 60),
        }
    }

    pub fn light() -> Self {
        Self {
            user: Color::Green,
            character: Color::Rgb(150, 90, 0),
            narrator: Color::Blue,
            speech: Color::Reset,
            action: Color::Rgb(0, 110, 130),
            thought: Color::Magenta,
            plan: Color::Gray,
            dim: Color::Gray,
            accent: Color::Blue,
            error: Color::Red,
            selection: Color::Rgb(225, 230, 245),
        }
    }

    /// "dark", "light", or a file `assets/themes/<name>.toml` in the studio.
    pub fn load(name: &str, studio: &Path) -> Result<Self, String> {
        match name {
            "dark" => Ok(Self::dark()),
            "light" => Ok(Self::light()),
            other => {
                let path = studio.join("assets/themes").join(format!("{other}.toml"));
                let text =
                    her_core::fsutil::read::text(&path, her_core::fsutil::read::Kind::Config)
                        .map_err(|e| format!("theme: {e}"))?;
                toml::from_str(&text)
                    .map_err(|e| format!("theme '{}': {}", path.display(), e.message()))
            }
        }
    }

    pub fn speech(&self) -> Style {
        Style::default().fg(self.speech)
    }

    pub fn action(&self) -> Style {
        Style::default()
            .fg(self.action)
            .add_modifier(Modifier::ITALIC)
    }

    pub fn thought(&self) -> Style {
        Style::default()
            .fg(self.thought)
            .add_modifier(Modifier::ITALIC)
    }

    pub fn plan(&self) -> Style {
        Style::default()
            .fg(self.plan)
            .add_modifier(Modifier::ITALIC)
    }

    pub fn dim(&self) -> Style {
        Style::default().fg(self.dim)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn shipped_and_built_in_themes_load() {
        let studio = Path::new(env!("CARGO_MANIFEST_DIR"));
        assert_eq!(Theme::load("dark", studio).unwrap(), Theme::dark());
        let sepia = Theme::load("sepia", studio).unwrap();
        assert_eq!(sepia.character, Color::Rgb(0xb5, 0x65, 0x1d));
        let err = Theme::load("nope", studio).unwrap_err();
        assert!(err.contains("nope.toml"), "{err}");
    }
}
