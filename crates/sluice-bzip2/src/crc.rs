//! bzip2's CRC-32: polynomial 0x04C11DB7, most significant bit first, initial value and final
//! xor 0xFFFFFFFF (the CRC of `cksum`/MPEG-2 family, not zlib's reflected one).

const POLY: u32 = 0x04C1_1DB7;

/// `TABLES[0]` is the byte-at-a-time table; `TABLES[k][b]` is the CRC register contribution
/// of byte `b` followed by `k` zero bytes (slicing-by-8).
static TABLES: [[u32; 256]; 8] = make_tables();

const fn make_tables() -> [[u32; 256]; 8] {
    let mut t = [[0u32; 256]; 8];
    let mut i = 0;
    while i < 256 {
        let mut c = (i as u32) << 24;
        let mut k = 0;
        while k < 8 {
            c = if c & 0x8000_0000 != 0 {
                (c << 1) ^ POLY
            } else {
                c << 1
            };
            k += 1;
        }
        t[0][i] = c;
        i += 1;
    }
    let mut k = 1;
    while k < 8 {
        let mut i = 0;
        while i < 256 {
            let prev = t[k - 1][i];
            t[k][i] = (prev << 8) ^ t[0][(prev >> 24) as usize];
            i += 1;
        }
        k += 1;
    }
    t
}

/// The bzip2 CRC of `data` (initial register 0xFFFFFFFF, result complemented).
#[inline(never)]
pub(crate) fn crc32(data: &[u8]) -> u32 {
    !update(0xFFFF_FFFF, data)
}

/// Feeds `data` into the CRC register `crc` (no pre- or post-conditioning).
fn update(mut crc: u32, data: &[u8]) -> u32 {
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        let a = crc ^ u32::from_be_bytes([c[0], c[1], c[2], c[3]]);
        let b = u32::from_be_bytes([c[4], c[5], c[6], c[7]]);
        crc = TABLES[7][(a >> 24) as usize]
            ^ TABLES[6][((a >> 16) & 0xff) as usize]
            ^ TABLES[5][((a >> 8) & 0xff) as usize]
            ^ TABLES[4][(a & 0xff) as usize]
            ^ TABLES[3][(b >> 24) as usize]
            ^ TABLES[2][((b >> 16) & 0xff) as usize]
            ^ TABLES[1][((b >> 8) & 0xff) as usize]
            ^ TABLES[0][(b & 0xff) as usize];
    }
    for &byte in chunks.remainder() {
        crc = (crc << 8) ^ TABLES[0][((crc >> 24) ^ u32::from(byte)) as usize];
    }
    crc
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytewise(data: &[u8]) -> u32 {
        let mut crc = 0xFFFF_FFFFu32;
        for &b in data {
            crc ^= u32::from(b) << 24;
            for _ in 0..8 {
                crc = if crc & 0x8000_0000 != 0 {
                    (crc << 1) ^ POLY
                } else {
                    crc << 1
                };
            }
        }
        !crc
    }

    #[test]
    fn matches_the_bit_at_a_time_definition() {
        // The CRC-32/BZIP2 check value.
        assert_eq!(crc32(b"123456789"), 0xFC89_1918);
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 7919 % 251) as u8).collect();
        for len in [0, 1, 7, 8, 9, 15, 16, 17, 100, 1000] {
            assert_eq!(crc32(&data[..len]), bytewise(&data[..len]), "len {len}");
        }
    }
}
