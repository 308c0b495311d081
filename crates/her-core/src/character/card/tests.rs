#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use base64::Engine;
use proptest::prelude::*;

use super::*;
use crate::character::{
    CardExtras, LoreEntry, Lorebook, OtherCharacter, Persona, SamplingOverrides,
};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// The extensions object of the fixture, compact, with keys out of
/// alphabetical order and number spellings serde_json would change.
const EXTENSIONS: &str = r#"{"talkativeness":"0.5","fav":false,"depth_prompt":{"prompt":"Stay in character, {{char}}.","depth":4,"role":"system"},"zeta":[1.0,2e3,"\u00e9",{"b":null,"a":-0.0}],"world":""}"#;

fn v2_card(name: &str) -> String {
    format!(
        r#"{{
  "spec": "chara_card_v2",
  "spec_version": "2.0",
  "name": "ignored top-level copy",
  "data": {{
    "name": "{name}",
    "description": "{{{{char}}}} is a sharp-tongued archivist.\nShe hates dust.",
    "personality": "dry, curious",
    "scenario": "The archive at night; {{{{user}}}} knocks.",
    "first_mes": "*looks up* Yes?",
    "mes_example": "<START>\n{{{{user}}}}: Hi\n{{{{char}}}}: Hm.\n<start>\n{{{{char}}}}: Dust again.\n",
    "creator_notes": "Made for testing.",
    "system_prompt": "",
    "post_history_instructions": "Keep replies short.",
    "alternate_greetings": ["*sneezes*", "Closed. Come back tomorrow."],
    "character_book": {{
      "name": "Archive lore",
      "scan_depth": 3,
      "token_budget": 300,
      "recursive_scanning": true,
      "extensions": {{"x": 1}},
      "entries": [
        {{"keys": ["ledger", "book"], "content": "The ledger is forged.", "extensions": {{"position": 0, "depth": 4}},
          "enabled": true, "insertion_order": 10, "case_sensitive": false, "name": "ledger", "priority": 5,
          "id": 1, "comment": "secret", "selective": true, "secondary_keys": ["forged"], "constant": false,
          "position": "before_char"}},
        {{"keys": ["lamp"], "content": "The lamp flickers.", "extensions": {{}}, "enabled": false,
          "insertion_order": 2}}
      ]
    }},
    "tags": ["mystery", "library"],
    "creator": "tester",
    "character_version": "1.2",
    "extensions": {EXTENSIONS}
  }}
}}"#
    )
}

fn v3_card(name: &str) -> String {
    format!(
        r#"{{"spec":"chara_card_v3","spec_version":"3.0","data":{{"name":"{name}","description":"V3 profile","personality":"","scenario":"","first_mes":"Hi","mes_example":"","creator_notes":"","system_prompt":"","post_history_instructions":"","alternate_greetings":[],"tags":[],"creator":"","character_version":"","extensions":{{}},"group_only_greetings":[],"nickname":"Vee","assets":[{{"type":"icon","uri":"ccdefault:","name":"main","ext":"png"}}],"creation_date":1700000000}}}}"#
    )
}

/// A PNG built chunk by chunk, independent of the exporter.
fn png_with(chunks: &[(&[u8; 4], Vec<u8>)]) -> Vec<u8> {
    let mut out = png::SIGNATURE.to_vec();
    for (kind, data) in chunks {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let mut crc_input = kind.to_vec();
        crc_input.extend_from_slice(data);
        out.extend_from_slice(&crc_input);
        out.extend_from_slice(&png::crc32(&crc_input).to_be_bytes());
    }
    out
}

fn ihdr_1x1() -> Vec<u8> {
    let mut d = Vec::new();
    d.extend_from_slice(&1u32.to_be_bytes());
    d.extend_from_slice(&1u32.to_be_bytes());
    d.extend_from_slice(&[8, 2, 0, 0, 0]);
    d
}

fn text_chunk(keyword: &str, text: &[u8]) -> Vec<u8> {
    let mut d = keyword.as_bytes().to_vec();
    d.push(0);
    d.extend_from_slice(text);
    d
}

fn card_png(texts: &[(&str, &[u8])]) -> Vec<u8> {
    let mut chunks: Vec<(&[u8; 4], Vec<u8>)> = vec![(b"IHDR", ihdr_1x1())];
    for (k, t) in texts {
        chunks.push((b"tEXt", text_chunk(k, t)));
    }
    chunks.push((b"IDAT", png::zlib_stored(&[0, 255, 0, 0])));
    chunks.push((b"IEND", Vec::new()));
    png_with(&chunks)
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn check_v2_fixture(card: &ImportedCard) {
    let c = &card.character;
    assert_eq!(card.spec, CardSpec::V2);
    assert_eq!(c.name, "Archivist");
    assert_eq!(
        c.profile,
        "{{char}} is a sharp-tongued archivist.\nShe hates dust."
    );
    assert_eq!(c.personality, "dry, curious");
    assert_eq!(c.scenario, "The archive at night; {{user}} knocks.");
    assert_eq!(
        c.greetings,
        [
            "*looks up* Yes?",
            "*sneezes*",
            "Closed. Come back tomorrow."
        ]
    );
    assert_eq!(
        c.examples,
        ["{{user}}: Hi\n{{char}}: Hm.", "{{char}}: Dust again."]
    );
    assert_eq!(c.tags, ["mystery", "library"]);
    assert_eq!(c.book, DEFAULT_BOOK);
    assert!(
        card.warnings.iter().any(|w| w.contains("names no book")),
        "{:?}",
        card.warnings
    );
    let extras = c.card.as_ref().unwrap();
    assert_eq!(extras.creator, "tester");
    assert_eq!(extras.character_version, "1.2");
    assert_eq!(extras.creator_notes, "Made for testing.");
    assert_eq!(extras.post_history_instructions, "Keep replies short.");
    assert_eq!(extras.source_spec, "chara_card_v2");
    assert_eq!(extras.extensions_json, EXTENSIONS);
    assert_eq!(extras.extra_fields_json, "");
    let book = c.lorebook.as_ref().unwrap();
    assert_eq!(book.name, "Archive lore");
    assert_eq!(
        (book.scan_depth, book.token_budget, book.recursive_scanning),
        (Some(3), Some(300), true)
    );
    assert_eq!(book.extensions_json, r#"{"x":1}"#);
    assert_eq!(book.entries.len(), 2);
    assert_eq!(
        book.entries[0],
        LoreEntry {
            keys: vec!["ledger".into(), "book".into()],
            content: "The ledger is forged.".into(),
            enabled: true,
            insertion_order: 10,
            case_sensitive: false,
            constant: false,
            secondary_keys: vec!["forged".into()],
            selective: true,
            priority: 5,
            name: "ledger".into(),
            comment: "secret".into(),
            id: Some(1),
            position: "before_char".into(),
            extensions_json: r#"{"position":0,"depth":4}"#.into(),
        }
    );
    assert!(!book.entries[1].enabled);
    assert_eq!(book.entries[1].extensions_json, "");
}

#[test]
fn imports_v2_json() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "archivist.json",
        v2_card("Archivist").as_bytes(),
    );
    check_v2_fixture(&import_card(&path).unwrap());
}

#[test]
fn imports_v2_png() {
    let dir = tempfile::tempdir().unwrap();
    let json = v2_card("Archivist");
    let png = card_png(&[("chara", B64.encode(&json).as_bytes())]);
    let path = write(dir.path(), "archivist.png", &png);
    check_v2_fixture(&import_card(&path).unwrap());
}

#[test]
fn v3_chunk_is_preferred_over_v2() {
    let v2 = B64.encode(v2_card("Old"));
    let v3 = B64.encode(v3_card("New"));
    for png in [
        card_png(&[("chara", v2.as_bytes()), ("ccv3", v3.as_bytes())]),
        card_png(&[("ccv3", v3.as_bytes()), ("chara", v2.as_bytes())]),
    ] {
        let card = fuzz_card_bytes(&png).unwrap();
        assert_eq!(card.spec, CardSpec::V3);
        assert_eq!(card.character.name, "New");
        let extras = card.character.card.unwrap();
        // Unmapped V3 fields are kept in order; the default `group_only_greetings` is not.
        assert_eq!(
            extras.extra_fields_json,
            r#"{"nickname":"Vee","assets":[{"type":"icon","uri":"ccdefault:","name":"main","ext":"png"}],"creation_date":1700000000}"#
        );
    }
}

#[test]
fn v2_png_to_v3_png_round_trip_is_lossless() {
    let dir = tempfile::tempdir().unwrap();
    let png = card_png(&[("chara", B64.encode(v2_card("Archivist")).as_bytes())]);
    let first = import_card(&write(dir.path(), "in.png", &png)).unwrap();

    let out = dir.path().join("out.png");
    export_card(&first.character, Format::Png, &out).unwrap();
    let bytes = std::fs::read(&out).unwrap();
    let chunks = png::read_card_chunks(&bytes, &out).unwrap();
    let v2 = String::from_utf8(B64.decode(chunks.chara.unwrap()).unwrap()).unwrap();
    let v3 = String::from_utf8(B64.decode(chunks.ccv3.unwrap()).unwrap()).unwrap();
    assert!(
        v2.contains(r#""spec":"chara_card_v2","spec_version":"2.0""#),
        "{v2}"
    );
    assert!(
        v3.starts_with(r#"{"spec":"chara_card_v3","spec_version":"3.0","data":{"#),
        "{v3}"
    );
    assert!(v3.contains(r#""group_only_greetings":[]"#), "{v3}");

    let second = import_card(&out).unwrap();
    assert_eq!(second.spec, CardSpec::V3);
    assert_eq!(second.character, first.character);
    assert!(second.warnings.is_empty(), "{:?}", second.warnings);
    // The V2 copy alone gives the same character too.
    let only_v2 = card_png(&[("chara", B64.encode(&v2).as_bytes())]);
    assert_eq!(
        fuzz_card_bytes(&only_v2).unwrap().character,
        first.character
    );
    assert_eq!(listing(dir.path()), ["in.png", "out.png"]);
}

/// A character written in her-studio, using fields cards do not have.
fn native_character() -> Character {
    Character {
        name: "Elizabeth Bennet".into(),
        book: "Pride and Prejudice".into(),
        author: "Jane Austen".into(),
        description: "Quick-witted second daughter".into(),
        profile: "Elizabeth is twenty.\nShe laughs at folly.".into(),
        personality: "witty".into(),
        background: "Netherfield has been let.".into(),
        scenario: "A party at Lucas Lodge.".into(),
        motivation: "I will not be intimidated.".into(),
        // An empty first greeting and untrimmed examples do not fit card fields exactly.
        greetings: vec![
            "".into(),
            "You look as though you came to inspect us.".into(),
        ],
        tags: vec!["classic".into()],
        others: vec![OtherCharacter {
            name: "Mr. Darcy".into(),
            profile: "Proud.".into(),
        }],
        user: Some(Persona {
            name: "Charlotte".into(),
            description: "Her friend".into(),
        }),
        examples: vec!["  leading space".into(), "with <START> inside".into()],
        sampling: Some(SamplingOverrides {
            temperature: Some(0.7),
            top_k: Some(40),
            ..SamplingOverrides::default()
        }),
        lorebook: Some(Lorebook {
            name: "Meryton".into(),
            entries: vec![LoreEntry {
                keys: vec!["Wickham".into()],
                content: "An officer.".into(),
                enabled: true,
                ..LoreEntry::default()
            }],
            ..Lorebook::default()
        }),
        card: None,
        lore: vec![],
        note: None,
    }
}

#[test]
fn export_json_then_import_is_equal() {
    let dir = tempfile::tempdir().unwrap();
    let first = import_card(&write(
        dir.path(),
        "a.json",
        v2_card("Archivist").as_bytes(),
    ))
    .unwrap();
    for (i, c) in [first.character, native_character()]
        .into_iter()
        .enumerate()
    {
        let out = dir.path().join(format!("out{i}.json"));
        export_card(&c, Format::Json, &out).unwrap();
        let text = std::fs::read_to_string(&out).unwrap();
        assert!(
            text.starts_with("{\n  \"spec\": \"chara_card_v3\",\n  \"spec_version\": \"3.0\""),
            "{text}"
        );
        assert_eq!(import_card(&out).unwrap().character, c);
        let png = dir.path().join(format!("out{i}.png"));
        export_card(&c, Format::Png, &png).unwrap();
        assert_eq!(import_card(&png).unwrap().character, c);
    }
}

#[test]
fn extensions_are_preserved_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let c = import_card(&write(
        dir.path(),
        "a.json",
        v2_card("Archivist").as_bytes(),
    ))
    .unwrap()
    .character;
    assert_eq!(c.card.as_ref().unwrap().extensions_json, EXTENSIONS);
    let out = dir.path().join("out.json");
    export_card(&c, Format::Json, &out).unwrap();
    let text = std::fs::read_to_string(&out).unwrap();
    // Exported: the original members as they were, then her_studio.
    let open = &EXTENSIONS[..EXTENSIONS.len() - 1];
    assert!(
        text.contains(&format!("\"extensions\": {open},\"her_studio\":{{")),
        "{text}"
    );
    // An older her_studio entry is replaced, not duplicated.
    let again = import_card(&out).unwrap().character;
    export_card(&again, Format::Json, &out).unwrap();
    let text = std::fs::read_to_string(&out).unwrap();
    assert_eq!(text.matches("\"her_studio\"").count(), 1);
    assert_eq!(
        import_card(&out)
            .unwrap()
            .character
            .card
            .unwrap()
            .extensions_json,
        EXTENSIONS
    );
}

#[test]
fn pretty_extensions_are_stored_compact() {
    let card = r#"{"spec":"chara_card_v2","data":{"name":"A","description":"B",
        "extensions": { "b" : [ 1 , "x  y" ],
                        "a" : { } }}}"#;
    let c = fuzz_card_bytes(card.as_bytes()).unwrap().character;
    assert_eq!(
        c.card.unwrap().extensions_json,
        r#"{"b":[1,"x  y"],"a":{}}"#
    );
}

#[test]
fn v1_card_is_read() {
    let card = r#"{"name":"Old","description":"An old card.","personality":"p","scenario":"s",
        "first_mes":"Hello","mes_example":"{{char}}: hi","avatar":"none"}"#;
    let imported = fuzz_card_bytes(card.as_bytes()).unwrap();
    assert_eq!(imported.spec, CardSpec::V1);
    let c = imported.character;
    assert_eq!(
        (c.name.as_str(), c.profile.as_str()),
        ("Old", "An old card.")
    );
    assert_eq!(c.greetings, ["Hello"]);
    assert_eq!(c.examples, ["{{char}}: hi"]);
    assert!(
        imported.warnings.iter().any(|w| w.contains("'avatar'")),
        "{:?}",
        imported.warnings
    );
}

#[test]
fn stored_extension_text_is_checked_on_export() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = native_character();
    c.card = Some(CardExtras {
        extensions_json: "[1, 2]".into(),
        ..CardExtras::default()
    });
    let out = dir.path().join("x.json");
    let err = export_card(&c, Format::Json, &out).unwrap_err().to_string();
    assert!(
        err.contains("'card.extensions_json' must be a JSON object"),
        "{err}"
    );
    assert!(listing(dir.path()).is_empty());
}

/// Imports `bytes` saved as `name` and checks the error text; nothing may be written.
fn expect_error(name: &str, bytes: &[u8], want: &str) {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), name, bytes);
    let err = import_card(&path).unwrap_err().to_string();
    assert!(
        err.contains(&format!("'{}'", path.display())),
        "error must name the file: {err}"
    );
    let err = err.replace(&format!("{}/", dir.path().display()), "");
    assert!(err.contains(want), "{name}: want '{want}', got: {err}");
    assert_eq!(listing(dir.path()), [name]);
}

fn v2_with(data_fields: &str) -> String {
    format!(
        r#"{{"spec":"chara_card_v2","spec_version":"2.0","data":{{"name":"A","description":"B",{data_fields}}}}}"#
    )
}

#[test]
fn bad_input_gives_clear_errors() {
    let good = B64.encode(v2_card("A"));
    expect_error(
        "x.png",
        &card_png(&[("other", b"hello")]),
        "'x.png' has no character card (no 'chara' or 'ccv3' text chunk)",
    );
    expect_error(
        "b64.png",
        &card_png(&[("chara", b"not*base64!")]),
        "the 'chara' chunk is not valid base64",
    );
    expect_error(
        "json.png",
        &card_png(&[("ccv3", B64.encode("{\n  \"spec\": oops }").as_bytes())]),
        "the 'ccv3' chunk is not valid JSON: line '2', column '11'",
    );
    expect_error(
        "utf8.png",
        &card_png(&[("chara", B64.encode(b"{\"name\":\"\xff\"}").as_bytes())]),
        "the 'chara' chunk is not valid UTF-8 (bad byte at offset '9')",
    );
    expect_error(
        "utf8.json",
        b"{\"name\": \"A\xc3\"}",
        "the file is not valid UTF-8",
    );
    expect_error("sig.png", b"GIF89a....", "not a PNG file (bad signature)");
    let mut crc = card_png(&[("chara", good.as_bytes())]);
    let at = crc.len() - 30;
    crc[at] ^= 0x20;
    expect_error("crc.png", &crc, "CRC mismatch");
    let full = card_png(&[("chara", good.as_bytes())]);
    expect_error("cut.png", &full[..full.len() / 2], "truncated");
    expect_error("noend.png", &full[..full.len() - 12], "'IEND' at byte");
    expect_error(
        "spec.json",
        br#"{"spec":"chara_card_v9","data":{}}"#,
        "unsupported card spec 'chara_card_v9'",
    );
    expect_error(
        "alt.json",
        v2_with(r#""alternate_greetings":"hi""#).as_bytes(),
        "field 'data.alternate_greetings' must be an array of strings, got a string",
    );
    expect_error(
        "alt2.json",
        v2_with(r#""alternate_greetings":["hi",{}]"#).as_bytes(),
        "field 'data.alternate_greetings' must be an array of strings, but item '1' is an object",
    );
    expect_error(
        "keys.json",
        v2_with(r#""character_book":{"entries":[{"keys":"k","content":"c"}]}"#).as_bytes(),
        "field 'data.character_book.entries[0].keys' must be an array of strings",
    );
    expect_error(
        "depth.json",
        v2_with(r#""character_book":{"scan_depth":-1,"entries":[]}"#).as_bytes(),
        "field 'data.character_book.scan_depth' must be a whole number from 0",
    );
    expect_error(
        "name.json",
        br#"{"spec":"chara_card_v3","data":{"description":"x"}}"#,
        "field 'data.name' is missing or empty",
    );
    expect_error(
        "nodata.json",
        br#"{"spec":"chara_card_v2"}"#,
        "field 'data' is missing",
    );
    expect_error(
        "arr.json",
        b"[1,2]",
        "is not a character card: it is an array",
    );
    expect_error(
        "dup.json",
        v2_with(r#""name":"B""#).as_bytes(),
        "field 'data.name' appears twice",
    );
    expect_error(
        "her.json",
        v2_with(r#""extensions":{"her_studio":{"book":5}}"#).as_bytes(),
        "field 'data.extensions.her_studio' is malformed",
    );
}

#[test]
fn oversized_input_is_refused() {
    // A sparse file: larger than the cap without using the disk.
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big.png");
    std::fs::File::create(&big)
        .unwrap()
        .set_len(MAX_FILE + 1)
        .unwrap();
    let err = import_card(&big).unwrap_err().to_string();
    assert!(
        err.contains("'big.png'") || err.contains("big.png"),
        "{err}"
    );
    assert!(
        err.contains("it is too large: it holds 33554433 bytes, over the 32 MiB limit"),
        "{err}"
    );

    let chunk = card_png(&[("chara", &vec![b'A'; MAX_TEXT_CHUNK + 1])]);
    expect_error("chunk.png", &chunk, "is too large: text chunk");

    let mut json = v2_with(r#""personality":""#);
    json.truncate(json.len() - 3);
    json.push_str(&"x".repeat(MAX_JSON));
    json.push_str("\"}}");
    expect_error("big.json", json.as_bytes(), "is too large: the JSON text");

    let entry = r#"{"keys":["k"],"content":"c"}"#;
    let entries = vec![entry; MAX_LORE_ENTRIES + 1].join(",");
    let card = v2_with(&format!(r#""character_book":{{"entries":[{entries}]}}"#));
    expect_error(
        "lore.json",
        card.as_bytes(),
        "has '10001' items; the limit is '10000'",
    );
    let entries = vec![entry; MAX_LORE_ENTRIES].join(",");
    let card = v2_with(&format!(r#""character_book":{{"entries":[{entries}]}}"#));
    let ok = fuzz_card_bytes(card.as_bytes()).unwrap();
    assert_eq!(
        ok.character.lorebook.unwrap().entries.len(),
        MAX_LORE_ENTRIES
    );
}

#[test]
fn deep_nesting_does_not_overflow() {
    let deep = format!("{}{}", "[".repeat(200_000), "]".repeat(200_000));
    let card = v2_with(&format!(r#""extensions":{{"deep":{deep}}}"#));
    let c = fuzz_card_bytes(card.as_bytes()).unwrap().character;
    assert!(c.card.unwrap().extensions_json.len() > 400_000);
    assert!(fuzz_card_bytes(v2_with(&format!(r#""tags":{deep}"#)).as_bytes()).is_err());
}

#[test]
fn exported_png_is_a_valid_image() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("avatar.png");
    export_card(&native_character(), Format::Png, &out).unwrap();
    let bytes = std::fs::read(&out).unwrap();
    assert!(bytes.starts_with(&png::SIGNATURE));
    // IHDR: 64×64, 8-bit RGB.
    assert_eq!(&bytes[12..16], b"IHDR");
    assert_eq!(&bytes[16..29], &[0, 0, 0, 64, 0, 0, 0, 64, 8, 2, 0, 0, 0]);
    if let Ok(keep) = std::env::var("HER_KEEP_PNG") {
        std::fs::copy(&out, keep).unwrap();
    }
}

fn arb_png() -> impl Strategy<Value = Vec<u8>> {
    // Well-formed chunk framing with random kinds and contents, so the
    // fuzzer gets past the signature and CRC checks.
    let kind = prop_oneof![
        Just(*b"IHDR"),
        Just(*b"tEXt"),
        Just(*b"IDAT"),
        Just(*b"IEND"),
        any::<[u8; 4]>()
    ];
    let text = prop_oneof![
        Just("chara".to_string()),
        Just("ccv3".to_string()),
        "[a-z]{0,6}"
    ];
    let body = prop_oneof![
        any::<Vec<u8>>(),
        "[A-Za-z0-9+/=]{0,64}".prop_map(String::into_bytes),
        "\\PC{0,40}".prop_map(|s| B64.encode(s).into_bytes()),
        (0usize..3).prop_map(|i| B64
            .encode(v2_with([r#""tags":[]"#, r#""tags":[1]"#, r#""x":1"#][i]))
            .into_bytes()),
    ];
    let chunk = (kind, text, body, any::<bool>()).prop_map(|(k, t, b, as_text)| {
        let data = if as_text { text_chunk(&t, &b) } else { b };
        (k, data)
    });
    (
        proptest::collection::vec(chunk, 0..6),
        any::<bool>(),
        0usize..40,
    )
        .prop_map(|(chunks, cut, cut_at)| {
            let mut all: Vec<(&[u8; 4], Vec<u8>)> = vec![(b"IHDR", ihdr_1x1())];
            let owned: Vec<([u8; 4], Vec<u8>)> = chunks;
            for (k, d) in &owned {
                all.push((k, d.clone()));
            }
            all.push((b"IEND", Vec::new()));
            let mut bytes = png_with(&all);
            if cut {
                bytes.truncate(bytes.len().saturating_sub(cut_at));
            }
            bytes
        })
}

/// Valid cards with one byte changed: near-misses exercise the field checks.
fn arb_mutated_card() -> impl Strategy<Value = Vec<u8>> {
    let card = v2_card("Archivist").into_bytes();
    let len = card.len();
    (0..len, any::<u8>(), 0..len).prop_map(move |(at, byte, cut)| {
        let mut c = card.clone();
        c[at] = byte;
        if byte % 7 == 0 {
            c.truncate(cut);
        }
        c
    })
}

proptest! {
    #[test]
    fn reader_never_panics_on_bytes(data in any::<Vec<u8>>()) {
        let _ = fuzz_card_bytes(&data);
        let mut png = png::SIGNATURE.to_vec();
        png.extend_from_slice(&data);
        let _ = fuzz_card_bytes(&png);
    }

    #[test]
    fn reader_never_panics_on_png_chunks(png in arb_png()) {
        let _ = fuzz_card_bytes(&png);
    }

    #[test]
    fn reader_never_panics_on_json(text in "[\\[\\]{}\":,0-9a-z\\\\ \n-]{0,80}", card in arb_mutated_card()) {
        let _ = fuzz_card_bytes(text.as_bytes());
        let _ = fuzz_card_bytes(&card);
    }
}
