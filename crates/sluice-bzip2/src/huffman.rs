//! Huffman code lengths and canonical codes, computed as libbz2 does
//! (`BZ2_hbMakeCodeLengths`, `BZ2_hbAssignCodes`) so that tables, and hence sizes, match it.

/// Longest code bzip2's encoder emits (the format allows 20).
pub(crate) const MAX_CODE_LEN: u8 = 17;

/// Code lengths for `freq` (one entry per symbol, at most 258), no longer than `max_len`.
///
/// A Huffman tree over weights `max(freq, 1)`; ties are broken towards shallower subtrees
/// (the weight's low byte holds the subtree depth). If a code is too long, every weight is
/// roughly halved and the tree rebuilt.
pub(crate) fn code_lengths(freq: &[u32], max_len: u8, lengths: &mut [u8]) {
    let alpha = freq.len();
    debug_assert!((2..=258).contains(&alpha) && lengths.len() == alpha);
    const MAX_NODES: usize = 2 * 258;
    let mut weight = [0u32; MAX_NODES];
    let mut parent = [0i32; MAX_NODES];
    let mut heap = [0usize; 258 + 2];

    for (i, &f) in freq.iter().enumerate() {
        weight[i + 1] = f.max(1) << 8;
    }

    loop {
        let mut n_nodes = alpha;
        let mut n_heap = 0usize;
        heap[0] = 0;
        weight[0] = 0;
        parent[0] = -2;

        parent[1..=alpha].fill(-1);
        for i in 1..=alpha {
            n_heap += 1;
            heap[n_heap] = i;
            up_heap(&mut heap, &weight, n_heap);
        }
        while n_heap > 1 {
            let n1 = heap[1];
            heap[1] = heap[n_heap];
            n_heap -= 1;
            down_heap(&mut heap, &weight, n_heap, 1);
            let n2 = heap[1];
            heap[1] = heap[n_heap];
            n_heap -= 1;
            down_heap(&mut heap, &weight, n_heap, 1);
            n_nodes += 1;
            parent[n1] = n_nodes as i32;
            parent[n2] = n_nodes as i32;
            weight[n_nodes] = add_weights(weight[n1], weight[n2]);
            parent[n_nodes] = -1;
            n_heap += 1;
            heap[n_heap] = n_nodes;
            up_heap(&mut heap, &weight, n_heap);
        }

        let mut too_long = false;
        for i in 1..=alpha {
            let mut depth = 0u8;
            let mut k = i;
            while parent[k] >= 0 {
                k = parent[k] as usize;
                depth += 1;
            }
            lengths[i - 1] = depth;
            too_long |= depth > max_len;
        }
        if !too_long {
            return;
        }
        for w in &mut weight[1..=alpha] {
            let j = *w >> 8;
            *w = (1 + j / 2) << 8;
        }
    }
}

#[inline]
fn add_weights(a: u32, b: u32) -> u32 {
    ((a & 0xffff_ff00) + (b & 0xffff_ff00)) | (1 + (a & 0xff).max(b & 0xff))
}

#[inline]
fn up_heap(heap: &mut [usize], weight: &[u32], mut z: usize) {
    let tmp = heap[z];
    // heap[0] is node 0 of weight 0: the sentinel that stops the climb.
    while weight[tmp] < weight[heap[z >> 1]] {
        heap[z] = heap[z >> 1];
        z >>= 1;
    }
    heap[z] = tmp;
}

#[inline]
fn down_heap(heap: &mut [usize], weight: &[u32], n_heap: usize, mut z: usize) {
    let tmp = heap[z];
    loop {
        let mut y = z << 1;
        if y > n_heap {
            break;
        }
        if y < n_heap && weight[heap[y + 1]] < weight[heap[y]] {
            y += 1;
        }
        if weight[tmp] < weight[heap[y]] {
            break;
        }
        heap[z] = heap[y];
        z = y;
    }
    heap[z] = tmp;
}

/// Canonical codes for `lengths`: shorter codes first, ties in symbol order.
pub(crate) fn assign_codes(lengths: &[u8], codes: &mut [u32]) {
    let min = lengths.iter().copied().min().unwrap_or(0);
    let max = lengths.iter().copied().max().unwrap_or(0);
    let mut next = 0u32;
    for len in min..=max {
        for (code, &l) in codes.iter_mut().zip(lengths) {
            if l == len {
                *code = next;
                next += 1;
            }
        }
        next <<= 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kraft_ok(lengths: &[u8]) -> bool {
        let sum: u64 = lengths.iter().map(|&l| 1u64 << (32 - l)).sum();
        sum <= 1u64 << 32
    }

    #[test]
    fn lengths_are_a_prefix_code_within_the_limit() {
        // Fibonacci frequencies force a deep tree, which the limit must cut.
        let mut freq = vec![1u32, 1];
        while freq.len() < 30 {
            let n = freq.len();
            freq.push(freq[n - 1] + freq[n - 2]);
        }
        let mut lengths = vec![0u8; freq.len()];
        code_lengths(&freq, MAX_CODE_LEN, &mut lengths);
        assert!(lengths.iter().all(|&l| (1..=MAX_CODE_LEN).contains(&l)));
        assert!(kraft_ok(&lengths));
        // Unlimited, the longest code would be 29 bits.
        let mut unlimited = vec![0u8; freq.len()];
        code_lengths(&freq, 32, &mut unlimited);
        assert_eq!(*unlimited.iter().max().unwrap(), 29);

        let uniform = vec![5u32; 258];
        let mut lengths = vec![0u8; 258];
        code_lengths(&uniform, MAX_CODE_LEN, &mut lengths);
        assert!(kraft_ok(&lengths));
        assert!(lengths.iter().all(|&l| l == 8 || l == 9));
    }

    #[test]
    fn canonical_codes() {
        let lengths = [2u8, 1, 3, 3];
        let mut codes = [0u32; 4];
        assign_codes(&lengths, &mut codes);
        assert_eq!(codes, [0b10, 0b0, 0b110, 0b111]);
    }
}
