//! The verify run's data: a 4 KiB block pattern seeded by block address and
//! generation, with a checksum in its last word.
//!
//! Words (little-endian `u64`): 0 is the block address, 1 the generation
//! with a tag in its high half, 2 to 510 a mix of both and the word's
//! index, 511 a checksum of words 0 to 510. Generation 0 is a block never
//! written: all zeros.

/// Bytes in a verify block.
pub const BLOCK: usize = 4096;
const WORDS: usize = BLOCK / 8;
const TAG: u64 = 0x5eed_b10c << 32;

/// Fills `block` (4096 bytes) with the pattern of `address` at `generation`.
pub fn fill(block: &mut [u8], address: u64, generation: u32) {
    if generation == 0 {
        block.fill(0);
        return;
    }
    let mut sum = 0;
    for (index, word) in block.chunks_exact_mut(8).enumerate() {
        let value = match index {
            0 => address,
            1 => TAG | u64::from(generation),
            WORD_CHECKSUM => sum,
            _ => mix(address << 32 ^ u64::from(generation) ^ (index as u64) << 20),
        };
        sum = checksum_step(sum, value);
        word.copy_from_slice(&value.to_le_bytes());
    }
}

const WORD_CHECKSUM: usize = WORDS - 1;

/// Whether `block` holds the pattern of `address` at `generation`: its
/// header names them and its checksum matches its words.
pub fn check(block: &[u8], address: u64, generation: u32) -> bool {
    if block.len() != BLOCK {
        return false;
    }
    if generation == 0 {
        return block.iter().all(|&byte| byte == 0);
    }
    let mut sum = 0;
    for (index, word) in block.chunks_exact(8).enumerate() {
        let value = u64::from_le_bytes(word.try_into().unwrap_or_default());
        let expected = match index {
            0 => Some(address),
            1 => Some(TAG | u64::from(generation)),
            WORD_CHECKSUM => Some(sum),
            _ => None,
        };
        if expected.is_some_and(|expected| expected != value) {
            return false;
        }
        sum = checksum_step(sum, value);
    }
    true
}

fn checksum_step(sum: u64, word: u64) -> u64 {
    (sum ^ word).wrapping_mul(0x0000_0100_0000_01b3).rotate_left(17)
}

/// splitmix64's finaliser.
fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}
