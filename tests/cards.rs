//! `her import` / `her export card` end to end, and a lorebook entry firing
//! in the prompt when its key is typed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::{Command, Output};

use her_core::character::load_character;
use her_core::prompt::{HerPrompt, Line, PromptOptions};
use her_studio::config::PromptVariant;

fn her(studio: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_her"));
    cmd.env("HOME", studio)
        .args(["--studio", studio.to_str().unwrap()])
        .arg("--set")
        .arg(format!("log.file={}", studio.join("her.log").display()));
    cmd
}

fn studio() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("characters")).unwrap();
    dir
}

fn ok(out: &Output) {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

const V2_CARD: &str = r#"{
  "spec": "chara_card_v2",
  "spec_version": "2.0",
  "data": {
    "name": "Fitzwilliam Darcy",
    "description": "{{char}} is the proud master of Pemberley who slowly learns to love {{user}}.",
    "personality": "reserved, honest, proud",
    "scenario": "A drawing room at Rosings.",
    "first_mes": "*bows stiffly* Miss Bennet.",
    "mes_example": "<START>\n{{char}}: I have been used to consider poetry as the food of love.",
    "creator_notes": "test card",
    "system_prompt": "",
    "post_history_instructions": "",
    "alternate_greetings": ["*looks away* The weather is fine."],
    "tags": ["regency"],
    "creator": "her-studio tests",
    "character_version": "1",
    "extensions": {"depth_prompt": {"depth": 4, "prompt": "x"}, "zzz": [1, 2.50, "é"]},
    "character_book": {
      "name": "Derbyshire",
      "extensions": {},
      "entries": [
        {"keys": ["Pemberley"], "content": "Pemberley is a great house in Derbyshire, set in a wooded park.", "extensions": {}, "enabled": true, "insertion_order": 10, "id": 1},
        {"keys": ["Lambton"], "content": "Lambton is a small market town five miles from Pemberley.", "extensions": {}, "enabled": true, "insertion_order": 20, "id": 2}
      ]
    }
  }
}"#;

#[test]
fn importing_a_v2_card_keeps_lorebook_and_its_entry_fires_when_typed() {
    let dir = studio();
    let card = dir.path().join("darcy.json");
    std::fs::write(&card, V2_CARD).unwrap();
    let out = her(dir.path()).arg("import").arg(&card).output().unwrap();
    ok(&out);
    let written = dir.path().join("characters/fitzwilliam-darcy.toml");
    let darcy = load_character(&written).unwrap();
    assert_eq!(darcy.greetings.len(), 2);
    let book = darcy.lorebook.clone().unwrap();
    assert_eq!(book.entries.len(), 2);

    let options = PromptOptions::new(PromptVariant::Training, "Elizabeth");
    let typed = [Line::new("Elizabeth", "Tell me about pemberley, sir.")];
    let prompt = HerPrompt::build(&darcy, &options, &typed).system();
    assert!(prompt.contains("Pemberley is a great house in Derbyshire"));
    assert!(!prompt.contains("Lambton is a small market town"));
    // Macros are expanded in the prompt but kept in the file.
    assert!(prompt.contains(
        "Fitzwilliam Darcy is the proud master of Pemberley who slowly learns to love Elizabeth."
    ));
    assert!(
        std::fs::read_to_string(&written)
            .unwrap()
            .contains("{{char}}")
    );
    let quiet = [Line::new("Elizabeth", "How do you do?")];
    assert!(
        !HerPrompt::build(&darcy, &options, &quiet)
            .system()
            .contains("great house")
    );

    // Importing again refuses to overwrite without --force.
    let again = her(dir.path()).arg("import").arg(&card).output().unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("--force"));
    ok(&her(dir.path())
        .arg("import")
        .arg(&card)
        .arg("--force")
        .output()
        .unwrap());
}

#[test]
fn export_png_then_import_gives_back_an_equal_character() {
    let dir = studio();
    let source = common::repo_root().join("characters/sherlock-holmes.toml");
    std::fs::copy(&source, dir.path().join("characters/sherlock-holmes.toml")).unwrap();
    let png = dir.path().join("holmes.png");
    ok(&her(dir.path())
        .args(["export", "card", "sherlock-holmes", "--out"])
        .arg(&png)
        .output()
        .unwrap());
    assert_eq!(&std::fs::read(&png).unwrap()[..8], b"\x89PNG\r\n\x1a\n");
    std::fs::remove_file(dir.path().join("characters/sherlock-holmes.toml")).unwrap();
    ok(&her(dir.path()).arg("import").arg(&png).output().unwrap());
    let back = load_character(&dir.path().join("characters/sherlock-holmes.toml")).unwrap();
    let original = load_character(&source).unwrap();
    assert_eq!(back, original);
}

#[test]
fn a_png_without_a_card_is_one_clear_error_and_writes_nothing() {
    let dir = studio();
    // A valid PNG (exported, then its text chunks removed) is simplest made by hand: signature + IHDR + IEND.
    let png = dir.path().join("plain.png");
    let mut bytes = b"\x89PNG\r\n\x1a\n".to_vec();
    let chunk = |kind: &[u8], data: &[u8]| -> Vec<u8> {
        let mut c = (data.len() as u32).to_be_bytes().to_vec();
        c.extend_from_slice(kind);
        c.extend_from_slice(data);
        let crc = crc32(&[kind, data].concat());
        c.extend_from_slice(&crc.to_be_bytes());
        c
    };
    bytes.extend(chunk(b"IHDR", &[0, 0, 0, 1, 0, 0, 0, 1, 8, 2, 0, 0, 0]));
    bytes.extend(chunk(b"IEND", &[]));
    std::fs::write(&png, bytes).unwrap();
    let out = her(dir.path()).arg("import").arg(&png).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("has no character card"), "{err}");
    assert_eq!(
        std::fs::read_dir(dir.path().join("characters"))
            .unwrap()
            .count(),
        0
    );
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}
