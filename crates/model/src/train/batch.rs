//! Training data without waste: pairs that share a prompt become one *tree* (the prompt once,
//! each distinct target a branch off it, repeated targets one branch with a larger loss
//! weight), and trees are packed end to end into one batch of rows with no padding.
//!
//! A row of a [`PackedBatch`] is one input token at its RoPE position. Row `i` attends to row
//! `j` when both are in the same sequence, `j ≤ i`, and `j` is in the shared prompt (branch 0)
//! or in `i`'s own branch: exactly the attention each pair would see alone, so the loss and
//! its gradients equal those of training the pairs one by one (the tests check it).

use std::collections::HashMap;
use std::ops::Range;

use crate::tokenizer::Tokenizer;
use crate::Result;

/// One tokenized training pair.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Example {
    /// Prompt tokens (BOS first where the model wants one).
    pub prompt: Vec<u32>,
    /// Target tokens, EOS last; never empty.
    pub target: Vec<u32>,
}

impl Example {
    /// Tokenizes a pair as the searcher tokenizes its prompts: BOS when the tokenizer adds one,
    /// the prompt; the target, then EOS.
    ///
    /// # Errors
    /// A tokenizer failure.
    pub fn tokenize(tokenizer: &Tokenizer, prompt: &str, target: &str) -> Result<Example> {
        let mut p: Vec<u32> =
            tokenizer.bos_id().filter(|_| tokenizer.add_bos()).into_iter().collect();
        p.extend(tokenizer.encode(prompt)?);
        let mut t = tokenizer.encode(target)?;
        t.push(tokenizer.eos_id());
        Ok(Example { prompt: p, target: t })
    }

    /// Tokens of the pair alone (prompt and target).
    pub fn len(&self) -> usize {
        self.prompt.len() + self.target.len()
    }

    /// Whether it has no token at all.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The pairs of one prompt: each distinct target once, with how many pairs had it.
#[derive(Debug, Clone, PartialEq)]
pub struct Tree {
    /// The shared prompt.
    pub prompt: Vec<u32>,
    /// `(target, weight)`: the weight is the number of pairs with this target.
    pub branches: Vec<(Vec<u32>, f64)>,
}

impl Tree {
    /// Rows this tree takes in a batch: the prompt, then each target but its last token.
    pub fn rows(&self) -> usize {
        self.prompt.len() + self.branches.iter().map(|(t, _)| t.len() - 1).sum::<usize>()
    }

    /// The pairs it stands for (weights summed).
    pub fn pairs(&self) -> f64 {
        self.branches.iter().map(|(_, w)| w).sum()
    }

    /// Target tokens whose loss it computes, counted once per branch.
    pub fn target_tokens(&self) -> usize {
        self.branches.iter().map(|(t, _)| t.len()).sum()
    }
}

/// Groups examples by prompt, in order of first appearance; identical targets of a prompt
/// merge into one branch. Examples with an empty prompt or target are skipped.
pub fn trees(examples: &[Example]) -> Vec<Tree> {
    let mut index: HashMap<&[u32], usize> = HashMap::new();
    let mut out: Vec<Tree> = Vec::new();
    for e in examples {
        if e.prompt.is_empty() || e.target.is_empty() {
            continue;
        }
        let t = *index.entry(&e.prompt).or_insert_with(|| {
            out.push(Tree { prompt: e.prompt.clone(), branches: Vec::new() });
            out.len() - 1
        });
        let tree = &mut out[t];
        match tree.branches.iter_mut().find(|(target, _)| *target == e.target) {
            Some((_, w)) => *w += 1.0,
            None => tree.branches.push((e.target.clone(), 1.0)),
        }
    }
    out
}

/// Trees packed into rows, with their attention structure and loss positions.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PackedBatch {
    /// Input token of each row.
    pub tokens: Vec<u32>,
    /// RoPE position of each row.
    pub pos: Vec<u32>,
    /// Branch of each row within its sequence: 0 for the shared prompt, 1.. for targets.
    pub branch: Vec<u32>,
    /// Each sequence's rows (contiguous, in order).
    pub seqs: Vec<Range<usize>>,
    /// Row whose output predicts each loss target.
    pub loss_rows: Vec<usize>,
    /// Token each loss row must predict.
    pub loss_targets: Vec<u32>,
    /// Weight of each loss entry.
    pub loss_weights: Vec<f64>,
}

impl PackedBatch {
    /// Packs trees one after another.
    pub fn pack<'a>(trees: impl IntoIterator<Item = &'a Tree>) -> PackedBatch {
        let mut b = PackedBatch::default();
        for tree in trees {
            let start = b.tokens.len();
            for (p, &t) in tree.prompt.iter().enumerate() {
                b.tokens.push(t);
                b.pos.push(p as u32);
                b.branch.push(0);
            }
            let last_prompt_row = b.tokens.len() - 1;
            let plen = tree.prompt.len();
            for (k, (target, w)) in tree.branches.iter().enumerate() {
                let first = b.tokens.len();
                for (j, &t) in target[..target.len() - 1].iter().enumerate() {
                    b.tokens.push(t);
                    b.pos.push((plen + j) as u32);
                    b.branch.push(k as u32 + 1);
                }
                for (j, &t) in target.iter().enumerate() {
                    b.loss_rows.push(if j == 0 { last_prompt_row } else { first + j - 1 });
                    b.loss_targets.push(t);
                    b.loss_weights.push(*w);
                }
            }
            b.seqs.push(start..b.tokens.len());
        }
        b
    }

    /// Rows in the batch.
    pub fn rows(&self) -> usize {
        self.tokens.len()
    }

    /// The sum of loss weights: the number of target tokens of the pairs it stands for.
    pub fn loss_weight(&self) -> f64 {
        self.loss_weights.iter().sum()
    }

    /// Whether row `i` attends to row `j` (both in the same sequence, given by its first row).
    #[inline]
    pub fn attends(&self, i: usize, j: usize) -> bool {
        j <= i && (self.branch[j] == 0 || self.branch[j] == self.branch[i])
    }

    /// The largest position plus one.
    pub fn max_len(&self) -> usize {
        self.pos.iter().map(|&p| p as usize + 1).max().unwrap_or(0)
    }
}

/// Splits trees, in the given order, into consecutive batches of about `pairs_per_batch`
/// pairs each (a tree is never split; a batch closes once it holds that many pairs).
pub fn plan_batches(trees: &[Tree], order: &[usize], pairs_per_batch: f64) -> Vec<Vec<usize>> {
    let mut out = Vec::new();
    let mut current = Vec::new();
    let mut pairs = 0.0;
    for &t in order {
        current.push(t);
        pairs += trees[t].pairs();
        if pairs >= pairs_per_batch {
            out.push(std::mem::take(&mut current));
            pairs = 0.0;
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tree_shares_its_prompt_and_merges_repeated_targets() {
        let ex = |p: &[u32], t: &[u32]| Example { prompt: p.to_vec(), target: t.to_vec() };
        let examples = [
            ex(&[1, 2, 3], &[7, 8, 0]),
            ex(&[1, 2, 3], &[9, 0]),
            ex(&[1, 2, 3], &[7, 8, 0]),
            ex(&[4], &[5, 0]),
        ];
        let trees = trees(&examples);
        assert_eq!(trees.len(), 2);
        assert_eq!(trees[0].branches, vec![(vec![7, 8, 0], 2.0), (vec![9, 0], 1.0)]);
        let b = PackedBatch::pack(&trees);
        assert_eq!(b.tokens, vec![1, 2, 3, 7, 8, 9, 4, 5]);
        assert_eq!(b.pos, vec![0, 1, 2, 3, 4, 3, 0, 1]);
        assert_eq!(b.branch, vec![0, 0, 0, 1, 1, 2, 0, 1]);
        assert_eq!(b.seqs, vec![0..6, 6..8]);
        assert_eq!(b.loss_rows, vec![2, 3, 4, 2, 5, 6, 7]);
        assert_eq!(b.loss_targets, vec![7, 8, 0, 9, 0, 5, 0]);
        assert_eq!(b.loss_weights, vec![2.0, 2.0, 2.0, 1.0, 1.0, 1.0, 1.0]);
        assert_eq!(b.loss_weight(), 3.0 * 2.0 + 2.0 + 2.0);
        // Branch 2 sees the prompt and itself, not branch 1.
        assert!(b.attends(5, 2) && b.attends(5, 5) && !b.attends(5, 3) && !b.attends(5, 4));
        assert!(b.attends(4, 3) && !b.attends(3, 4));
    }
}
