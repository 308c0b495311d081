//! Local LoRA training in candle on the chat's own GGUF: tokenizer, data,
//! optimisation, checkpoints and adapter export.

pub mod checkpoint;
pub mod data;
pub mod optim;
pub mod peft;
pub mod tokenizer;
