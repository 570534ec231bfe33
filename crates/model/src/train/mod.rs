//! The CPU trainer: fine-tuning the top layers of a llama-family model on SEAL's training
//! pairs, with hand-written forward and backward passes.
//!
//! Useful for: computing the loss and exact gradients of a packed batch ([`Network`]),
//! updating the trained layers ([`AdamW`]), and running a whole training plan with
//! checkpoints that resume bit for bit ([`run`]). Not for: producing pairs or writing adapters
//! (that is `seal train`), inference (the model's own kernels are faster per token).
//!
//! Layers, bottom up: [`real`] (the scalar, `f32` or `f64`), [`mat`] (products on `gemm`),
//! [`pointwise`] (RMSNorm, RoPE, SwiGLU), [`attention`] (tree-masked grouped-query attention),
//! [`layer`] (one decoder layer), [`head`] (final norm, head at target rows, cross-entropy),
//! [`network`] (frozen bottom + trained top), [`batch`] (shared-prefix trees packed without
//! padding), [`adamw`], [`run`] (the loop).
//!
//! What makes it fast on a CPU: gradients only for what is trained; the frozen bottom layers
//! run once per distinct sequence (their output is cached); the vocabulary head runs only at
//! rows that predict a target; pairs with the same prompt share one forward pass of it; no
//! padding; the products are large GEMMs on every core.

pub mod adamw;
pub mod attention;
pub mod batch;
pub mod head;
pub mod layer;
pub mod mat;
pub mod network;
pub mod pointwise;
pub mod real;
pub mod run;

pub use adamw::{AdamW, AdamWSettings};
pub use batch::{Example, PackedBatch, Tree};
pub use network::Network;
pub use real::Real;

#[cfg(test)]
mod tests;
