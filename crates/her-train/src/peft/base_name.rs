//! The Hugging Face id PEFT should load as the base of an exported adapter
//! (`base_model_name_or_path`), found from what a GGUF says about itself.
//!
//! llama.cpp's converter records the model's own source in
//! `general.source.huggingface.repository` (a repo id) or as URLs
//! (`general.source.repo_url`, `general.repo_url`, `general.source.url`,
//! `general.url`). `general.base_model.N.*` names the model this one was
//! fine-tuned FROM (an Instruct GGUF points at its Base model), which would
//! be the wrong base, and `general.name` is a display name, not an id: both
//! are left out. Without a source the id is a placeholder that says what to
//! put there.

use std::path::Path;

use her_gguf::GgufFile;

/// Keys holding a repo id outright.
const ID_KEYS: [&str; 1] = ["general.source.huggingface.repository"];
/// Keys holding a URL that may be a huggingface.co model page.
const URL_KEYS: [&str; 4] = [
    "general.source.repo_url",
    "general.repo_url",
    "general.source.url",
    "general.url",
];

/// `configured` when set (`train.hf_base_model`), else the id the GGUF
/// names, else a placeholder naming the GGUF file.
pub fn hf_base_model(configured: &str, gguf: &GgufFile, gguf_path: &Path) -> String {
    let configured = configured.trim();
    if !configured.is_empty() {
        return configured.to_owned();
    }
    gguf_repo_id(gguf).unwrap_or_else(|| placeholder(gguf_path))
}

/// The repo id the GGUF's metadata names for the model itself, if any.
pub fn gguf_repo_id(gguf: &GgufFile) -> Option<String> {
    let from_ids = ID_KEYS
        .iter()
        .filter_map(|k| gguf.get_str(k))
        .map(str::trim)
        .find(|v| is_repo_id(v))
        .map(str::to_owned);
    from_ids.or_else(|| {
        URL_KEYS
            .iter()
            .filter_map(|k| gguf.get_str(k))
            .find_map(repo_id_of_url)
    })
}

/// What `base_model_name_or_path` says when the GGUF names no source: not
/// resolvable on purpose, and transformers' error then shows this text.
pub fn placeholder(gguf_path: &Path) -> String {
    let file = gguf_path.file_name().map_or_else(
        || gguf_path.display().to_string(),
        |f| f.to_string_lossy().into_owned(),
    );
    format!(
        "UNKNOWN: replace with the Hugging Face id of the model '{file}' was converted from \
         (or set train.hf_base_model before training)"
    )
}

/// `org/name` as the Hub spells repo ids.
pub fn is_repo_id(s: &str) -> bool {
    let part_ok = |p: &str| {
        !p.is_empty()
            && p.len() <= 96
            && p.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            && !p.starts_with(['.', '-'])
            && !p.contains("..")
    };
    matches!(s.split_once('/'), Some((org, name)) if part_ok(org) && part_ok(name))
}

/// `https://huggingface.co/org/name[/…]` → `org/name` (not datasets or spaces).
fn repo_id_of_url(url: &str) -> Option<String> {
    let rest = url
        .trim()
        .strip_prefix("https://")
        .or_else(|| url.trim().strip_prefix("http://"))?;
    let rest = rest.strip_prefix("www.").unwrap_or(rest);
    let path = rest
        .strip_prefix("huggingface.co/")
        .or_else(|| rest.strip_prefix("hf.co/"))?;
    let mut parts = path.split(['/', '?', '#']);
    let (org, name) = (parts.next()?, parts.next()?);
    if matches!(org, "datasets" | "spaces" | "collections" | "papers") {
        return None;
    }
    let id = format!("{org}/{name}");
    is_repo_id(&id).then_some(id)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use her_gguf::GgufWriter;

    fn gguf_with(kvs: &[(&str, &str)]) -> (tempfile::TempDir, GgufFile) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.gguf");
        let mut w = GgufWriter::new();
        w.add_string("general.architecture", "llama");
        for (k, v) in kvs {
            w.add_string(k, v);
        }
        w.write(&path).unwrap();
        let info = her_gguf::inspect(&path).unwrap();
        (dir, info)
    }

    #[test]
    fn the_source_repository_is_preferred_then_urls() {
        let (_d, g) = gguf_with(&[
            (
                "general.source.huggingface.repository",
                "HuggingFaceTB/SmolLM2-135M-Instruct",
            ),
            ("general.repo_url", "https://huggingface.co/other/model"),
        ]);
        assert_eq!(
            gguf_repo_id(&g).as_deref(),
            Some("HuggingFaceTB/SmolLM2-135M-Instruct")
        );
        let (_d, g) = gguf_with(&[(
            "general.source.url",
            "https://huggingface.co/Qwen/Qwen3-8B/tree/main",
        )]);
        assert_eq!(gguf_repo_id(&g).as_deref(), Some("Qwen/Qwen3-8B"));
    }

    #[test]
    fn parents_display_names_and_other_sites_give_no_id() {
        let (_d, g) = gguf_with(&[
            ("general.name", "Smollm2 135M 8k Lc100K Mix1 Ep2"),
            ("general.organization", "HuggingFaceTB"),
            (
                "general.base_model.0.repo_url",
                "https://huggingface.co/HuggingFaceTB/SmolLM2-135M",
            ),
            (
                "general.source.url",
                "https://github.com/huggingface/smollm",
            ),
            ("general.url", "https://huggingface.co/datasets/org/data"),
        ]);
        assert_eq!(gguf_repo_id(&g), None);
        let path = Path::new("/models/SmolLM2-135M-Instruct.Q4_1.gguf");
        let name = hf_base_model("", &g, path);
        assert!(
            name.starts_with("UNKNOWN") && name.contains("'SmolLM2-135M-Instruct.Q4_1.gguf'"),
            "{name}"
        );
        assert!(!is_repo_id(&name));
        assert_eq!(hf_base_model(" me/mine ", &g, path), "me/mine");
    }

    #[test]
    fn repo_ids_are_checked() {
        assert!(is_repo_id("Qwen/Qwen3-0.6B"));
        assert!(!is_repo_id("Qwen3-0.6B"));
        assert!(!is_repo_id("a/b/c"));
        assert!(!is_repo_id("a/../b"));
        assert!(!is_repo_id("/models/x.gguf"));
        assert!(!is_repo_id("org/na me"));
    }
}
