//! Most-significant-bit-first bit output, as bzip2 writes it.

pub(crate) struct BitWriter<'a> {
    out: &'a mut Vec<u8>,
    /// Pending bits in the low `n` bits (higher bits are stale and ignored).
    acc: u64,
    n: u32,
}

impl<'a> BitWriter<'a> {
    pub(crate) fn new(out: &'a mut Vec<u8>) -> Self {
        BitWriter { out, acc: 0, n: 0 }
    }

    /// Writes the low `nbits` bits of `value` (`nbits` ≤ 32; `value` has no higher bits set).
    #[inline(always)]
    pub(crate) fn put(&mut self, nbits: u32, value: u32) {
        debug_assert!(nbits <= 32 && (nbits == 32 || value >> nbits == 0));
        self.acc = (self.acc << nbits) | u64::from(value);
        self.n += nbits;
        if self.n >= 32 {
            self.n -= 32;
            let word = (self.acc >> self.n) as u32;
            self.out.extend_from_slice(&word.to_be_bytes());
        }
    }

    /// Writes a 48-bit magic number.
    pub(crate) fn put48(&mut self, value: u64) {
        self.put(24, (value >> 24) as u32);
        self.put(24, (value & 0xFF_FFFF) as u32);
    }

    /// Writes the pending bits, padding the last byte with zero bits.
    pub(crate) fn finish(self) {
        let mut n = self.n;
        while n >= 8 {
            n -= 8;
            self.out.push((self.acc >> n) as u8);
        }
        if n > 0 {
            self.out.push((self.acc << (8 - n)) as u8);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_msb_first_and_pads_with_zeros() {
        let mut out = Vec::new();
        let mut w = BitWriter::new(&mut out);
        w.put(1, 1);
        w.put(3, 0b010);
        w.put(8, 0xAB);
        w.put(32, 0xDEAD_BEEF);
        w.put(2, 0b11);
        w.finish();
        // 1010 10101011 DEADBEEF 11 -> AA BD EA DB EE, then 111111 padded to FC
        assert_eq!(out, [0xAA, 0xBD, 0xEA, 0xDB, 0xEE, 0xFC]);
    }
}
