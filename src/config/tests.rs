#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::path::{Path, PathBuf};

use super::schema::KEYS;
use super::*;

fn s(text: &str) -> String {
    text.to_owned()
}

fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
    items.iter().map(|(k, v)| (s(k), s(v))).collect()
}

fn studio(path: &Path) -> ConfigSources {
    ConfigSources {
        studio_file: Some(path.to_owned()),
        ..ConfigSources::default()
    }
}

fn env_only(vars: &[(&str, &str)]) -> ConfigSources {
    ConfigSources {
        env: pairs(vars),
        ..ConfigSources::default()
    }
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    fs::write(&path, text).unwrap();
    path
}

fn err_text(sources: &ConfigSources, overrides: &[(&str, &str)]) -> String {
    load(sources, &pairs(overrides)).unwrap_err().to_string()
}

fn fixtures(dir: &str) -> Vec<PathBuf> {
    let dir = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests")).join(dir);
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    files
}

// ---- the defaults file ----

#[test]
fn embedded_defaults_parse_as_config_default() {
    let parsed: Config = toml::from_str(DEFAULT_CONFIG_TOML).unwrap();
    assert_eq!(parsed, Config::default());
    let loaded = load(&ConfigSources::default(), &[]).unwrap();
    assert_eq!(loaded.config, Config::default());
    assert_eq!(loaded.provenance.len(), KEYS.len());
    assert!(loaded.provenance.iter().all(|(_, s)| *s == Source::Default));
}

#[test]
fn defaults_file_documents_every_key_with_a_comment_above() {
    let table: toml::Table = DEFAULT_CONFIG_TOML.parse().unwrap();
    for spec in KEYS {
        assert!(
            table
                .get(spec.section)
                .and_then(|t| t.get(spec.key))
                .is_some(),
            "config.toml lacks {}",
            spec.dotted()
        );
    }
    let lines: Vec<&str> = DEFAULT_CONFIG_TOML.lines().collect();
    let mut keys_seen = 0;
    for (i, line) in lines.iter().enumerate() {
        let is_key = line.contains(" = ") && !line.starts_with('#');
        if is_key {
            keys_seen += 1;
            assert!(
                i > 0 && lines[i - 1].starts_with("# "),
                "no comment above line {}: {line}",
                i + 1
            );
        }
    }
    assert_eq!(keys_seen, KEYS.len());
}

#[test]
fn schema_matches_struct_via_serialization() {
    // Every field serialises under a schema key and validates against it.
    let table = toml::Table::try_from(Config::default()).unwrap();
    let entries = validate::validate_table(&Source::Default, &table).unwrap();
    assert_eq!(entries.len(), KEYS.len());
}

// ---- fixtures ----

#[test]
fn valid_fixtures_load() {
    let files = fixtures("valid_configs");
    assert!(files.len() >= 5);
    for file in files {
        if let Err(e) = load(&studio(&file), &[]) {
            panic!("{} should load: {e}", file.display());
        }
    }
}

#[test]
fn invalid_fixtures_fail_with_expected_message() {
    let files = fixtures("invalid_configs");
    assert!(files.len() >= 10);
    for file in files {
        let text = fs::read_to_string(&file).unwrap();
        let expect = text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# expect: "))
            .unwrap_or_else(|| panic!("{} lacks '# expect: ' line", file.display()));
        match load(&studio(&file), &[]) {
            Ok(_) => panic!("{} should fail", file.display()),
            Err(e) => {
                let msg = e.to_string();
                assert!(
                    msg.contains(expect),
                    "{}:\n  got:      {msg}\n  expected: {expect}",
                    file.display()
                );
                let named = format!("config error in '{}'", file.display());
                assert!(msg.starts_with(&named), "{msg}");
            }
        }
    }
}

#[test]
fn full_fixture_sets_every_key() {
    let file = fixtures("valid_configs")
        .into_iter()
        .find(|p| p.ends_with("full.toml"))
        .unwrap();
    let loaded = load(&studio(&file), &[]).unwrap();
    let c = &loaded.config;
    assert_eq!(
        c.model.path,
        PathBuf::from("/opt/models/her-7b.Q4_K_M.gguf")
    );
    assert_eq!(c.model.n_gpu_layers, 35);
    assert!(!c.model.use_mmap);
    assert_eq!(c.model.flash_attention, FlashAttention::On);
    assert_eq!(c.sampling.repeat_penalty, 1.15);
    assert_eq!(c.sampling.stop, vec![s("</s>"), s("\n\nUser:")]);
    assert_eq!(c.chat.prompt_variant, PromptVariant::Evaluation);
    assert_eq!(c.log.level, LogLevel::Debug);
    let studio_src = Source::StudioFile(file.clone());
    assert!(loaded.provenance.iter().all(|(_, s)| *s == studio_src));
}

// ---- layering ----

#[test]
fn each_layer_overrides_the_lower_and_provenance_follows() {
    let dir = tempfile::tempdir().unwrap();
    let studio_path = write(
        dir.path(),
        "studio.toml",
        "[sampling]\ntemperature = 0.1\ntop_k = 10\n[model]\nn_ctx = 2048\n",
    );
    let user_path = write(
        dir.path(),
        "user.toml",
        "[sampling]\ntemperature = 0.2\ntop_k = 20\nseed = 5\n",
    );
    let sources = ConfigSources {
        studio_file: Some(studio_path.clone()),
        user_file: Some(user_path.clone()),
        env: pairs(&[
            ("HER_SAMPLING_TEMPERATURE", "0.3"),
            ("HER_SAMPLING_SEED", "6"),
            ("PATH", "/usr/bin"),
        ]),
    };
    let loaded = load(&sources, &pairs(&[("sampling.temperature", "0.4")])).unwrap();
    let c = &loaded.config.sampling;
    assert_eq!(c.temperature, 0.4);
    assert_eq!(c.seed, 6);
    assert_eq!(c.top_k, 20);
    assert_eq!(loaded.config.model.n_ctx, 2048);
    assert_eq!(c.top_p, 0.9);

    let src = |k| loaded.source_of(k).unwrap().clone();
    assert_eq!(
        src("sampling.temperature"),
        Source::Flag(s("sampling.temperature"))
    );
    assert_eq!(src("sampling.seed"), Source::Env(s("HER_SAMPLING_SEED")));
    assert_eq!(src("sampling.top_k"), Source::UserFile(user_path));
    assert_eq!(src("model.n_ctx"), Source::StudioFile(studio_path));
    assert_eq!(src("sampling.top_p"), Source::Default);
    assert_eq!(loaded.provenance[0].0, "model.path");
}

#[test]
fn missing_files_are_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let sources = ConfigSources {
        studio_file: Some(dir.path().join("nope.toml")),
        user_file: Some(dir.path().join("also-nope.toml")),
        env: Vec::new(),
    };
    assert_eq!(load(&sources, &[]).unwrap().config, Config::default());
}

#[test]
fn unreadable_file_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    // A directory exists but cannot be read as a file.
    let sources = ConfigSources {
        user_file: Some(dir.path().to_owned()),
        ..ConfigSources::default()
    };
    let err = load(&sources, &[]).unwrap_err();
    assert!(matches!(err, ConfigError::Read { .. }));
    let expected = format!(
        "config error: cannot read '{}': it is a folder, not a regular file",
        dir.path().display()
    );
    assert!(err.to_string().starts_with(&expected), "{err}");
}

#[test]
fn invalid_toml_reports_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "c.toml",
        "[model]\nn_ctx = 4096\nn_ctx = 8192\n",
    );
    let err = load(&studio(&path), &[]).unwrap_err();
    let ConfigError::InvalidToml { position, .. } = &err else {
        panic!("{err:?}");
    };
    assert_eq!(*position, Some((3, 1)), "{err}");
}

#[test]
fn error_names_the_layer_that_introduced_the_value() {
    let dir = tempfile::tempdir().unwrap();
    let good = write(dir.path(), "studio.toml", "[sampling]\ntop_p = 0.5\n");
    let bad = write(dir.path(), "user.toml", "[sampling]\ntemprature = 0.5\n");
    let sources = ConfigSources {
        studio_file: Some(good),
        user_file: Some(bad.clone()),
        env: Vec::new(),
    };
    let msg = err_text(&sources, &[]);
    assert_eq!(
        msg,
        format!(
            "config error in '{}': unknown key 'sampling.temprature'; expected one of: \
             temperature, top_p, top_k, min_p, repeat_penalty, repeat_last_n, \
             max_new_tokens, seed, stop, dry_multiplier, dry_base, dry_allowed_length, \
             dry_penalty_last_n, dry_sequence_breakers, xtc_probability, xtc_threshold, \
             top_n_sigma, typical_p, logit_bias, order, banned_phrases, banned_phrase_retries",
            bad.display()
        )
    );
}

#[test]
fn cross_field_check_uses_merged_values_and_blames_highest_layer() {
    let dir = tempfile::tempdir().unwrap();
    let studio_path = write(dir.path(), "studio.toml", "[model]\nn_ctx = 256\n");
    // Studio alone breaks n_batch (default 512) <= n_ctx ...
    let msg = err_text(&studio(&studio_path), &[]);
    assert!(msg.starts_with(&format!("config error in '{}'", studio_path.display())));
    assert!(msg.contains("'model.n_batch' (512) must not exceed 'model.n_ctx' (256)"));
    // ... a higher layer can fix it ...
    let mut sources = studio(&studio_path);
    sources.env = pairs(&[("HER_MODEL_N_BATCH", "128")]);
    assert_eq!(load(&sources, &[]).unwrap().config.model.n_batch, 128);
    // ... and the highest layer involved is blamed.
    let msg = err_text(&sources, &[("model.n_batch", "300")]);
    assert!(
        msg.starts_with("config error in command-line override 'model.n_batch':"),
        "{msg}"
    );
}

// ---- environment variables ----

#[test]
fn env_values_parse_by_type() {
    let loaded = load(
        &env_only(&[
            ("HER_SAMPLING_TEMPERATURE", "0.2"),
            ("HER_SAMPLING_REPEAT_PENALTY", "2"),
            ("HER_MODEL_N_GPU_LAYERS", "99"),
            ("HER_MODEL_USE_MMAP", "off"),
            ("HER_MODEL_PATH", "/x.gguf"),
            ("HER_CHAT_USER_NAME", "Ann Smith"),
            ("HER_CHAT_PROMPT_VARIANT", "evaluation"),
            ("HER_LOG_LEVEL", " trace "),
            ("HER_SAMPLING_STOP", "</s>, END"),
        ]),
        &[],
    )
    .unwrap();
    let c = &loaded.config;
    assert_eq!(c.sampling.temperature, 0.2);
    assert_eq!(c.sampling.repeat_penalty, 2.0);
    assert_eq!(c.model.n_gpu_layers, 99);
    assert!(!c.model.use_mmap);
    assert_eq!(c.model.path, PathBuf::from("/x.gguf"));
    assert_eq!(c.chat.user_name, "Ann Smith");
    assert_eq!(c.chat.prompt_variant, PromptVariant::Evaluation);
    assert_eq!(c.log.level, LogLevel::Trace);
    assert_eq!(c.sampling.stop, vec![s("</s>"), s("END")]);
    assert_eq!(
        loaded.source_of("model.n_gpu_layers"),
        Some(&Source::Env(s("HER_MODEL_N_GPU_LAYERS")))
    );
}

#[test]
fn env_bools_and_lists() {
    for (text, want) in [
        ("true", true),
        ("1", true),
        ("YES", true),
        ("false", false),
        ("0", false),
    ] {
        let c = load(&env_only(&[("HER_MODEL_USE_MMAP", text)]), &[])
            .unwrap()
            .config;
        assert_eq!(c.model.use_mmap, want, "{text}");
    }
    let c = load(&env_only(&[("HER_SAMPLING_STOP", r#"["a,b", "\n"]"#)]), &[])
        .unwrap()
        .config;
    assert_eq!(c.sampling.stop, vec![s("a,b"), s("\n")]);
    let c = load(&env_only(&[("HER_SAMPLING_STOP", "")]), &[])
        .unwrap()
        .config;
    assert!(c.sampling.stop.is_empty());
}

#[test]
fn env_bad_values_name_the_variable() {
    let msg = err_text(&env_only(&[("HER_SAMPLING_TOP_P", "1.5")]), &[]);
    assert_eq!(
        msg,
        "config error in environment variable 'HER_SAMPLING_TOP_P': \
         'sampling.top_p' must be a number in (0, 1], found '1.5'"
    );
    let msg = err_text(&env_only(&[("HER_SAMPLING_TEMPERATURE", "hot")]), &[]);
    assert!(msg.contains("'sampling.temperature' must be a number in 0.0..=5.0, found 'hot'"));
    let msg = err_text(&env_only(&[("HER_MODEL_USE_MMAP", "maybe")]), &[]);
    assert!(msg.contains("'model.use_mmap' must be true or false, found 'maybe'"));
    let msg = err_text(&env_only(&[("HER_MODEL_N_CTX", "4096.0")]), &[]);
    assert!(msg.contains("'model.n_ctx' must be an integer"), "{msg}");
    let msg = err_text(&env_only(&[("HER_SAMPLING_STOP", "a,,b")]), &[]);
    assert!(
        msg.contains("must be an array of non-empty strings"),
        "{msg}"
    );
    let msg = err_text(&env_only(&[("HER_BACKEND_KIND", "ollama")]), &[]);
    assert!(
        msg.contains("'backend.kind' must be one of 'local', 'openai'"),
        "{msg}"
    );
}

#[test]
fn unknown_her_var_is_an_error_but_allowlisted_and_foreign_are_not() {
    let msg = err_text(&env_only(&[("HER_SAMPLING_TEMPRATURE", "0.5")]), &[]);
    assert!(
        msg.starts_with(
            "config error in environment variable 'HER_SAMPLING_TEMPRATURE': it matches no \
             setting; expected one of: HER_SAMPLING_TEMPERATURE, HER_SAMPLING_TOP_P"
        ),
        "{msg}"
    );
    let msg = err_text(&env_only(&[("HER_FOO", "1")]), &[]);
    assert!(
        msg.contains("expected one of: HER_MODEL_*, HER_SAMPLING_*"),
        "{msg}"
    );
    let ok = env_only(&[
        ("HER_LOG", "debug"),
        ("HOME", "/root"),
        ("her_model_path", ""),
    ]);
    assert_eq!(load(&ok, &[]).unwrap().config, Config::default());
}

#[test]
fn env_var_names_match_keys_with_underscores() {
    assert_eq!(
        env_var_for("model.n_gpu_layers").as_deref(),
        Some("HER_MODEL_N_GPU_LAYERS")
    );
    assert_eq!(
        env_var_for("sampling.max_new_tokens").as_deref(),
        Some("HER_SAMPLING_MAX_NEW_TOKENS")
    );
    assert_eq!(env_var_for("sampling.nope"), None);
}

// ---- command-line overrides ----

#[test]
fn cli_override_wins_over_env() {
    let sources = env_only(&[("HER_SAMPLING_TOP_K", "5"), ("HER_LOG_LEVEL", "warn")]);
    let loaded = load(&sources, &pairs(&[("sampling.top_k", "7")])).unwrap();
    assert_eq!(loaded.config.sampling.top_k, 7);
    assert_eq!(loaded.config.log.level, LogLevel::Warn);
    assert_eq!(
        loaded.source_of("sampling.top_k"),
        Some(&Source::Flag(s("sampling.top_k")))
    );
}

#[test]
fn bad_cli_overrides() {
    let none = ConfigSources::default();
    let msg = err_text(&none, &[("sampling.temprature", "1")]);
    assert!(msg.starts_with(
        "config error in command-line override 'sampling.temprature': unknown key \
         'sampling.temprature'; expected one of: temperature,"
    ));
    let msg = err_text(&none, &[("sampler.top_k", "1")]);
    assert!(msg.contains("unknown section 'sampler'"), "{msg}");
    let msg = err_text(&none, &[("temperature", "1")]);
    assert!(
        msg.contains("expected one of: model.path, model.n_gpu_layers"),
        "{msg}"
    );
    let msg = err_text(&none, &[("model.n_ctx", "lots")]);
    assert!(msg.contains("'model.n_ctx' must be an integer in 256..=1048576, found 'lots'"));
}

// ---- paths ----

#[test]
fn resolve_path_uses_studio_folder_for_relative_paths() {
    let c = Config::default();
    let studio = Path::new("/srv/studio");
    assert_eq!(
        c.model_path(studio),
        PathBuf::from("/srv/studio/assets/models/SmolLM2-135M-Instruct.Q4_1.gguf")
    );
    assert_eq!(
        c.resolve_path(studio, Path::new("/abs/x")),
        PathBuf::from("/abs/x")
    );
    assert_eq!(
        c.characters_dir(studio),
        PathBuf::from("/srv/studio/characters")
    );
    if let Some(home) = directories::BaseDirs::new().map(|b| b.home_dir().to_owned()) {
        assert_eq!(
            c.resolve_path(studio, Path::new("~/m.gguf")),
            home.join("m.gguf")
        );
    }
}

#[test]
fn log_file_defaults_to_user_data_dir() {
    let mut c = Config::default();
    let studio = Path::new("/srv/studio");
    assert_eq!(
        c.log_file(studio),
        user_data_dir().map(|d| d.join("her.log"))
    );
    c.log.file = PathBuf::from("logs/her.log");
    assert_eq!(
        c.log_file(studio),
        Some(PathBuf::from("/srv/studio/logs/her.log"))
    );
}

#[test]
fn user_dirs_are_her_studio_ones() {
    if let Some(p) = user_config_path() {
        assert!(p.ends_with("her-studio/config.toml"), "{}", p.display());
    }
    if let Some(d) = user_data_dir() {
        assert!(d.ends_with("her-studio"), "{}", d.display());
    }
    let sources = ConfigSources::from_process(Path::new("/srv/studio"));
    assert_eq!(
        sources.studio_file,
        Some(PathBuf::from("/srv/studio/config.toml"))
    );
    assert!(sources.env.iter().all(|(k, _)| k.starts_with("HER_")));
}

// ---- samplers ----

#[test]
fn sampler_settings_from_env_and_flags() {
    let env = env_only(&[
        ("HER_SAMPLING_ORDER", "xtc, temperature"),
        (
            "HER_SAMPLING_LOGIT_BIAS",
            "[{ token = 3, bias = -inf }, { text = \"hi\", bias = 2 }]",
        ),
    ]);
    let c = load(
        &env,
        &pairs(&[("sampling.dry_sequence_breakers", "[\"\\n\", \"*\"]")]),
    )
    .unwrap()
    .config
    .sampling;
    assert_eq!(c.order, vec![s("xtc"), s("temperature")]);
    assert_eq!(c.logit_bias.len(), 2);
    assert_eq!(c.logit_bias[0].token, Some(3));
    assert_eq!(c.logit_bias[0].bias, f32::NEG_INFINITY);
    assert_eq!(c.logit_bias[1].text.as_deref(), Some("hi"));
    assert_eq!(c.logit_bias[1].bias, 2.0);
    assert_eq!(c.dry_sequence_breakers, vec![s("\n"), s("*")]);
}

#[test]
fn a_bad_sampler_name_is_one_error_naming_key_and_value() {
    let msg = err_text(&env_only(&[("HER_SAMPLING_ORDER", "top_k, tfs")]), &[]);
    assert!(
        msg.contains("'sampling.order' must be one of penalties,"),
        "{msg}"
    );
    assert!(msg.ends_with("found 'tfs'"), "{msg}");
    let msg = err_text(&env_only(&[("HER_SAMPLING_LOGIT_BIAS", "5")]), &[]);
    assert!(
        msg.contains("'sampling.logit_bias' must be an array of tables"),
        "{msg}"
    );
}

#[test]
fn sampling_with_a_ban_survives_a_json_round_trip() {
    // Session logs record the sampling settings as JSON, which has no -inf.
    let sampling = SamplingConfig {
        logit_bias: vec![crate::config::LogitBias {
            token: Some(9),
            text: None,
            bias: f32::NEG_INFINITY,
        }],
        ..SamplingConfig::default()
    };
    let json = serde_json::to_string(&sampling).unwrap();
    assert!(json.contains("\"-inf\""), "{json}");
    let back: SamplingConfig = serde_json::from_str(&json).unwrap();
    assert_eq!(back, sampling);
}

#[test]
fn sampling_logged_before_the_new_keys_still_reads() {
    let old = r#"{"temperature":0.7,"top_p":0.9,"top_k":40,"min_p":0.0,"repeat_penalty":1.0,
        "repeat_last_n":64,"max_new_tokens":1024,"seed":42,"stop":[]}"#;
    let s: SamplingConfig = serde_json::from_str(old).unwrap();
    assert_eq!(s.order, SamplingConfig::default().order);
    assert_eq!(s.dry_multiplier, 0.0);
}
