//! A seeded pseudo-random sequence for the unit tests (shuffles, random packets), with no
//! dependency and nothing of this crate.

/// Xorshift64: a deterministic pseudo-random sequence without a dependency.
pub fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}
