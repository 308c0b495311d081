//! Whether llama.cpp contexts use flash attention (`model.flash_attention`).
//!
//! "auto" hands the choice to llama.cpp, which turns flash attention on
//! wherever the layer's device has the kernel (its CPU backend and CUDA both
//! do) and off where it has not. `her bench engine` measured both settings on
//! the 2-core CPU this project runs on (README, "Decode speed at depth"): on
//! was faster at depth 0 and no slower at depth 2,000, so there is no reason
//! to override llama.cpp on the CPU; on a GPU flash attention is the fast
//! path. "on" and "off" force it, for a machine where the bench says
//! otherwise.

use serde::{Deserialize, Serialize};

/// The `model.flash_attention` setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FlashAttention {
    /// llama.cpp decides per device (on wherever the kernel exists).
    #[default]
    Auto,
    On,
    Off,
}

/// llama.cpp's `llama_flash_attn_type` values (llama.h); llama-cpp-2 takes
/// the raw integer and does not re-export the sys crate's constants.
const LLAMA_FLASH_ATTN_TYPE_AUTO: i32 = -1;
const LLAMA_FLASH_ATTN_TYPE_DISABLED: i32 = 0;
const LLAMA_FLASH_ATTN_TYPE_ENABLED: i32 = 1;

impl FlashAttention {
    /// Whether contexts ask for flash attention (auto: yes, where the
    /// device has the kernel).
    pub fn enabled(self) -> bool {
        self != Self::Off
    }

    /// The value for `LlamaContextParams::with_flash_attention_policy`.
    pub(crate) fn policy(self) -> i32 {
        match self {
            Self::Auto => LLAMA_FLASH_ATTN_TYPE_AUTO,
            Self::On => LLAMA_FLASH_ATTN_TYPE_ENABLED,
            Self::Off => LLAMA_FLASH_ATTN_TYPE_DISABLED,
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
    fn each_setting_maps_to_llama_cpps_value() {
        assert_eq!(FlashAttention::Auto.policy(), LLAMA_FLASH_ATTN_TYPE_AUTO);
        assert_eq!(FlashAttention::On.policy(), LLAMA_FLASH_ATTN_TYPE_ENABLED);
        assert_eq!(FlashAttention::Off.policy(), LLAMA_FLASH_ATTN_TYPE_DISABLED);
        assert!(FlashAttention::Auto.enabled() && !FlashAttention::Off.enabled());
    }

    #[test]
    fn config_spelling_round_trips() -> serde_json::Result<()> {
        for fa in [
            FlashAttention::Auto,
            FlashAttention::On,
            FlashAttention::Off,
        ] {
            let json = serde_json::to_string(&fa)?;
            assert_eq!(json, format!("\"{}\"", fa.as_str()));
            let back: FlashAttention = serde_json::from_str(&json)?;
            assert_eq!(back, fa);
        }
        Ok(())
    }
}
