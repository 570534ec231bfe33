//! Training: adapt the language model to a corpus (and its queries, where judged ones exist) in
//! SEAL's recipe (SEAL.md §4), so that it writes n-grams of relevant passages.
//!
//! Layers: [`data`] makes the training pairs (JSONL-serializable), [`net`] is the differentiable
//! network (full fine-tuning or LoRA), [`optim`] is AdamW with its schedule, [`trainer`] is the
//! loop (batching, held-out loss, checkpoints), [`cpu`] the CPU trainer's run. Trained weights
//! are written, merged into the inference model or into a GGUF file by
//! [`crate::model::adapter`], beside the model they change.
//!
//! Not for: search (a trained model is used through [`crate::model::adapter`] after merging);
//! command-line concerns (`src/cli/train.rs`).

pub mod cpu;
pub mod data;
pub mod dataset_pairs;
pub mod dev;
pub mod net;
pub mod optim;
pub mod trainer;

#[cfg(test)]
mod tests;
