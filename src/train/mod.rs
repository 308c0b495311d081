//! LoRA training in candle on the chat's own GGUF (QLoRA on a frozen base).

pub mod error;
pub mod lora;
pub mod model;
