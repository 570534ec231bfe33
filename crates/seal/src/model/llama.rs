//! Llama-family decoders (SmolLM2, Llama, Qwen2) from GGUF on candle, built for beam search.
