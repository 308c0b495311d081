//! adapter_config.json: the LoRA settings a llama.cpp LoRA GGUF can hold
//! (rank, alpha with rsLoRA folded in, the base model's name), and every
//! other PEFT setting refused by name.

use std::path::Path;

use serde_json::Value;

use super::PeftError;
use super::import::{MAX_CONFIG_BYTES, bad, read_capped};
use crate::lora::Target;

/// The LoRA settings of adapter_config.json that shape the GGUF.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct AdapterSettings {
    pub(super) rank: usize,
    /// Alpha for llama.cpp's scale alpha/r: `lora_alpha`, times √r under rsLoRA.
    pub(super) alpha: f64,
    pub(super) rslora: bool,
    pub(super) base_model: Option<String>,
}

/// adapter_config.json: a plain LoRA, or the import stops here.
pub(super) fn read_config(path: &Path) -> Result<AdapterSettings, PeftError> {
    let bytes = read_capped(
        path,
        MAX_CONFIG_BYTES,
        "a PEFT adapter folder has one (save the adapter with save_pretrained)",
    )?;
    let json: Value =
        serde_json::from_slice(&bytes).map_err(|e| bad(path, format!("is not valid JSON: {e}")))?;
    settings_of(&json).map_err(|detail| bad(path, detail))
}

/// The checks on adapter_config.json, as the text of the error.
fn settings_of(json: &Value) -> Result<AdapterSettings, String> {
    let obj = json.as_object().ok_or("is not a JSON object".to_owned())?;
    match obj.get("peft_type").and_then(Value::as_str) {
        Some("LORA") => {}
        Some(other) => {
            return Err(format!(
                "'peft_type' is '{other}': only LoRA adapters (peft_type 'LORA') convert to a llama.cpp LoRA GGUF"
            ));
        }
        None => return Err("has no 'peft_type': is this a PEFT adapter folder?".to_owned()),
    }
    let is_true = |key: &str| obj.get(key).and_then(Value::as_bool) == Some(true);
    let is_set = |key: &str| match obj.get(key) {
        None | Some(Value::Null) | Some(Value::Bool(false)) => false,
        Some(Value::Object(m)) => !m.is_empty(),
        Some(Value::Array(a)) => !a.is_empty(),
        Some(Value::String(s)) => !s.is_empty(),
        Some(_) => true,
    };
    if is_true("use_dora") {
        return Err("uses DoRA ('use_dora': true), which a llama.cpp LoRA GGUF cannot hold (no magnitude vectors): merge the adapter into the model, or train a plain LoRA".to_owned());
    }
    for (key, what) in [
        ("rank_pattern", "per-module ranks"),
        ("alpha_pattern", "per-module alphas"),
    ] {
        if is_set(key) {
            return Err(format!(
                "sets '{key}' ({what}), which this import does not apply: train with one r and lora_alpha for every module"
            ));
        }
    }
    if let Some(bias) = obj.get("bias").and_then(Value::as_str)
        && bias != "none"
    {
        return Err(format!(
            "has 'bias': '{bias}': trained biases do not fit a LoRA GGUF; train with bias='none'"
        ));
    }
    if is_true("lora_bias") {
        return Err(
            "has 'lora_bias': true (a bias on lora_B), which a LoRA GGUF cannot hold".to_owned(),
        );
    }
    if is_true("fan_in_fan_out") {
        return Err(
            "has 'fan_in_fan_out': true (Conv1D weights, GPT-2 style): not a llama-family adapter"
                .to_owned(),
        );
    }
    for (key, what) in [
        ("modules_to_save", "fully trained modules"),
        ("trainable_token_indices", "trained token embeddings"),
        ("layer_replication", "replicated layers"),
        ("target_parameters", "adapted parameters (MoE experts)"),
        ("alora_invocation_tokens", "activated LoRA"),
    ] {
        if is_set(key) {
            return Err(format!(
                "sets '{key}' ({what}), which a llama.cpp LoRA GGUF cannot hold"
            ));
        }
    }
    if let Some(Value::Array(targets)) = obj.get("target_modules") {
        for t in targets.iter().filter_map(Value::as_str) {
            let leaf = t.rsplit('.').next().unwrap_or(t);
            if ["embed_tokens", "lm_head", "wte", "output"].contains(&leaf) {
                return Err(format!(
                    "targets '{t}': LoRA on the embeddings or the output head is not supported (only q/k/v/o_proj and gate/up/down_proj)"
                ));
            }
            if !Target::ALL
                .iter()
                .any(|x| x.peft_name().rsplit('.').next() == Some(leaf))
            {
                return Err(format!(
                    "targets '{t}', which is not one of q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj"
                ));
            }
        }
    }
    let rank = obj
        .get("r")
        .and_then(Value::as_u64)
        .filter(|r| (1..=4096).contains(r))
        .ok_or_else(|| {
            format!(
                "'r' is '{}', not a rank in 1..=4096",
                field_text(obj.get("r"))
            )
        })? as usize;
    // PEFT's default lora_alpha is 8.
    let lora_alpha = match obj.get("lora_alpha") {
        None | Some(Value::Null) => 8.0,
        Some(v) => v
            .as_f64()
            .filter(|a| a.is_finite() && *a > 0.0)
            .ok_or_else(|| format!("'lora_alpha' is '{v}', not a positive number"))?,
    };
    let rslora = is_true("use_rslora");
    // rsLoRA scales by lora_alpha/√r; llama.cpp by alpha/r.
    let alpha = if rslora {
        lora_alpha * (rank as f64).sqrt()
    } else {
        lora_alpha
    };
    Ok(AdapterSettings {
        rank,
        alpha,
        rslora,
        base_model: obj
            .get("base_model_name_or_path")
            .and_then(Value::as_str)
            .map(str::to_owned),
    })
}

fn field_text(v: Option<&Value>) -> String {
    v.map_or_else(|| "missing".to_owned(), Value::to_string)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn config(extra: &[(&str, Value)]) -> Value {
        let mut c = serde_json::json!({
            "peft_type": "LORA", "r": 8, "lora_alpha": 16, "bias": "none",
            "target_modules": ["q_proj", "k_proj"], "use_dora": false, "use_rslora": false,
            "rank_pattern": {}, "alpha_pattern": {}, "modules_to_save": null,
            "fan_in_fan_out": false, "base_model_name_or_path": "org/base"
        });
        for (k, v) in extra {
            c[*k] = v.clone();
        }
        c
    }

    #[test]
    fn a_plain_lora_config_is_read() {
        let s = settings_of(&config(&[])).unwrap();
        assert_eq!((s.rank, s.alpha, s.rslora), (8, 16.0, false));
        assert_eq!(s.base_model.as_deref(), Some("org/base"));
        // rsLoRA's scale lora_alpha/√r, written for llama.cpp's alpha/r.
        let s = settings_of(&config(&[("use_rslora", Value::Bool(true))])).unwrap();
        assert!((s.alpha / 8.0 - 16.0 / 8f64.sqrt()).abs() < 1e-12);
        // PEFT's default alpha when the key is missing.
        let mut c = config(&[]);
        c.as_object_mut().unwrap().remove("lora_alpha");
        assert_eq!(settings_of(&c).unwrap().alpha, 8.0);
    }

    #[test]
    fn settings_a_gguf_cannot_hold_are_refused_by_name() {
        use serde_json::json;
        for (key, value, says) in [
            ("use_dora", json!(true), "DoRA"),
            ("rank_pattern", json!({"q_proj": 4}), "rank_pattern"),
            ("alpha_pattern", json!({"q_proj": 4}), "alpha_pattern"),
            ("bias", json!("lora_only"), "bias"),
            ("lora_bias", json!(true), "lora_bias"),
            ("fan_in_fan_out", json!(true), "fan_in_fan_out"),
            ("modules_to_save", json!(["lm_head"]), "modules_to_save"),
            (
                "target_modules",
                json!(["q_proj", "embed_tokens"]),
                "embed_tokens",
            ),
            ("target_modules", json!(["lm_head"]), "lm_head"),
            ("target_modules", json!(["qkv_proj"]), "qkv_proj"),
            ("peft_type", json!("IA3"), "IA3"),
            ("r", json!(0), "'r'"),
            ("lora_alpha", json!(-1), "lora_alpha"),
        ] {
            let err = settings_of(&config(&[(key, value)])).unwrap_err();
            assert!(err.contains(says), "{key}: {err}");
        }
    }
}
