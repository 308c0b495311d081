//! Local LoRA training in candle on the chat's own GGUF: tokenizer, data,
//! optimisation, checkpoints and adapter export.

pub mod checkpoint;
pub mod data;
pub mod optim;
pub mod peft;
pub mod run;
pub mod runs;
pub mod sft;
pub mod export;
pub mod tokenizer;
