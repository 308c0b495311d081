//! The extended samplers (DRY, XTC, top-nσ, typical-p, logit bias, order)
//! under the field names each server kind reads, and the settings a server
//! cannot apply. Both llama-server and vLLM ignore unknown fields silently,
//! so what is dropped has to be worked out here, from the server kind.

use serde_json::{Value, json};

use super::probe::Flavour;
use crate::local::sampler;
use her_core::generation::{SAMPLER_NAMES, SamplingConfig};

/// llama-server's name for each `sampling.order` name (`samplers` field).
fn llama_server_name(name: &str) -> &str {
    match name {
        "typical_p" => "typ_p",
        other => other,
    }
}

/// Adds the extended sampler fields for this server kind to `body`; returns
/// the settings (as `sampling.KEY`) that are in effect but cannot be sent.
pub fn add_fields(body: &mut Value, flavour: Flavour, s: &SamplingConfig) -> Vec<String> {
    let mut dropped = Vec::new();
    if !s.banned_phrases.is_empty() {
        // Neither server rewinds on a string (vLLM's bad_words bans only a last token).
        dropped.push("sampling.banned_phrases".to_owned());
    }
    match flavour {
        Flavour::LlamaServer => {
            body["dry_multiplier"] = json!(s.dry_multiplier);
            body["dry_base"] = json!(s.dry_base);
            body["dry_allowed_length"] = json!(s.dry_allowed_length);
            body["dry_penalty_last_n"] = json!(s.dry_penalty_last_n);
            // The server refuses an empty array.
            if !s.dry_sequence_breakers.is_empty() {
                body["dry_sequence_breakers"] = json!(s.dry_sequence_breakers);
            }
            body["xtc_probability"] = json!(s.xtc_probability);
            body["xtc_threshold"] = json!(s.xtc_threshold);
            // The server's "off" is -1; ours is 0.
            body["top_n_sigma"] = json!(if s.top_n_sigma > 0.0 {
                s.top_n_sigma
            } else {
                -1.0
            });
            body["typical_p"] = json!(s.typical_p);
            let order: Vec<&str> = s.order.iter().map(|n| llama_server_name(n)).collect();
            body["samplers"] = json!(order);
            // [[id or text, bias]]; `false` bans (JSON has no -inf).
            let biases: Vec<Value> = s
                .logit_bias
                .iter()
                .map(|b| {
                    let target = b.token.map_or_else(|| json!(b.text), |id| json!(id));
                    let bias = if b.bias.is_finite() {
                        json!(b.bias)
                    } else {
                        json!(false)
                    };
                    json!([target, bias])
                })
                .collect();
            if !biases.is_empty() {
                body["logit_bias"] = json!(biases);
            }
        }
        Flavour::OpenAi => {
            if sampler::uses_dry(s) {
                dropped.push("sampling.dry_multiplier".to_owned());
            }
            if s.xtc_probability > 0.0 && s.xtc_threshold <= 0.5 {
                dropped.push("sampling.xtc_probability".to_owned());
            }
            if s.top_n_sigma > 0.0 {
                dropped.push("sampling.top_n_sigma".to_owned());
            }
            if s.typical_p < 1.0 {
                dropped.push("sampling.typical_p".to_owned());
            }
            let default_order: Vec<&str> = SAMPLER_NAMES.to_vec();
            if s.order.iter().map(String::as_str).ne(default_order) {
                dropped.push("sampling.order".to_owned());
            }
            // OpenAI's logit_bias: token ids only, biases clamped to -100..=100.
            let mut ids = serde_json::Map::new();
            for b in &s.logit_bias {
                match b.token {
                    Some(id) => {
                        ids.insert(id.to_string(), json!(b.bias.clamp(-100.0, 100.0)));
                    }
                    None if !dropped.iter().any(|d| d == "sampling.logit_bias") => {
                        dropped.push("sampling.logit_bias".to_owned());
                    }
                    None => {}
                }
            }
            if !ids.is_empty() {
                body["logit_bias"] = Value::Object(ids);
            }
        }
    }
    dropped
}

/// The completion fields of OpenAI's own API, which every compatible server
/// takes; anything else in a body is an extension a strict server may refuse.
const OPENAI_FIELDS: &[&str] = &[
    "model",
    "prompt",
    "stream",
    "max_tokens",
    "temperature",
    "top_p",
    "seed",
    "stop",
];

/// Whether a server's refusal (`message`, from a 400 or 422) names a field
/// of `body` beyond OpenAI's own: then the request is worth sending again
/// without them.
pub fn refuses_an_extension(message: &str, body: &Value) -> bool {
    body.as_object().is_some_and(|fields| {
        fields
            .keys()
            .filter(|k| !OPENAI_FIELDS.contains(&k.as_str()) && k.as_str() != "logit_bias")
            .any(|k| message.contains(k.as_str()))
    })
}

/// `body` with only OpenAI's fields (and OpenAI's form of `logit_bias`), and
/// the settings in effect that this leaves out, as `sampling.KEY`.
pub fn openai_only(body: &Value, s: &SamplingConfig) -> (Value, Vec<String>) {
    let mut plain = serde_json::Map::new();
    if let Some(fields) = body.as_object() {
        for (key, value) in fields {
            let openai_bias = key == "logit_bias" && value.is_object();
            if OPENAI_FIELDS.contains(&key.as_str()) || openai_bias {
                plain.insert(key.clone(), value.clone());
            }
        }
    }
    let mut lost = Vec::new();
    let mut lose = |on: bool, key: &str| {
        if on {
            lost.push(format!("sampling.{key}"));
        }
    };
    lose(s.top_k > 0, "top_k");
    lose(s.min_p > 0.0, "min_p");
    lose(s.repeat_penalty != 1.0, "repeat_penalty");
    lose(sampler::uses_dry(s), "dry_multiplier");
    lose(
        s.xtc_probability > 0.0 && s.xtc_threshold <= 0.5,
        "xtc_probability",
    );
    lose(s.top_n_sigma > 0.0, "top_n_sigma");
    lose(s.typical_p < 1.0, "typical_p");
    lose(
        s.order
            .iter()
            .map(String::as_str)
            .ne(SAMPLER_NAMES.iter().copied()),
        "order",
    );
    lose(
        !s.logit_bias.is_empty() && !plain.contains_key("logit_bias"),
        "logit_bias",
    );
    if body.get("grammar").is_some() {
        lost.push("the grammar".to_owned());
    }
    (Value::Object(plain), lost)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use her_core::generation::LogitBias;

    fn tuned() -> SamplingConfig {
        SamplingConfig {
            dry_multiplier: 0.8,
            xtc_probability: 0.5,
            top_n_sigma: 1.5,
            typical_p: 0.9,
            order: vec!["dry".into(), "typical_p".into(), "temperature".into()],
            logit_bias: vec![
                LogitBias {
                    token: Some(5),
                    text: None,
                    bias: f32::NEG_INFINITY,
                },
                LogitBias {
                    token: None,
                    text: Some(" sigh".into()),
                    bias: -3.0,
                },
            ],
            banned_phrases: vec!["shivers".into()],
            ..SamplingConfig::default()
        }
    }

    #[test]
    fn llama_server_gets_every_sampler_under_its_names() {
        let mut body = json!({});
        let dropped = add_fields(&mut body, Flavour::LlamaServer, &tuned());
        assert_eq!(dropped, vec!["sampling.banned_phrases"]);
        assert_eq!(body["dry_multiplier"], json!(0.8f32));
        assert_eq!(body["dry_sequence_breakers"], json!(["\n", ":", "\"", "*"]));
        assert_eq!(body["samplers"], json!(["dry", "typ_p", "temperature"]));
        assert_eq!(body["logit_bias"], json!([[5, false], [" sigh", -3.0]]));
        assert_eq!(body["top_n_sigma"], json!(1.5f32));
    }

    #[test]
    fn vllm_gets_id_biases_and_the_rest_is_reported_dropped() {
        let mut body = json!({});
        let dropped = add_fields(&mut body, Flavour::OpenAi, &tuned());
        assert_eq!(
            dropped,
            vec![
                "sampling.banned_phrases",
                "sampling.dry_multiplier",
                "sampling.xtc_probability",
                "sampling.top_n_sigma",
                "sampling.typical_p",
                "sampling.order",
                "sampling.logit_bias",
            ]
        );
        assert_eq!(body["logit_bias"], json!({"5": -100.0}));
        assert!(body.get("dry_multiplier").is_none());
    }

    #[test]
    fn a_refused_extension_is_sent_again_without_the_extensions() {
        let s = SamplingConfig {
            top_k: 40,
            min_p: 0.05,
            ..tuned()
        };
        let mut body =
            json!({"model": "m", "prompt": "p", "temperature": 0.7, "top_k": 40, "min_p": 0.05});
        add_fields(&mut body, Flavour::OpenAi, &s);
        assert!(refuses_an_extension(
            "Unrecognized request argument supplied: top_k",
            &body
        ));
        assert!(!refuses_an_extension("prompt is too long", &body));
        let (plain, lost) = openai_only(&body, &s);
        assert_eq!(
            plain,
            json!({"model": "m", "prompt": "p", "temperature": 0.7, "logit_bias": {"5": -100.0}})
        );
        assert_eq!(
            lost,
            vec![
                "sampling.top_k",
                "sampling.min_p",
                "sampling.dry_multiplier",
                "sampling.xtc_probability",
                "sampling.top_n_sigma",
                "sampling.typical_p",
                "sampling.order",
            ]
        );
        // The defaults' top-k of 40 is a setting too: a strict server drops it.
        let (_, lost) = openai_only(&json!({"top_k": 40}), &SamplingConfig::default());
        assert_eq!(lost, vec!["sampling.top_k"]);
    }

    #[test]
    fn defaults_drop_nothing() {
        for flavour in [Flavour::LlamaServer, Flavour::OpenAi] {
            let mut body = json!({});
            assert!(add_fields(&mut body, flavour, &SamplingConfig::default()).is_empty());
        }
    }
}
