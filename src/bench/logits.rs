//! `her bench logits` (internal): the trainer's forward over samples, with
//! an adapter, written out whole so scripts/check-peft.sh can compare it
//! with transformers + PEFT on the same token ids.

use std::collections::HashMap;

use anyhow::Context;
use candle_core::{Device, Tensor};

use crate::app::AppContext;
use crate::cli::BenchLogitsArgs;
use crate::train::data::{read_jsonl, tokenize};
use crate::train::model::{BaseMode, TrainModel};
use crate::train::tokenizer;

pub fn run(app: &AppContext, args: &BenchLogitsArgs) -> anyhow::Result<()> {
    let model_path = args.model.clone().unwrap_or_else(|| app.model_path());
    let device = Device::Cpu;
    let mut model = TrainModel::load(&model_path, BaseMode::Quantized, &device)?;
    if let Some(adapter) = &args.adapter {
        model.load_lora_gguf(adapter)?;
    }
    let tokenizer = tokenizer::from_gguf(&model_path)?;
    let samples = read_jsonl(&args.data)?;
    let mut out: HashMap<String, Tensor> = HashMap::new();
    for (i, sample) in samples.iter().enumerate() {
        let tokens = tokenize(&tokenizer, sample)?;
        let n = tokens.ids.len();
        let ids = Tensor::from_vec(tokens.ids.clone(), (1, n), &device)?;
        let logits = model.logits(&ids)?.squeeze(0)?;
        out.insert(format!("ids.{i}"), ids.squeeze(0)?);
        out.insert(
            format!("completion_start.{i}"),
            Tensor::from_vec(vec![u32::try_from(tokens.completion_start)?], 1, &device)?,
        );
        out.insert(format!("logits.{i}"), logits);
    }
    candle_core::safetensors::save(&out, &args.out)
        .with_context(|| format!("writing {}", args.out.display()))?;
    println!("wrote {} ({} samples)", args.out.display(), samples.len());
    Ok(())
}
