//! The engine's options from the `[model]` and `[backend]` sections: the
//! engine crate knows its options, never the config file.

use std::path::PathBuf;
use std::time::Duration;

use super::{BackendConfig, ModelConfig};
use her_engine::remote::key_from_env;
use her_engine::{LocalEngineOptions, RemoteOptions};

impl ModelConfig {
    /// The local engine's settings, with the model path already resolved.
    pub fn engine_options(&self, model_path: PathBuf) -> LocalEngineOptions {
        LocalEngineOptions {
            model_path,
            n_gpu_layers: self.n_gpu_layers,
            n_ctx: self.n_ctx,
            n_batch: self.n_batch,
            threads: self.threads,
            use_mmap: self.use_mmap,
            flash_attention: self.flash_attention,
            parallel_sequences: 1,
        }
    }
}

impl BackendConfig {
    /// The remote engine's settings, with the key read from the variable `api_key_env` names.
    pub fn remote_options(&self) -> RemoteOptions {
        RemoteOptions {
            base_url: self.base_url.clone(),
            model: self.model.clone(),
            api_key: key_from_env(&self.api_key_env),
            api_key_env: self.api_key_env.clone(),
            connect_timeout: Duration::from_secs(u64::from(self.connect_timeout_secs)),
            read_timeout: Duration::from_secs(u64::from(self.read_timeout_secs)),
            retries: self.retries,
        }
    }
}
