//! The [`Packed16`] layout: `Q4_1`/`Q8_0` weights regrouped 16 rows per register for the VNNI
//! tiles (`x86/vnni.rs`), with the block constants those tiles start from.

use super::quantize::group_start;
use super::{Matrix, Weights, BLOCK};

/// Weight rows per group of the int16 kernel: one 16-lane register holds one value per row.
pub(crate) const LANES: usize = 16;

/// 64 bytes, aligned: one AVX-512 register's worth of packed weights or scales.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
pub(crate) struct Line([u8; 64]);

/// `Q4_1`/`Q8_0` weights regrouped for the int16 kernel. Rows go in groups of [`LANES`] (the last
/// one padded with zero rows); for each group and block, one record of 64-byte lines:
/// - the weights, lane `r` = row `r` of the group, 4 bytes per lane per line: `Q4_1` in 4 lines of
///   its own nibble bytes (line `k` holds bytes `4k..4k+4`: low nibbles are group `2k`, high
///   nibbles group `2k + 1` of [`group_start`]), `Q8_0` in 8 lines (line `g` = group `g`);
/// - the scales `d` (f32 per lane), `Q4_1`'s offsets `m`, and the correction `−128 · Σ q`
///   (i32 per lane) that starts each block's integer sum (see [`Act16Block`]).
///
/// With one row per lane, a block's integer sum stays in its lane for all 32 elements (8 groups ×
/// 2 planes of `vpdpbusd`), is converted and scaled once, and no horizontal sum is ever needed;
/// a row's arithmetic is the same whatever group, tile or batch it is computed in.
pub(crate) struct Packed16 {
    /// `Q4_1` records (7 lines) rather than `Q8_0` (10 lines).
    pub(crate) q4: bool,
    /// Blocks per row.
    pub(crate) kb: usize,
    /// The records, group by group, block by block.
    pub(crate) lines: Vec<Line>,
}

impl Packed16 {
    /// Lines per (group, block) record.
    pub(crate) fn record_lines(&self) -> usize {
        if self.q4 {
            7
        } else {
            10
        }
    }

    /// Row `r` of the weights in f32, read back from the packed records: the same values (and
    /// the same arithmetic) as [`Matrix::dequantize_row`] of the original blocks.
    pub fn dequantize_row(&self, r: usize, out: &mut [f32]) {
        let (g, l, per) = (r / LANES, r % LANES, self.record_lines());
        let lane = |line: &Line| -> [u8; 4] { std::array::from_fn(|t| line.0[l * 4 + t]) };
        for b in 0..self.kb {
            let rec = &self.lines[(g * self.kb + b) * per..(g * self.kb + b + 1) * per];
            let o = &mut out[b * BLOCK..(b + 1) * BLOCK];
            let tail = per - if self.q4 { 3 } else { 2 };
            let d = f32::from_le_bytes(lane(&rec[tail]));
            if self.q4 {
                let m = f32::from_le_bytes(lane(&rec[tail + 1]));
                for k in 0..4 {
                    for (t, byte) in lane(&rec[k]).into_iter().enumerate() {
                        o[4 * k + t] = d * (byte & 0x0f) as f32 + m;
                        o[4 * k + t + 16] = d * (byte >> 4) as f32 + m;
                    }
                }
            } else {
                for (gi, line) in rec[..8].iter().enumerate() {
                    for (t, byte) in lane(line).into_iter().enumerate() {
                        o[group_start(gi) + t] = d * (byte as i8) as f32;
                    }
                }
            }
        }
    }

    /// The packed copy of `m`'s weights, or `None` for f32 weights.
    pub fn new(m: &Matrix) -> Option<Packed16> {
        let kb = m.cols / BLOCK;
        let groups = m.rows.div_ceil(LANES);
        let (q4, per) = match &m.weights {
            Weights::Q4_1 { .. } => (true, 7),
            Weights::Q8_0 { .. } => (false, 10),
            Weights::F32(_) | Weights::Packed(_) => return None,
        };
        let mut lines = vec![Line([0; 64]); groups * kb * per];
        for g in 0..groups {
            for b in 0..kb {
                let rec = &mut lines[(g * kb + b) * per..(g * kb + b + 1) * per];
                for r in 0..LANES.min(m.rows - g * LANES) {
                    let i = (g * LANES + r) * kb + b;
                    let lane = |line: &mut Line, bytes: [u8; 4]| {
                        line.0[r * 4..r * 4 + 4].copy_from_slice(&bytes);
                    };
                    let (d, off, qsum) = match &m.weights {
                        Weights::Q4_1 { scales, qs } => {
                            let q = &qs[i];
                            for k in 0..4 {
                                lane(
                                    &mut rec[k],
                                    [q[4 * k], q[4 * k + 1], q[4 * k + 2], q[4 * k + 3]],
                                );
                            }
                            let qsum: i32 =
                                q.iter().map(|&v| (v & 0x0f) as i32 + (v >> 4) as i32).sum();
                            (scales[i][0], scales[i][1], qsum)
                        }
                        Weights::Q8_0 { d, qs } => {
                            let q = &qs[i];
                            for (gi, line) in rec[..8].iter_mut().enumerate() {
                                let s = group_start(gi);
                                lane(line, std::array::from_fn(|t| q[s + t] as u8));
                            }
                            (d[i], 0.0, q.iter().map(|&v| v as i32).sum())
                        }
                        Weights::F32(_) | Weights::Packed(_) => unreachable!("returned above"),
                    };
                    let tail = per - if q4 { 3 } else { 2 };
                    lane(&mut rec[tail], d.to_le_bytes());
                    if q4 {
                        lane(&mut rec[tail + 1], off.to_le_bytes());
                    }
                    lane(&mut rec[per - 1], (-128 * qsum).to_le_bytes());
                }
            }
        }
        Some(Packed16 { q4, kb, lines })
    }
}
