//! Character Card macros: `{{char}}` and `{{user}}` (and the legacy `<BOT>`
//! and `<USER>`), replaced when the prompt is built so files keep them.

/// Replaces the macros, case-insensitively.
pub fn expand_macros(text: &str, char_name: &str, user_name: &str) -> String {
    const MACROS: &[(&str, bool)] = &[
        ("{{char}}", true),
        ("{{user}}", false),
        ("<bot>", true),
        ("<user>", false),
    ];
    if !text.contains(['{', '<']) {
        return text.to_string();
    }
    let lower = text.to_ascii_lowercase();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    'outer: while i < text.len() {
        for (m, is_char) in MACROS {
            if lower[i..].starts_with(m) {
                out.push_str(if *is_char { char_name } else { user_name });
                i += m.len();
                continue 'outer;
            }
        }
        let ch_len = text[i..].chars().next().map_or(1, char::len_utf8);
        out.push_str(&text[i..i + ch_len]);
        i += ch_len;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expands_all_spellings() {
        assert_eq!(
            expand_macros(
                "{{char}} greets {{User}}. <BOT> and <user>; {{other}}",
                "Lizzy",
                "Darcy"
            ),
            "Lizzy greets Darcy. Lizzy and Darcy; {{other}}"
        );
        assert_eq!(expand_macros("héllo {{char}}", "A", "B"), "héllo A");
    }
}
