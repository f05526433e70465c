//! One bzip2 block after the block sort: move-to-front with RUNA/RUNB zero runs, the Huffman
//! tables and selectors (libbz2's procedure), and the block's bits.

use crate::bits::BitWriter;
use crate::huffman::{MAX_CODE_LEN, assign_codes, code_lengths};

const RUNA: u16 = 0;
const RUNB: u16 = 1;
const GROUP_SIZE: usize = 50;
const MAX_GROUPS: usize = 6;
const MAX_ALPHA: usize = 258;
/// libbz2's `BZ_N_ITERS`: refinement passes over the table assignment.
const ITERATIONS: usize = 4;
const BLOCK_MAGIC: u64 = 0x3141_5926_5359;

/// Reusable buffers for [`BlockCoder::write`].
pub(crate) struct BlockCoder {
    mtfv: Vec<u16>,
    selectors: Vec<u8>,
}

impl BlockCoder {
    pub(crate) fn new() -> Self {
        BlockCoder {
            mtfv: Vec::new(),
            selectors: Vec::new(),
        }
    }

    /// Writes one block: header (magic, `crc`, not randomised, `orig_ptr`), symbol map,
    /// tables, selectors and the coded MTF values of `bwt` (the sorted rotations' last bytes).
    pub(crate) fn write(&mut self, w: &mut BitWriter<'_>, bwt: &[u8], orig_ptr: u32, crc: u32) {
        // Symbols in use, and their ranks.
        let mut in_use = [false; 256];
        for &b in bwt {
            in_use[usize::from(b)] = true;
        }
        let mut unseq_to_seq = [0u8; 256];
        let mut n_in_use = 0usize;
        for (c, _) in in_use.iter().enumerate().filter(|(_, u)| **u) {
            unseq_to_seq[c] = n_in_use as u8;
            n_in_use += 1;
        }
        let alpha = n_in_use + 2;
        let eob = (n_in_use + 1) as u16;

        let mut freq = [0u32; MAX_ALPHA];
        self.mtf(bwt, &unseq_to_seq, eob, &mut freq);
        let n_mtf = self.mtfv.len();

        let n_groups = match n_mtf {
            0..200 => 2,
            200..600 => 3,
            600..1200 => 4,
            1200..2400 => 5,
            _ => 6,
        };
        let mut len = [[0u8; MAX_ALPHA]; MAX_GROUPS];
        initial_tables(&freq[..alpha], n_groups, &mut len);
        self.refine(&mut len, n_groups, alpha);

        // Header.
        w.put48(BLOCK_MAGIC);
        w.put(32, crc);
        w.put(1, 0);
        w.put(24, orig_ptr);

        // Symbol map: which 16-byte ranges are used, then the used bytes in each.
        let mut used16 = 0u32;
        for i in 0..16 {
            if in_use[i * 16..i * 16 + 16].iter().any(|&u| u) {
                used16 |= 1 << (15 - i);
            }
        }
        w.put(16, used16);
        for i in 0..16 {
            if used16 & (1 << (15 - i)) != 0 {
                let mut bits = 0u32;
                for j in 0..16 {
                    if in_use[i * 16 + j] {
                        bits |= 1 << (15 - j);
                    }
                }
                w.put(16, bits);
            }
        }

        // Tables and selectors.
        w.put(3, n_groups as u32);
        w.put(15, self.selectors.len() as u32);
        let mut order: [u8; MAX_GROUPS] = [0, 1, 2, 3, 4, 5];
        for &sel in &self.selectors {
            let pos = order
                .iter()
                .position(|&t| t == sel)
                .expect("selector < nGroups");
            order.copy_within(0..pos, 1);
            order[0] = sel;
            // `pos` ones then a zero.
            w.put(pos as u32 + 1, ((1u32 << pos) - 1) << 1);
        }
        for table in len.iter().take(n_groups) {
            let mut curr = table[0];
            w.put(5, u32::from(curr));
            for &l in &table[..alpha] {
                while curr < l {
                    w.put(2, 2);
                    curr += 1;
                }
                while curr > l {
                    w.put(2, 3);
                    curr -= 1;
                }
                w.put(1, 0);
            }
        }

        // Data: each 50-symbol group with its selected table, codes as (length << 24 | code).
        let mut coded = [[0u32; MAX_ALPHA]; MAX_GROUPS];
        for t in 0..n_groups {
            let mut codes = [0u32; MAX_ALPHA];
            assign_codes(&len[t][..alpha], &mut codes[..alpha]);
            for s in 0..alpha {
                coded[t][s] = (u32::from(len[t][s]) << 24) | codes[s];
            }
        }
        for (group, &sel) in self.mtfv.chunks(GROUP_SIZE).zip(&self.selectors) {
            let table = &coded[usize::from(sel)];
            for &v in group {
                let c = table[usize::from(v)];
                w.put(c >> 24, c & 0xff_ffff);
            }
        }
    }

    /// Move-to-front over the symbol ranks, zero runs as RUNA/RUNB digits, then EOB.
    #[inline(never)]
    fn mtf(&mut self, bwt: &[u8], unseq_to_seq: &[u8; 256], eob: u16, freq: &mut [u32; MAX_ALPHA]) {
        let mtfv = &mut self.mtfv;
        mtfv.clear();
        mtfv.reserve(bwt.len() + 1);
        let mut list = MtfList::new();
        let mut z_pend = 0u32;
        for &b in bwt {
            let ll = unseq_to_seq[usize::from(b)];
            if list.front() == ll {
                z_pend += 1;
                continue;
            }
            if z_pend > 0 {
                push_run(mtfv, freq, z_pend);
                z_pend = 0;
            }
            let sym = list.move_to_front(ll) as u16 + 1;
            mtfv.push(sym);
            freq[usize::from(sym)] += 1;
        }
        if z_pend > 0 {
            push_run(mtfv, freq, z_pend);
        }
        mtfv.push(eob);
        freq[usize::from(eob)] += 1;
    }

    /// libbz2's refinement: assign each 50-symbol group to its cheapest table, rebuild the
    /// tables from what they were assigned, [`ITERATIONS`] times.
    #[inline(never)]
    fn refine(&mut self, len: &mut [[u8; MAX_ALPHA]; MAX_GROUPS], n_groups: usize, alpha: usize) {
        let n_sel = self.mtfv.len().div_ceil(GROUP_SIZE);
        self.selectors.clear();
        self.selectors.resize(n_sel, 0);
        for _ in 0..ITERATIONS {
            let mut rfreq = [[0u32; MAX_ALPHA]; MAX_GROUPS];
            // Symbol-major lengths: the costs of all tables for one symbol, packed as four
            // 16-bit lanes per u64 (a group costs at most 50 × 17 < 2^16).
            let mut packed = [[0u64; 2]; MAX_ALPHA];
            for (s, p) in packed.iter_mut().enumerate().take(alpha) {
                for t in 0..n_groups {
                    p[t / 4] |= u64::from(len[t][s]) << (16 * (t % 4));
                }
            }
            for (group, sel) in self.mtfv.chunks(GROUP_SIZE).zip(self.selectors.iter_mut()) {
                let (mut c0, mut c1) = (0u64, 0u64);
                for &v in group {
                    let p = &packed[usize::from(v)];
                    c0 += p[0];
                    c1 += p[1];
                }
                let mut best = u64::MAX;
                let mut bt = 0usize;
                for t in 0..n_groups {
                    let lane = if t < 4 { c0 } else { c1 };
                    let cost = (lane >> (16 * (t % 4))) & 0xffff;
                    if cost < best {
                        best = cost;
                        bt = t;
                    }
                }
                *sel = bt as u8;
                let rf = &mut rfreq[bt];
                for &v in group {
                    rf[usize::from(v)] += 1;
                }
            }
            for t in 0..n_groups {
                code_lengths(&rfreq[t][..alpha], MAX_CODE_LEN, &mut len[t][..alpha]);
            }
        }
    }
}

/// The move-to-front list of 256 ranks, eight to a word (position `p` is byte `p % 8`, least
/// significant first, of word `p / 8`): finding a rank and shifting the ranks before it
/// both go a word at a time.
struct MtfList {
    words: [u64; 32],
}

const LOW_BYTES: u64 = 0x0101_0101_0101_0101;
const HIGH_BITS: u64 = 0x8080_8080_8080_8080;

impl MtfList {
    fn new() -> Self {
        let mut words = [0u64; 32];
        for (w, word) in words.iter_mut().enumerate() {
            let base = (w * 8) as u64;
            for b in 0..8 {
                *word |= ((base + b) & 0xff) << (8 * b);
            }
        }
        MtfList { words }
    }

    #[inline(always)]
    fn front(&self) -> u8 {
        self.words[0] as u8
    }

    /// Moves `rank` (which is in the list and not in front) to the front; returns its old
    /// position.
    #[inline(always)]
    fn move_to_front(&mut self, rank: u8) -> usize {
        let pattern = u64::from(rank) * LOW_BYTES;
        let mut carry = u64::from(rank);
        for (w, word) in self.words.iter_mut().enumerate() {
            let x = *word ^ pattern;
            // The lowest flagged byte is the first zero byte of `x` (higher flags may be
            // false positives from borrows, never lower ones).
            let found = x.wrapping_sub(LOW_BYTES) & !x & HIGH_BITS;
            let shifted = (*word << 8) | carry;
            if found != 0 {
                let b = found.trailing_zeros() / 8;
                // Bytes 0..=b take the shifted values, the rest stay.
                let keep = if b == 7 { 0 } else { !0u64 << (8 * (b + 1)) };
                *word = (shifted & !keep) | (*word & keep);
                return w * 8 + b as usize;
            }
            carry = *word >> 56;
            *word = shifted;
        }
        unreachable!("every rank is in the move-to-front list")
    }
}

/// A run of `z` zeros (z ≥ 1) as bijective base-2 digits, least significant first:
/// RUNA = 1, RUNB = 2.
#[inline]
fn push_run(mtfv: &mut Vec<u16>, freq: &mut [u32; MAX_ALPHA], z: u32) {
    let mut z = z - 1;
    loop {
        let sym = if z & 1 != 0 { RUNB } else { RUNA };
        mtfv.push(sym);
        freq[usize::from(sym)] += 1;
        if z < 2 {
            break;
        }
        z = (z - 2) / 2;
    }
}

/// libbz2's starting tables: the symbols split into `n_groups` ranges of about equal total
/// frequency, each table cheap (0) inside its range and expensive (15) outside.
fn initial_tables(freq: &[u32], n_groups: usize, len: &mut [[u8; MAX_ALPHA]; MAX_GROUPS]) {
    let alpha = freq.len();
    let mut rem: u32 = freq.iter().sum();
    let mut n_part = n_groups;
    let mut gs = 0usize;
    while n_part > 0 {
        let target = rem / n_part as u32;
        let mut ge = gs as isize - 1;
        let mut acc = 0u32;
        while acc < target && ge < alpha as isize - 1 {
            ge += 1;
            acc += freq[ge as usize];
        }
        if ge > gs as isize && n_part != n_groups && n_part != 1 && (n_groups - n_part) % 2 == 1 {
            acc -= freq[ge as usize];
            ge -= 1;
        }
        for (v, l) in len[n_part - 1][..alpha].iter_mut().enumerate() {
            *l = if v as isize >= gs as isize && v as isize <= ge {
                0
            } else {
                15
            };
        }
        n_part -= 1;
        gs = (ge + 1) as usize;
        rem -= acc;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_runs_are_bijective_base_two() {
        let digits = |z| {
            let mut v = Vec::new();
            let mut f = [0u32; MAX_ALPHA];
            push_run(&mut v, &mut f, z);
            v
        };
        assert_eq!(digits(1), [RUNA]);
        assert_eq!(digits(2), [RUNB]);
        assert_eq!(digits(3), [RUNA, RUNA]);
        assert_eq!(digits(4), [RUNB, RUNA]);
        assert_eq!(digits(5), [RUNA, RUNB]);
        assert_eq!(digits(6), [RUNB, RUNB]);
        assert_eq!(digits(7), [RUNA, RUNA, RUNA]);
    }

    #[test]
    fn mtf_codes_ranks_and_runs() {
        let mut coder = BlockCoder::new();
        let mut map = [0u8; 256];
        map[usize::from(b'a')] = 0;
        map[usize::from(b'b')] = 1;
        let mut freq = [0u32; MAX_ALPHA];
        // a a b b b a -> run(2) [a], b: pos 1 -> sym 2, run(2), a: pos 1 -> 2, EOB
        coder.mtf(b"aabbba", &map, 3, &mut freq);
        assert_eq!(coder.mtfv, [RUNB, 2, RUNB, 2, 3]);
    }

    #[test]
    fn word_wise_list_matches_a_plain_list() {
        let mut list = MtfList::new();
        let mut plain: Vec<u8> = (0..=255).collect();
        let mut x = 12345u32;
        for _ in 0..20_000 {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            let r = (x >> 16) as u8 & if x & 1 == 0 { 0xff } else { 0x0f };
            let pos = plain.iter().position(|&y| y == r).unwrap();
            if pos == 0 {
                assert_eq!(list.front(), r);
                continue;
            }
            assert_eq!(list.move_to_front(r), pos);
            plain.remove(pos);
            plain.insert(0, r);
        }
        let bytes: Vec<u8> = list.words.iter().flat_map(|w| w.to_le_bytes()).collect();
        assert_eq!(bytes, plain);
    }
}
