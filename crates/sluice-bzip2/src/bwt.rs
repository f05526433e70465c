//! The block sort: the Burrows–Wheeler transform of a block's rotations, through a suffix
//! array.
//!
//! bzip2 sorts the *rotations* of a block (cyclically), while a suffix array sorts suffixes.
//! The two orders agree for a Lyndon word (a primitive string strictly smaller than all its
//! other rotations): comparing two of its suffixes either finds a difference, which orders
//! the rotations the same way, or finds the shorter suffix `s` to be a prefix of the longer
//! one `s·y`; then the rotations continue with the whole word after `s` and with `y` (a proper
//! suffix of the word, hence greater than the word and not a prefix of it) respectively, so
//! the shorter suffix's rotation is the smaller one, as in the suffix order.
//!
//! So the block is first rotated to its least rotation `w` (O(n)), which is `v^k` for a
//! Lyndon word `v` (k = 1 for almost every real block). The suffix array of `v` (libsais,
//! SA-IS, linear time) is the sorted order of `v`'s rotations; the sorted rotations of `v^k`
//! are each of those repeated `k` times (equal rotations, in any order), so the transform of
//! the block is `v`'s transform with every byte repeated `k` times. The origin pointer is the
//! rank of the rotation that starts at the block's first byte. No doubled block is built.

use libsais::SuffixArrayConstruction;
use libsais::context::Context;
use libsais::typestate::SingleThreaded;

/// Reusable buffers for [`Bwt::transform`].
pub(crate) struct Bwt {
    rotated: Vec<u8>,
    sa: Vec<i32>,
    context: Context<u8, i32, SingleThreaded>,
}

impl Bwt {
    pub(crate) fn new() -> Self {
        Bwt {
            rotated: Vec::new(),
            sa: Vec::new(),
            context: Context::new_single_threaded(),
        }
    }

    /// Writes the transform of `block`'s rotations into `out` (same length) and returns the
    /// origin pointer: the rank among the sorted rotations of the rotation starting at 0.
    #[inline(never)]
    pub(crate) fn transform(&mut self, block: &[u8], out: &mut Vec<u8>) -> u32 {
        let n = block.len();
        out.clear();
        if n == 0 {
            return 0;
        }
        let r = least_rotation(block);
        self.rotated.clear();
        self.rotated.extend_from_slice(&block[r..]);
        self.rotated.extend_from_slice(&block[..r]);
        let w = &self.rotated[..];
        let p = lyndon_root_len(w);
        let k = n / p;
        let v = &w[..p];
        // Where the block's rotation 0 starts in `w`, reduced to `v`.
        let origin = (n - r) % n % p;

        self.sa.clear();
        self.sa.resize(p, 0);
        SuffixArrayConstruction::for_text(v)
            .in_borrowed_buffer(&mut self.sa[..])
            .single_threaded()
            .with_context(&mut self.context)
            .run()
            .expect("a block of at most 900 kB fits libsais' i32 suffix array");

        out.reserve(n);
        let mut orig_rank = 0;
        if k == 1 {
            out.extend(self.sa.iter().map(|&s| {
                let s = s as usize;
                if s == 0 { v[p - 1] } else { v[s - 1] }
            }));
            orig_rank = self
                .sa
                .iter()
                .position(|&s| s as usize == origin)
                .expect("every start is in the suffix array");
        } else {
            for (rank, &s) in self.sa.iter().enumerate() {
                let s = s as usize;
                let c = if s == 0 { v[p - 1] } else { v[s - 1] };
                out.extend(std::iter::repeat_n(c, k));
                if s == origin {
                    orig_rank = rank * k;
                }
            }
        }
        orig_rank as u32
    }
}

/// Start of the lexicographically least rotation of `s` (one of the starts when the string
/// is periodic). Linear time: two candidate starts `i`, `j` compared over `k` bytes; a
/// mismatch rules out every start in the losing candidate's compared stretch. Only starts
/// of a longest (cyclic) run of the least byte can win, so the candidates skip to those;
/// common stretches are compared eight bytes at a time (text blocks repeat long substrings).
#[inline(never)]
pub(crate) fn least_rotation(s: &[u8]) -> usize {
    let n = s.len();
    let Some(&least) = s.iter().min() else {
        return 0;
    };
    let Some(other) = s.iter().position(|&c| c != least) else {
        return 0;
    };
    // Cyclic run of `least` bytes starting at `p`, counted up to `cap`.
    let run_at = |p: usize, cap: usize| {
        let mut len = 0;
        let mut q = p;
        while len < cap && s[q] == least {
            len += 1;
            q += 1;
            if q == n {
                q = 0;
            }
        }
        len
    };
    // The longest run: scan the runs once, starting after a byte that is not `least`.
    let mut longest = 0;
    let mut p = other;
    for _ in 0..n {
        p += 1;
        if p == n {
            p = 0;
        }
        let before = if p == 0 { n - 1 } else { p - 1 };
        if s[p] == least && s[before] != least {
            longest = longest.max(run_at(p, n));
        }
    }
    // The first start at or after `from` of a run of `longest` least bytes, or `n`.
    let next = |mut from: usize| {
        while from < n {
            let Some(off) = s[from..].iter().position(|&c| c == least) else {
                return n;
            };
            let p = from + off;
            let before = if p == 0 { n - 1 } else { p - 1 };
            let run = run_at(p, longest);
            if s[before] != least && run == longest {
                return p;
            }
            from = p + run.max(1);
        }
        n
    };
    let mut i = next(0);
    let mut j = next(i + 1);
    let mut k = 0usize;
    while i < n && j < n && k < n {
        let mut a = i + k;
        if a >= n {
            a -= n;
        }
        let mut b = j + k;
        if b >= n {
            b -= n;
        }
        let (mut ca, mut cb) = (s[a], s[b]);
        if ca == cb {
            k += common_cyclic(s, a, b, n - k);
            if k >= n {
                break;
            }
            a = (i + k) % n;
            b = (j + k) % n;
            (ca, cb) = (s[a], s[b]);
        }
        if ca > cb {
            i = next(i + k + 1);
        } else {
            j = next(j + k + 1);
        }
        if i == j {
            j = next(j + 1);
        }
        k = 0;
    }
    i.min(j)
}

/// Length (at most `max`) of the common prefix of `s`'s rotations starting at `a` and `b`.
fn common_cyclic(s: &[u8], mut a: usize, mut b: usize, max: usize) -> usize {
    let n = s.len();
    let mut done = 0;
    while done < max {
        let len = (n - a).min(n - b).min(max - done);
        let m = common_prefix(&s[a..a + len], &s[b..b + len]);
        done += m;
        if m < len {
            break;
        }
        a += len;
        if a == n {
            a = 0;
        }
        b += len;
        if b == n {
            b = 0;
        }
    }
    done
}

/// Length of the common prefix of two equally long slices.
fn common_prefix(x: &[u8], y: &[u8]) -> usize {
    let mut done = 0;
    let mut xs = x.chunks_exact(8);
    let mut ys = y.chunks_exact(8);
    for (cx, cy) in (&mut xs).zip(&mut ys) {
        let wx = u64::from_le_bytes(cx.try_into().expect("8 bytes"));
        let wy = u64::from_le_bytes(cy.try_into().expect("8 bytes"));
        let diff = wx ^ wy;
        if diff != 0 {
            return done + (diff.trailing_zeros() / 8) as usize;
        }
        done += 8;
    }
    done + xs
        .remainder()
        .iter()
        .zip(ys.remainder())
        .take_while(|(p, q)| p == q)
        .count()
}

/// Length of the Lyndon word `v` with `w = v^k`, for `w` a least rotation (a necklace; every
/// necklace is a power of a Lyndon word). Duval's first step: the longest prefix of the form
/// `v^m v'` (`v'` a proper prefix of `v`) has period `|v|`, and for a necklace it is the whole
/// string with `|v|` dividing its length.
pub(crate) fn lyndon_root_len(w: &[u8]) -> usize {
    let n = w.len();
    let (mut j, mut k) = (1usize, 0usize);
    while j < n && w[k] <= w[j] {
        if w[k] < w[j] {
            k = 0;
        } else {
            k += 1;
        }
        j += 1;
    }
    let p = j - k;
    debug_assert!(j == n && n.is_multiple_of(p), "w is not a necklace");
    if j == n && n.is_multiple_of(p) { p } else { n }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Sorts all rotations by comparing them in full: the definition.
    fn naive(block: &[u8]) -> (Vec<u8>, Vec<usize>) {
        let n = block.len();
        let mut rots: Vec<usize> = (0..n).collect();
        let rot = |i: usize| {
            block[i..]
                .iter()
                .chain(&block[..i])
                .copied()
                .collect::<Vec<u8>>()
        };
        rots.sort_by_key(|&i| rot(i));
        let bwt = rots.iter().map(|&i| block[(i + n - 1) % n]).collect();
        (bwt, rots)
    }

    fn check(block: &[u8]) {
        let mut bwt = Bwt::new();
        let mut out = Vec::new();
        let orig = bwt.transform(block, &mut out) as usize;
        let (expected, rots) = naive(block);
        assert_eq!(out, expected, "block {block:?}");
        // The origin rank must point at a rotation equal to the block itself (with repeated
        // rotations, any of the equal ones).
        let rot0 = block.to_vec();
        let at = rots[orig];
        let rot_at: Vec<u8> = block[at..].iter().chain(&block[..at]).copied().collect();
        assert_eq!(rot_at, rot0, "block {block:?} orig {orig}");
    }

    #[test]
    fn matches_the_naive_rotation_sort() {
        for block in [
            &b"a"[..],
            b"ab",
            b"ba",
            b"banana",
            b"abab",
            b"baba",
            b"aaaa",
            b"abcabcabc",
            b"cabcabcab",
            b"mississippi",
            b"aabaabaab",
            b"abaab",
            b"zzzzy",
            b"yzzzz",
        ] {
            check(block);
        }
    }

    /// The least rotation by comparing every rotation in full.
    fn naive_least_rotation(s: &[u8]) -> usize {
        let n = s.len();
        let rot = |i: usize| s[i..].iter().chain(&s[..i]).copied().collect::<Vec<u8>>();
        (0..n).min_by_key(|&i| (rot(i), i)).unwrap()
    }

    #[test]
    fn least_rotation_and_root() {
        assert_eq!(least_rotation(b"banana"), 5);
        assert_eq!(least_rotation(b"abab"), 0);
        assert_eq!(least_rotation(b"baba"), 1);
        assert_eq!(least_rotation(b"abababa"), 6);
        assert_eq!(least_rotation(b"aababaaab"), 5);
        assert_eq!(least_rotation(b"abaaababa"), 2);
        assert_eq!(least_rotation(b"aaaa"), 0);
        assert_eq!(lyndon_root_len(b"abab"), 2);
        assert_eq!(lyndon_root_len(b"aaaa"), 1);
        assert_eq!(lyndon_root_len(b"aab"), 3);
        assert_eq!(lyndon_root_len(b"abcabc"), 3);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn random_small_alphabet_blocks(block in proptest::collection::vec(0u8..3, 1..60)) {
            check(&block);
        }

        #[test]
        fn random_periodic_blocks(
            unit in proptest::collection::vec(0u8..3, 1..8),
            reps in 1usize..8,
            shift in 0usize..64,
        ) {
            let mut block: Vec<u8> = unit.iter().copied().cycle().take(unit.len() * reps).collect();
            let s = shift % block.len();
            block.rotate_left(s);
            check(&block);
        }

        #[test]
        fn least_rotation_matches_naive(
            unit in proptest::collection::vec(0u8..3, 1..40),
            reps in 1usize..4,
            tail in proptest::collection::vec(0u8..3, 0..20),
        ) {
            let mut s: Vec<u8> = unit.iter().copied().cycle().take(unit.len() * reps).collect();
            s.extend(tail);
            let rot = |i: usize| s[i..].iter().chain(&s[..i]).copied().collect::<Vec<u8>>();
            prop_assert_eq!(rot(least_rotation(&s)), rot(naive_least_rotation(&s)));
        }

        #[test]
        fn random_bytes(block in proptest::collection::vec(any::<u8>(), 1..200)) {
            check(&block);
        }
    }
}
