//! The `her` binary end to end: help, bad input (one clear error, non-zero
//! exit, no panic), a headless chat on the real SmolLM2 model, doctor.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use her_gguf::GgufWriter;

/// `her` with an isolated home (no user config), the repo as studio, and
/// the log in a temp folder.
fn her(home: &Path) -> Command {
    let mut cmd = Command::new(common::her_bin());
    cmd.env("HOME", home)
        .env_remove("XDG_CONFIG_HOME")
        .env_remove("XDG_DATA_HOME")
        .args(["--studio", common::repo_root().to_str().unwrap()])
        .arg("--set")
        .arg(format!("log.file={}", home.join("her.log").display()))
        .stdin(Stdio::null());
    for (name, _) in std::env::vars() {
        if name.starts_with("HER_") {
            cmd.env_remove(name);
        }
    }
    cmd
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A failed run: non-zero exit, one `error:` line that contains `needle`, no panic.
fn assert_one_clear_error(o: &Output, needle: &str) {
    let err = stderr(o);
    assert!(!o.status.success(), "expected failure, stderr: {err}");
    assert!(!err.contains("panicked"), "{err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "expected one line, got: {err}");
    assert!(lines[0].starts_with("error: "), "{err}");
    assert!(err.contains(needle), "'{needle}' not in: {err}");
}

fn chat_with_model(home: &Path, model: &Path) -> Output {
    her(home)
        .args(["chat", "--headless", "--model"])
        .arg(model)
        .output()
        .unwrap()
}

#[test]
fn help_lists_the_commands() {
    let home = tempfile::tempdir().unwrap();
    let out = her(home.path()).arg("--help").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    for cmd in ["chat", "doctor", "bench", "characters"] {
        assert!(text.contains(cmd), "{text}");
    }
}

#[test]
fn a_missing_model_is_one_clear_error() {
    let home = tempfile::tempdir().unwrap();
    let out = chat_with_model(home.path(), Path::new("/nonexistent/model.gguf"));
    assert_one_clear_error(&out, "'/nonexistent/model.gguf' does not exist");
}

#[test]
fn a_file_that_is_not_gguf_is_one_clear_error() {
    let home = tempfile::tempdir().unwrap();
    let fake = home.path().join("fake.gguf");
    std::fs::write(&fake, b"<html>not a model</html>").unwrap();
    let out = chat_with_model(home.path(), &fake);
    assert_one_clear_error(&out, "is not a GGUF file");
}

#[test]
fn a_truncated_gguf_is_one_clear_error() {
    let home = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(&common::tiny().model).unwrap();
    let cut = home.path().join("cut.gguf");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let out = chat_with_model(home.path(), &cut);
    assert_one_clear_error(&out, "is truncated");
}

#[test]
fn an_unsupported_architecture_is_one_clear_error() {
    let home = tempfile::tempdir().unwrap();
    let path = home.path().join("bert.gguf");
    let mut w = GgufWriter::new();
    w.add_string("general.architecture", "bert").add_tensor_f32(
        "token_embd.weight",
        &[4, 4],
        vec![0.0; 16],
    );
    w.write(&path).unwrap();
    let out = chat_with_model(home.path(), &path);
    assert_one_clear_error(&out, "architecture 'bert'");
}

#[test]
fn a_context_smaller_than_the_system_prompt_is_one_clear_error() {
    let home = tempfile::tempdir().unwrap();
    let mut child = her(home.path())
        .args([
            "chat",
            "--headless",
            "--no-save",
            "--n-ctx",
            "256",
            "--set",
            "model.n_batch=256",
            "--model",
        ])
        .arg(&common::tiny().model)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"Hello\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_one_clear_error(&out, "context window (model.n_ctx) holds 256");
}

#[test]
fn invalid_sampler_values_are_one_clear_error() {
    let home = tempfile::tempdir().unwrap();
    let out = her(home.path())
        .args(["chat", "--headless", "--top-p", "1.5"])
        .output()
        .unwrap();
    assert_one_clear_error(&out, "sampling.top_p");
    let out = her(home.path())
        .args(["chat", "--headless", "--set", "sampling.temperature=hot"])
        .output()
        .unwrap();
    assert_one_clear_error(&out, "sampling.temperature");
}

#[test]
fn an_unreadable_or_invalid_config_is_one_clear_error() {
    let home = tempfile::tempdir().unwrap();
    // A directory where the user's config file should be cannot be read (even by root).
    let user_config = home.path().join(".config/her-studio/config.toml");
    std::fs::create_dir_all(&user_config).unwrap();
    let out = her(home.path())
        .args(["chat", "--headless"])
        .output()
        .unwrap();
    assert_one_clear_error(&out, &user_config.display().to_string());
    std::fs::remove_dir(&user_config).unwrap();
    std::fs::write(&user_config, "[sampling]\ntemprature = 0.5\n").unwrap();
    let out = her(home.path())
        .args(["chat", "--headless"])
        .output()
        .unwrap();
    assert_one_clear_error(&out, "unknown key 'sampling.temprature'");
}

#[test]
fn an_unknown_character_is_one_clear_error() {
    let home = tempfile::tempdir().unwrap();
    let out = her(home.path())
        .args(["chat", "--headless", "--character", "nobody"])
        .output()
        .unwrap();
    assert_one_clear_error(&out, "no character named 'nobody'");
}

fn smollm2_chat(home: &Path, input: &str) -> Output {
    common::fed(
        her(home)
            .args([
                "chat",
                "--headless",
                "--no-save",
                "--stats",
                "--max-new-tokens",
                "24",
                "--threads",
                "2",
                "--model",
            ])
            .arg(common::smollm2()),
        input,
    )
}

#[test]
fn headless_chat_on_smollm2_streams_replies_and_reuses_the_cache() {
    let home = tempfile::tempdir().unwrap();
    let out = smollm2_chat(
        home.path(),
        "Good evening, Miss Bennet.\nDo you like to dance?\n",
    );
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(!String::from_utf8_lossy(&out.stdout).trim().is_empty());
    // stderr holds exactly the two statistics lines: llama.cpp's own logs went to the log file.
    let stats: Vec<&str> = err.lines().collect();
    assert_eq!(stats.len(), 2, "{err}");
    let numbers = |line: &str| -> (usize, usize) {
        let (_, rest) = line.split_once("prompt ").unwrap();
        let (prompt, rest) = rest.split_once(" (").unwrap();
        let (evaluated, _) = rest.split_once(' ').unwrap();
        (prompt.parse().unwrap(), evaluated.parse().unwrap())
    };
    let (p1, e1) = numbers(stats[0]);
    let (p2, e2) = numbers(stats[1]);
    assert_eq!(p1, e1, "first turn evaluates the whole prompt");
    assert!(
        p2 > p1 && e2 < p2 / 4,
        "second turn reused the cache: {err}"
    );
    let log = std::fs::read_to_string(home.path().join("her.log")).unwrap();
    assert!(
        log.contains("llama"),
        "llama.cpp logs should be in the log file"
    );
}

/// A studio of its own with the repo's Elizabeth, for chats that save.
fn own_studio() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("characters")).unwrap();
    std::fs::copy(
        common::repo_root().join("characters/elizabeth-bennet.toml"),
        dir.path().join("characters/elizabeth-bennet.toml"),
    )
    .unwrap();
    dir
}

/// `her chat --headless --stats` on SmolLM2 in `studio`, fed `input`.
fn line_chat(studio: &Path, extra: &[&str], input: &str) -> Output {
    common::fed(
        Command::new(common::her_bin())
            .env("HOME", studio)
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("XDG_DATA_HOME")
            .arg("--studio")
            .arg(studio)
            .arg("--set")
            .arg(format!("log.file={}", studio.join("her.log").display()))
            .args(["chat", "--headless", "--stats", "--max-new-tokens", "16"])
            .args(["--threads", "2", "--model"])
            .arg(common::smollm2())
            .args(extra),
        input,
    )
}

/// The prompt tokens of each turn, from the `--stats` lines.
fn prompt_tokens(stderr: &str) -> Vec<usize> {
    stderr
        .lines()
        .filter_map(|l| l.split_once(" tok/s, prompt ")?.1.split_once(' '))
        .map(|(n, _)| n.parse().unwrap())
        .collect()
}

/// The session file a line chat named on stderr.
fn session_named(stderr: &str) -> std::path::PathBuf {
    let line = stderr
        .lines()
        .find_map(|l| l.strip_prefix("session: "))
        .unwrap_or_else(|| panic!("no session line in: {stderr}"));
    std::path::PathBuf::from(line)
}

/// (role, text) along a session's active branch.
fn turns(path: &Path) -> Vec<(her_core::session::Role, String)> {
    let (session, issues) = her_core::session::load_session(path).unwrap();
    assert!(issues.is_empty(), "{issues:?}");
    let tree = session.tree();
    tree.active_path()
        .into_iter()
        .filter_map(|id| tree.node(id))
        .map(|n| (n.message.role, n.message.text.clone()))
        .collect()
}

#[test]
fn a_headless_chat_is_saved_and_resumed_with_its_history() {
    use her_core::session::Role;
    let dir = own_studio();
    let out = line_chat(dir.path(), &[], "Good evening.\nDo you dance?\n");
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    let path = session_named(&err);
    assert!(
        path.starts_with(dir.path().join("sessions")),
        "{}",
        path.display()
    );
    let saved = turns(&path);
    let roles: Vec<Role> = saved.iter().map(|(r, _)| *r).collect();
    use Role::{Character as C, User as U};
    assert_eq!(roles, [C, U, C, U, C], "greeting, then two turns");
    assert_eq!(saved[1].1, "Good evening.");
    assert_eq!(saved[3].1, "Do you dance?");
    let (session, _) = her_core::session::load_session(&path).unwrap();
    assert_eq!(
        session.header().character.as_deref(),
        Some("Elizabeth Bennet")
    );
    let tree = session.tree();
    let last = tree.node(tree.leaf()).unwrap();
    assert!(last.message.meta.finish_reason.is_some());
    assert!(last.message.meta.provenance.is_some());
    let first = prompt_tokens(&err);
    assert_eq!(first.len(), 2, "{err}");

    // Resumed: the same file grows, and the whole story is in the prompt.
    let out = line_chat(
        dir.path(),
        &["--session", path.to_str().unwrap()],
        "And tomorrow?\n",
    );
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert_eq!(session_named(&err), path);
    let resumed = prompt_tokens(&err);
    assert!(resumed[0] > first[1], "history fed the prompt: {err}");
    let saved = turns(&path);
    assert_eq!(saved.len(), 7);
    assert_eq!(saved[5], (U, "And tomorrow?".to_string()));

    // --no-save writes nothing.
    let out = line_chat(dir.path(), &["--no-save"], "Hello.\n");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stderr(&out).contains("session: "));
    let files = std::fs::read_dir(dir.path().join("sessions"))
        .unwrap()
        .count();
    assert_eq!(files, 1);
}

#[test]
fn a_missing_or_unreadable_session_is_one_clear_error() {
    let home = tempfile::tempdir().unwrap();
    let run = |path: &Path| {
        her(home.path())
            .args(["chat", "--headless", "--session"])
            .arg(path)
            .output()
            .unwrap()
    };
    assert_one_clear_error(
        &run(Path::new("/nonexistent/x.jsonl")),
        "'/nonexistent/x.jsonl'",
    );
    assert_one_clear_error(&run(home.path()), "it is a folder, not a regular file");
    // A FIFO is refused at once, before the lock or the reader waits on it.
    let fifo = home.path().join("pipe.jsonl");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    assert_one_clear_error(&run(&fifo), "not a regular file");
    let junk = home.path().join("junk.jsonl");
    std::fs::write(&junk, "not a session\n").unwrap();
    assert_one_clear_error(&run(&junk), "not a session header");
}

#[test]
fn doctor_reports_the_default_model() {
    let home = tempfile::tempdir().unwrap();
    common::smollm2();
    let out = her(home.path()).arg("doctor").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", stderr(&out));
    assert!(text.contains("architecture 'llama'"), "{text}");
    assert!(text.contains("file type Q4_1"), "{text}");
    assert!(text.contains("sampling.temperature = 0.7"), "{text}");
    assert!(text.contains("all checks passed"), "{text}");
}

#[test]
fn doctor_reports_a_broken_model_and_fails() {
    let home = tempfile::tempdir().unwrap();
    let out = her(home.path())
        .args(["doctor", "--model", "/nonexistent/x.gguf"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("PROBLEM"));
}

#[test]
fn characters_lists_the_shipped_characters() {
    let home = tempfile::tempdir().unwrap();
    let out = her(home.path()).arg("characters").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(
        text.contains("Elizabeth Bennet (Pride and Prejudice)"),
        "{text}"
    );
}

/// `her train sft` on the tiny model: ctrl+c saves a checkpoint and exits
/// 130; `--resume` finishes the run and writes both adapter formats.
#[test]
fn train_sft_stops_on_ctrl_c_and_resumes() {
    use std::io::Read;
    let t = common::tiny();
    let studio = tempfile::tempdir().unwrap();
    let data = common::repo_root().join("assets/datasets/elizabeth-sft.jsonl");
    let her = |args: &[&str]| {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_her"));
        c.arg("--studio")
            .arg(studio.path())
            .args([
                "--set",
                "train.max_steps=400",
                "--set",
                "train.batch_size=2",
            ])
            .args([
                "--set",
                "train.checkpoint_every=0",
                "--set",
                "train.eval_every=0",
            ])
            .arg("--set")
            .arg(format!("log.file={}/her.log", studio.path().display()))
            .args(args)
            .arg("--model")
            .arg(&t.model)
            .arg("--data")
            .arg(&data);
        c
    };
    let mut child = her(&["train", "sft", "--name", "stop-me"])
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait for the first progress line, then interrupt.
    let mut stderr = child.stderr.take().unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 256];
    while !String::from_utf8_lossy(&seen).contains("step ") {
        let n = stderr.read(&mut buf).unwrap();
        assert!(n > 0, "no progress: {}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&buf[..n]);
    }
    std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    let status = child.wait().unwrap();
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    assert_eq!(status.code(), Some(130), "{out}");
    assert!(out.contains("her train sft --resume"), "{out}");
    let run = studio.path().join("runs/stop-me");
    let checkpoint = her_train::checkpoint::latest(&run.join("checkpoints")).unwrap();
    let done: u64 = checkpoint
        .to_string_lossy()
        .rsplit('-')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(done > 0 && done < 400, "{}", checkpoint.display());
    assert!(!run.join("adapter.gguf").exists());

    let resumed = her(&["train", "sft", "--resume", run.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        resumed.status.success(),
        "{}",
        String::from_utf8_lossy(&resumed.stderr)
    );
    assert!(run.join("adapter.gguf").is_file());
    assert!(run.join("peft/adapter_model.safetensors").is_file());
    let steps = std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .filter(|l| l.contains("\"kind\":\"step\""))
        .count();
    assert_eq!(steps, 400, "one metrics line per step, none twice");
}

/// A one-projection PEFT folder for the tiny Qwen3 (rank 2 on layer 0's q_proj).
fn tiny_peft_folder(dir: &Path, use_dora: bool) {
    use candle_core::{DType, Device, Tensor};
    let spec = &common::tiny().spec;
    let (n_in, n_out) = (spec.n_embd as usize, (spec.n_head * spec.head_dim) as usize);
    std::fs::create_dir_all(dir).unwrap();
    let config = serde_json::json!({
        "peft_type": "LORA", "r": 2, "lora_alpha": 4, "target_modules": ["q_proj"],
        "bias": "none", "use_dora": use_dora
    });
    std::fs::write(dir.join("adapter_config.json"), config.to_string()).unwrap();
    let key = |f: &str| format!("base_model.model.model.layers.0.self_attn.q_proj.lora_{f}.weight");
    let tensors = std::collections::HashMap::from([
        (
            key("A"),
            Tensor::ones((2, n_in), DType::F32, &Device::Cpu).unwrap(),
        ),
        (
            key("B"),
            Tensor::ones((n_out, 2), DType::F32, &Device::Cpu).unwrap(),
        ),
    ]);
    candle_core::safetensors::save(&tensors, dir.join("adapter_model.safetensors")).unwrap();
}

#[test]
fn import_adapter_writes_a_lora_gguf_and_refuses_dora_in_one_line() {
    let home = tempfile::tempdir().unwrap();
    let model = common::tiny().model.clone();
    let folder = home.path().join("my-lora");
    tiny_peft_folder(&folder, false);
    let out_file = home.path().join("my-lora.gguf");
    let run = |folder: &Path| {
        her(home.path())
            .args(["import", "adapter"])
            .arg(folder)
            .arg("--model")
            .arg(&model)
            .arg("--out")
            .arg(&out_file)
            .output()
            .unwrap()
    };
    let ok = run(&folder);
    assert!(ok.status.success(), "{}", stderr(&ok));
    let stdout = String::from_utf8_lossy(&ok.stdout);
    assert!(
        stdout.contains("/adapter") && stdout.contains("r 2"),
        "{stdout}"
    );
    let file = her_train::lora::read_lora_gguf(&out_file).unwrap();
    assert_eq!(
        (file.arch.as_str(), file.rank, file.tensors.len()),
        ("qwen3", 2, 1)
    );

    let again = run(&folder);
    assert_one_clear_error(&again, "--force");

    let dora = home.path().join("dora");
    tiny_peft_folder(&dora, true);
    std::fs::remove_file(&out_file).unwrap();
    let refused = run(&dora);
    assert_one_clear_error(&refused, "DoRA");
    assert!(stderr(&refused).contains("adapter_config.json"));
    assert!(!out_file.exists());
}

/// `her` on a fresh studio folder with the tiny model, for the memory plan.
fn her_in_studio(studio: &Path, args: &[&str]) -> Output {
    let t = common::tiny();
    Command::new(env!("CARGO_BIN_EXE_her"))
        .arg("--studio")
        .arg(studio)
        .arg("--set")
        .arg(format!("log.file={}/her.log", studio.display()))
        .args(args)
        .arg("--model")
        .arg(&t.model)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

const PLAN_TERMS: [&str; 8] = [
    "base weights",
    "LoRA + AdamW",
    "activations",
    "largest dequantized tile",
    "head / loss",
    "workspace / runtime",
    "total",
    "budget",
];

/// `her train plan` prints every term, the budget and the verdict, for a
/// GGUF's header and for a named shape; bad flags are one clear error.
#[test]
fn train_plan_prints_the_table() {
    let studio = tempfile::tempdir().unwrap();
    let out = her_in_studio(studio.path(), &["train", "plan", "--memory-gib", "64"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", stderr(&out));
    for term in PLAN_TERMS {
        assert!(text.contains(term), "{term}: {text}");
    }
    assert!(text.contains("tiny-qwen3"), "{text}");
    assert!(text.contains("fits (within 95% of the budget)"), "{text}");
    assert!(text.contains("train.memory_limit_gib = 64"), "{text}");

    let home = tempfile::tempdir().unwrap();
    let named = her(home.path())
        .args(["train", "plan", "--shape", "qwen3-32b", "--device", "cuda"])
        .args(["--memory-gib", "80", "--seq", "4096", "--batch", "1"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&named.stdout);
    assert!(named.status.success(), "{}", stderr(&named));
    assert!(
        text.contains("qwen3-32b") && text.contains("bf16"),
        "{text}"
    );
    assert!(text.contains("4.85 bits per weight (assumed)"), "{text}");
    assert!(text.contains(" · bf16 · "), "auto is bf16 on cuda: {text}");
    // train.dtype is the plan's unless --dtype says otherwise.
    let plan_with = |extra: &[&str]| {
        her(home.path())
            .args(["train", "plan", "--shape", "smollm2", "--device", "cuda"])
            .args(extra)
            .output()
            .unwrap()
    };
    for extra in [&["--dtype", "f32"][..], &["--set", "train.dtype=f32"][..]] {
        let out = plan_with(extra);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(text.contains(" · f32 · "), "{extra:?}: {text}");
    }
    let bad = plan_with(&["--dtype", "fp8"]);
    assert!(!bad.status.success());
    assert!(stderr(&bad).contains("--dtype 'fp8'"), "{}", stderr(&bad));
    // Without checkpointing, 64 layers of today's t×t attention do not fit
    // 80 GB, and checkpointing is the first thing to try.
    assert!(text.contains("does NOT fit"), "{text}");
    assert!(
        text.contains("train.activation_checkpointing = true"),
        "{text}"
    );

    let bad = her(home.path())
        .args(["train", "plan", "--shape", "llama-70b"])
        .output()
        .unwrap();
    assert_one_clear_error(&bad, "qwen3-1.7b, qwen3-8b, qwen3-32b, smollm2");
    let bad = her(home.path())
        .args(["train", "plan", "--shape", "smollm2", "--device", "tpu"])
        .output()
        .unwrap();
    assert_one_clear_error(&bad, "--device 'tpu': use cpu or cuda");
}

/// `--plan` prints the run's plan and trains nothing; a run whose plan
/// does not fit `train.memory_limit_gib` is refused with the table and
/// what would fit, before the model loads and without a run folder.
#[test]
fn a_run_that_does_not_fit_is_refused_with_the_plan() {
    let studio = tempfile::tempdir().unwrap();
    let data = common::repo_root().join("assets/datasets/elizabeth-sft.jsonl");
    let data = data.to_str().unwrap();
    let runs = studio.path().join("runs");

    let planned = her_in_studio(
        studio.path(),
        &["train", "sft", "--plan", "--data", data, "--name", "p"],
    );
    let text = String::from_utf8_lossy(&planned.stdout);
    assert!(planned.status.success(), "{}", stderr(&planned));
    for term in PLAN_TERMS {
        assert!(text.contains(term), "{term}: {text}");
    }
    assert!(!runs.join("p").exists());
    // DPO's micro-batch holds both replies of every pair.
    let dpo = her_in_studio(
        studio.path(),
        &["train", "dpo", "--plan", "--set", "train.batch_size=3"],
    );
    let text = String::from_utf8_lossy(&dpo.stdout);
    assert!(dpo.status.success(), "{}", stderr(&dpo));
    assert!(text.contains("batch 6 × seq"), "{text}");

    // 4 rows of 1024 tokens need ~110 MiB on the tiny model; with
    // checkpointing far less.
    let refused = her_in_studio(
        studio.path(),
        &[
            "--set",
            "train.memory_limit_gib=0.05",
            "train",
            "sft",
            "--data",
            data,
            "--name",
            "too-big",
        ],
    );
    let err = stderr(&refused);
    assert!(!refused.status.success(), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(err.contains("this run does not fit in memory"), "{err}");
    for term in PLAN_TERMS {
        assert!(err.contains(term), "{term}: {err}");
    }
    assert!(err.contains("does NOT fit"), "{err}");
    assert!(
        err.contains("train.activation_checkpointing = true"),
        "{err}"
    );
    assert!(!runs.join("too-big").exists(), "a run folder was created");
}
