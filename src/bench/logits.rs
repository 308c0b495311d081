//! `her bench logits` (internal): the trainer's forward over samples, with
//! an adapter, written out whole so scripts/check-peft.sh can compare it
//! with transformers + PEFT on the same token ids.

use crate::app::AppContext;
use crate::cli::BenchLogitsArgs;

pub fn run(app: &AppContext, args: &BenchLogitsArgs) -> anyhow::Result<()> {
    let model_path = args.model.clone().unwrap_or_else(|| app.model_path());
    let samples =
        her_train::bench::dump_logits(&model_path, args.adapter.as_deref(), &args.data, &args.out)
            .map_err(|e| anyhow::anyhow!(e))?;
    println!("wrote {} ({samples} samples)", args.out.display());
    Ok(())
}
