//! Local LoRA training in candle on the chat's own GGUF (QLoRA on a frozen
//! base): the model, tokenizer, data, optimisation, the SFT loop,
//! checkpoints, run folders and adapter export (llama.cpp GGUF and PEFT).

pub mod bench;
pub mod bench_attention;
pub mod best;
pub mod checkpoint;
pub mod data;
pub mod dataset;
pub mod device;
pub mod dpo;
pub mod error;
pub mod export;
pub mod guard;
pub mod kto;
pub mod lora;
pub mod memory;
pub mod model;
pub mod optim;
pub mod parity;
pub mod peft;
pub mod plan;
pub mod rl;
pub mod run;
pub mod runs;
pub mod settings;
pub mod sft;
pub mod stable;
#[cfg(test)]
pub(crate) mod testing;
pub mod tokenizer;
pub mod train_loop;
