//! Whether llama.cpp contexts use flash attention (`model.flash_attention`).
//!
//! llama.cpp's own default ("auto") turns it on whenever the backend has a
//! flash-attention kernel, which its CPU backend has. On the CPU that is the
//! slow choice once a chat has some depth: `her bench engine` measured decode
//! at depth 2,000 with it off and on (README, "Decode speed at depth"), and an
//! independent llama-bench of SmolLM2 Q4_1 at depth 2,470 gave 51.6 tok/s off
//! against 18.3 on. On a GPU it is the fast path, so our "auto" decides by
//! whether layers are offloaded.

use serde::{Deserialize, Serialize};

/// The `model.flash_attention` setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FlashAttention {
    /// On when any layer runs on a GPU, off on a CPU-only run.
    #[default]
    Auto,
    On,
    Off,
}

/// llama.cpp's `llama_flash_attn_type` values (llama.h); llama-cpp-2 takes
/// the raw integer and does not re-export the sys crate's constants.
const LLAMA_FLASH_ATTN_TYPE_DISABLED: i32 = 0;
const LLAMA_FLASH_ATTN_TYPE_ENABLED: i32 = 1;

impl FlashAttention {
    /// The choice for a model with `offloaded_layers` layers on a GPU.
    pub fn enabled(self, offloaded_layers: u32) -> bool {
        match self {
            Self::On => true,
            Self::Off => false,
            Self::Auto => offloaded_layers > 0,
        }
    }

    /// The value for `LlamaContextParams::with_flash_attention_policy`.
    pub(crate) fn policy(self, offloaded_layers: u32) -> i32 {
        if self.enabled(offloaded_layers) {
            LLAMA_FLASH_ATTN_TYPE_ENABLED
        } else {
            LLAMA_FLASH_ATTN_TYPE_DISABLED
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::On => "on",
            Self::Off => "off",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_follows_gpu_offload_and_explicit_values_win() {
        assert!(!FlashAttention::Auto.enabled(0));
        assert!(FlashAttention::Auto.enabled(31));
        assert!(FlashAttention::On.enabled(0));
        assert!(!FlashAttention::Off.enabled(31));
        assert_eq!(
            FlashAttention::Auto.policy(0),
            LLAMA_FLASH_ATTN_TYPE_DISABLED
        );
        assert_eq!(
            FlashAttention::Auto.policy(5),
            LLAMA_FLASH_ATTN_TYPE_ENABLED
        );
    }

    #[test]
    fn config_spelling_round_trips() {
        for fa in [
            FlashAttention::Auto,
            FlashAttention::On,
            FlashAttention::Off,
        ] {
            let json = serde_json::to_string(&fa).expect("serialise");
            assert_eq!(json, format!("\"{}\"", fa.as_str()));
            let back: FlashAttention = serde_json::from_str(&json).expect("parse");
            assert_eq!(back, fa);
        }
    }
}
