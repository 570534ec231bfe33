//! The key/value cache of one prompt and the beams grown from it, and the decoding API every
//! model family offers on top of it: prefill, continued prefill, batched steps over beams with
//! their own parents, the subset head, teacher-forced scoring.
//!
//! A family ([`super::llama`], [`super::gemma`]) implements [`Network`]: one forward pass over a
//! batch of rows that each attend to their own list of cache entries, and its output head. The
//! bookkeeping here (argument checks, beam paths, positions, which entries each row attends to,
//! normalizers) is the same for all of them, so it lives once; [`crate::LanguageModel`] calls it
//! with whichever family it loaded.
//!
//! **Architecture Invariant**: rows interact only through the cache entries they attend to, so a
//! beam's numbers do not depend on the batch it is in (with batch-invariant kernels: bit for bit).
//!
//! Not for: the arithmetic of a layer (the families), decoding policy (`seal::decode`).

use crate::layers::{log_softmax_in_place, logsumexp};
use crate::{Error, ErrorKind, Result};

/// The key/value cache of one prompt and every beam grown from it.
///
/// Entries `0..prompt_len` of each layer's pool are the prompt; every step appends one entry per
/// beam. A beam is the list of its own entries after the prompt (`paths[b]`). Cloning gives an
/// independent copy (e.g. to decode twice from one prefilled prompt).
#[derive(Clone)]
pub struct DecodeState {
    pub(super) prompt_len: usize,
    /// Per layer: keys and values, `[entry][head_count_kv * head_dim]`.
    pub(super) keys: Vec<Vec<f32>>,
    pub(super) values: Vec<Vec<f32>>,
    pub(super) entries: usize,
    pub(super) paths: Vec<Vec<u32>>,
}

impl DecodeState {
    /// Number of prompt tokens.
    pub fn prompt_len(&self) -> usize {
        self.prompt_len
    }
    /// Number of live beams (1 right after the prefill: the prompt itself).
    pub fn num_beams(&self) -> usize {
        self.paths.len()
    }
    /// Number of tokens after the prompt in beam `b`.
    pub fn beam_len(&self, b: usize) -> usize {
        self.paths[b].len()
    }
}

/// Log-softmax over the full vocabulary for each beam of a step, one row per beam.
pub struct StepOutput {
    pub(super) data: Vec<f32>,
    pub(super) vocab: usize,
}

impl StepOutput {
    /// The log-probabilities of beam `b` over the vocabulary.
    pub fn row(&self, b: usize) -> &[f32] {
        &self.data[b * self.vocab..(b + 1) * self.vocab]
    }
    /// Number of beams.
    pub fn num_rows(&self) -> usize {
        self.data.len().checked_div(self.vocab).unwrap_or(0)
    }
}

/// What a batch of rows attends to: row `r` sees the prompt entries `0..contiguous[r]` and then
/// the entries `extra[extra_start[r]..extra_start[r + 1]]` (which include its own new entry).
pub(super) struct Attend {
    pub(super) contiguous: Vec<usize>,
    pub(super) extra: Vec<u32>,
    pub(super) extra_start: Vec<usize>,
}

/// A model family's network, as the shared decoding code needs it.
pub(crate) trait Network: Send + Sync {
    /// Rows of the log-softmax.
    fn vocab_size(&self) -> usize;
    /// Width of a hidden row.
    fn embedding_length(&self) -> usize;
    /// Longest sequence (prompt + beam) the model accepts.
    fn context_length(&self) -> usize;
    /// Layers (one key pool and one value pool each).
    fn num_layers(&self) -> usize;
    /// Floats per cache entry of one layer (`head_count_kv * head_dim`).
    fn kv_dim(&self) -> usize;
    /// Runs `tokens` (one row each, at `positions`) through the layers, appending their cache
    /// entries to `state` (`state.entries` grows by `tokens.len()`); returns the final
    /// normalized hidden rows.
    fn forward(
        &self,
        state: &mut DecodeState,
        tokens: &[u32],
        positions: &[usize],
        attend: &Attend,
    ) -> Vec<f32>;
    /// Full-vocabulary logits of `n` hidden rows into `out` (`n × vocab`).
    fn head_full(&self, hidden: &[f32], n: usize, out: &mut [f32]);
    /// Logits of the given ids per row, with exactly [`Self::head_full`]'s values.
    fn head_ids(&self, hidden: &[f32], ids: &[&[u32]]) -> Vec<Vec<f32>>;
}

fn invalid(msg: impl Into<String>) -> Error {
    Error::new(ErrorKind::InvalidInput, msg)
}

fn check_tokens<N: Network + ?Sized>(net: &N, tokens: &[u32]) -> Result<()> {
    if let Some(&t) = tokens.iter().find(|&&t| t as usize >= net.vocab_size()) {
        return Err(invalid(format!(
            "token id {t} is outside the model's vocabulary of {}",
            net.vocab_size()
        )));
    }
    Ok(())
}

fn check_position<N: Network + ?Sized>(net: &N, position: usize) -> Result<()> {
    if position >= net.context_length() {
        return Err(invalid(format!(
            "sequence of {} tokens exceeds the model's context length of {}; shorten the prompt",
            position + 1,
            net.context_length()
        )));
    }
    Ok(())
}

fn check_state<N: Network + ?Sized>(net: &N, state: &DecodeState) -> Result<()> {
    let kv = net.kv_dim();
    if state.keys.len() != net.num_layers()
        || state.values.len() != net.num_layers()
        || state.keys.iter().chain(&state.values).any(|k| k.len() != state.entries * kv)
        || state.prompt_len > state.entries
    {
        return Err(invalid(
            "this decoding state was made by another model; prefill the prompt with this one",
        ));
    }
    Ok(())
}

/// The log-softmax after the last of `n` hidden rows.
fn last_log_probs<N: Network + ?Sized>(net: &N, hidden: &[f32], n: usize) -> Vec<f32> {
    let d = net.embedding_length();
    let mut logits = vec![0f32; net.vocab_size()];
    net.head_full(&hidden[(n - 1) * d..n * d], 1, &mut logits);
    log_softmax_in_place(&mut logits);
    logits
}

/// Appends `tokens` to the prompt of `state` (whose pools hold its prompt and possibly beams,
/// which are dropped) in one batch; returns the new state and the final hidden rows of `tokens`.
fn extend_prompt<N: Network + ?Sized>(
    net: &N,
    state: &DecodeState,
    tokens: &[u32],
) -> Result<(DecodeState, Vec<f32>)> {
    if tokens.is_empty() {
        return Err(invalid("no prompt tokens to run; give at least one token"));
    }
    check_tokens(net, tokens)?;
    let start = state.prompt_len;
    let total = start + tokens.len();
    check_position(net, total - 1)?;
    let kv = net.kv_dim();
    let grow = |pool: &Vec<Vec<f32>>| -> Vec<Vec<f32>> {
        pool.iter()
            .map(|layer| {
                let mut v = Vec::with_capacity((total + 256) * kv);
                v.extend_from_slice(&layer[..start * kv]);
                v
            })
            .collect()
    };
    let mut state = DecodeState {
        prompt_len: total,
        keys: grow(&state.keys),
        values: grow(&state.values),
        entries: start,
        paths: vec![Vec::new()],
    };
    let positions: Vec<usize> = (start..total).collect();
    let attend = Attend {
        contiguous: (start + 1..=total).collect(),
        extra: Vec::new(),
        extra_start: vec![0; tokens.len() + 1],
    };
    let hidden = net.forward(&mut state, tokens, &positions, &attend);
    Ok((state, hidden))
}

fn empty_state<N: Network + ?Sized>(net: &N) -> DecodeState {
    DecodeState {
        prompt_len: 0,
        keys: vec![Vec::new(); net.num_layers()],
        values: vec![Vec::new(); net.num_layers()],
        entries: 0,
        paths: vec![Vec::new()],
    }
}

/// Runs the prompt once: a state holding its cache and one beam (the prompt itself), and the
/// log-softmax after its last token.
pub(super) fn prefill<N: Network + ?Sized>(
    net: &N,
    prompt: &[u32],
) -> Result<(DecodeState, Vec<f32>)> {
    if prompt.is_empty() {
        return Err(invalid("the prompt is empty; give at least one token"));
    }
    let (state, hidden) = extend_prompt(net, &empty_state(net), prompt)?;
    Ok((state, last_log_probs(net, &hidden, prompt.len())))
}

/// The prompt of `prefix` (its beams, if any, are ignored) continued by `tokens`: equal to
/// [`prefill`] of the whole prompt, for the cost of `tokens` only. `prefix` is left untouched.
pub(super) fn prefill_continue<N: Network + ?Sized>(
    net: &N,
    prefix: &DecodeState,
    tokens: &[u32],
) -> Result<(DecodeState, Vec<f32>)> {
    check_state(net, prefix)?;
    if tokens.is_empty() {
        return Err(invalid("no tokens to continue the prompt with; give at least one token"));
    }
    let (state, hidden) = extend_prompt(net, prefix, tokens)?;
    Ok((state, last_log_probs(net, &hidden, tokens.len())))
}

/// The log-softmax after every prompt position (row `i` predicts token `i + 1`).
pub(super) fn prompt_log_probs<N: Network + ?Sized>(
    net: &N,
    prompt: &[u32],
) -> Result<Vec<Vec<f32>>> {
    if prompt.is_empty() {
        return Err(invalid("the prompt is empty; give at least one token"));
    }
    let (_, hidden) = extend_prompt(net, &empty_state(net), prompt)?;
    let d = net.embedding_length();
    Ok((1..=prompt.len()).map(|n| last_log_probs(net, &hidden[..n * d], n)).collect())
}

/// Validates a step's arguments and runs the forward pass; returns the final hidden rows, one
/// per beam, and updates `state` to the new beams.
fn step_hidden<N: Network + ?Sized>(
    net: &N,
    state: &mut DecodeState,
    parents: &[usize],
    tokens: &[u32],
) -> Result<Vec<f32>> {
    if parents.len() != tokens.len() {
        return Err(invalid(format!(
            "step got {} parents but {} tokens; give one of each per beam",
            parents.len(),
            tokens.len()
        )));
    }
    check_state(net, state)?;
    if let Some(&p) = parents.iter().find(|&&p| p >= state.paths.len()) {
        return Err(invalid(format!(
            "parent beam {p} does not exist (the previous step had {} beams)",
            state.paths.len()
        )));
    }
    check_tokens(net, tokens)?;
    let base = state.entries as u32;
    let mut new_paths = Vec::with_capacity(parents.len());
    let mut positions = Vec::with_capacity(parents.len());
    for (b, &p) in parents.iter().enumerate() {
        let mut path = Vec::with_capacity(state.paths[p].len() + 1);
        path.extend_from_slice(&state.paths[p]);
        path.push(base + b as u32);
        let position = state.prompt_len + path.len() - 1;
        check_position(net, position)?;
        positions.push(position);
        new_paths.push(path);
    }
    let mut attend = Attend {
        contiguous: vec![state.prompt_len; parents.len()],
        extra: Vec::new(),
        extra_start: vec![0],
    };
    for path in &new_paths {
        attend.extra.extend_from_slice(path);
        attend.extra_start.push(attend.extra.len());
    }
    let hidden = net.forward(state, tokens, &positions, &attend);
    state.paths = new_paths;
    Ok(hidden)
}

/// One batched decoding step: beam `b` continues parent `parents[b]` with `tokens[b]`; the
/// log-softmax of each new beam.
pub(super) fn step<N: Network + ?Sized>(
    net: &N,
    state: &mut DecodeState,
    parents: &[usize],
    tokens: &[u32],
) -> Result<StepOutput> {
    let hidden = step_hidden(net, state, parents, tokens)?;
    let vocab = net.vocab_size();
    let mut data = vec![0f32; tokens.len() * vocab];
    net.head_full(&hidden, tokens.len(), &mut data);
    for row in data.chunks_exact_mut(vocab) {
        log_softmax_in_place(row);
    }
    Ok(StepOutput { data, vocab })
}

/// [`step`], returning for beam `b` only the log-probabilities of `subset[b]`, with the full
/// path's values (same kernel; the normalizer is the exact log-sum-exp over the vocabulary).
pub(super) fn step_subset<N: Network + ?Sized>(
    net: &N,
    state: &mut DecodeState,
    parents: &[usize],
    tokens: &[u32],
    subset: &[&[u32]],
) -> Result<Vec<Vec<f32>>> {
    if subset.len() != tokens.len() {
        return Err(invalid(format!(
            "step_subset got {} subsets for {} beams",
            subset.len(),
            tokens.len()
        )));
    }
    for s in subset {
        check_tokens(net, s)?;
    }
    let hidden = step_hidden(net, state, parents, tokens)?;
    let normalizers = head_logsumexp(net, &hidden, tokens.len());
    let mut out = net.head_ids(&hidden, subset);
    for (row, z) in out.iter_mut().zip(normalizers) {
        for v in row.iter_mut() {
            *v -= z;
        }
    }
    Ok(out)
}

/// Teacher-forced scoring of many continuations of one prompt, in one batch: for each, the
/// log-probability of each of its tokens given the prompt and its earlier tokens.
pub(super) fn score_continuations<N: Network + ?Sized>(
    net: &N,
    prompt: &[u32],
    continuations: &[Vec<u32>],
) -> Result<Vec<Vec<f32>>> {
    let (mut state, first) = prefill(net, prompt)?;
    let mut tokens = Vec::new();
    let mut positions = Vec::new();
    let mut targets = Vec::new();
    let mut attend = Attend { contiguous: Vec::new(), extra: Vec::new(), extra_start: vec![0] };
    for c in continuations {
        check_tokens(net, c)?;
        if !c.is_empty() {
            check_position(net, prompt.len() + c.len() - 1)?;
        }
        // Rows are every token but the last: row j predicts token j + 1.
        let first_entry = state.entries + tokens.len();
        for j in 0..c.len().saturating_sub(1) {
            tokens.push(c[j]);
            positions.push(prompt.len() + j);
            targets.push(c[j + 1]);
            attend.contiguous.push(prompt.len());
            attend.extra.extend((0..=j).map(|i| (first_entry + i) as u32));
            attend.extra_start.push(attend.extra.len());
        }
    }
    let mut target_scores = Vec::new();
    if !tokens.is_empty() {
        let hidden = net.forward(&mut state, &tokens, &positions, &attend);
        let normalizers = head_logsumexp(net, &hidden, tokens.len());
        let ids: Vec<&[u32]> = targets.iter().map(std::slice::from_ref).collect();
        target_scores = net
            .head_ids(&hidden, &ids)
            .into_iter()
            .zip(normalizers)
            .map(|(v, z)| v[0] - z)
            .collect();
    }
    let mut row = 0;
    let mut out = Vec::with_capacity(continuations.len());
    for c in continuations {
        let mut scores = Vec::with_capacity(c.len());
        if let Some(&t0) = c.first() {
            scores.push(first[t0 as usize]);
        }
        for _ in 1..c.len() {
            scores.push(target_scores[row]);
            row += 1;
        }
        out.push(scores);
    }
    Ok(out)
}

/// The log-sum-exp of each row's logits over the whole vocabulary, computed in slices so that
/// many rows never hold `n × vocab` floats at once.
fn head_logsumexp<N: Network + ?Sized>(net: &N, hidden: &[f32], n: usize) -> Vec<f32> {
    let d = net.embedding_length();
    let vocab = net.vocab_size();
    let rows_per_chunk = 16;
    let mut logits = vec![0f32; rows_per_chunk.min(n) * vocab];
    let mut out = Vec::with_capacity(n);
    for start in (0..n).step_by(rows_per_chunk) {
        let m = rows_per_chunk.min(n - start);
        net.head_full(&hidden[start * d..(start + m) * d], m, &mut logits[..m * vocab]);
        for row in logits[..m * vocab].chunks_exact(vocab) {
            out.push(logsumexp(row));
        }
    }
    out
}
