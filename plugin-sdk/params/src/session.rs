//! Rules of a provisioning session that the SDK's test device must follow as the host does.

/// Rounds of a session's provisioning after which the host gives up with a fault
/// (`provisioning.not_converging`); the SDK's `TestDevice::converge` gives up after as many.
pub const MAX_ROUNDS: usize = 16;

/// The generator behind a plugin's `random` (splitmix64, seeded by the host per run): advances
/// `state` and returns the next number. The test device uses it too, so a seeded test sees the
/// numbers a session would.
pub fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix64_matches_the_reference_sequence() {
        // The first outputs of the reference implementation (Vigna) seeded with 0.
        let mut state = 0;
        assert_eq!(splitmix64(&mut state), 0xe220_a839_7b1d_cdaf);
        assert_eq!(splitmix64(&mut state), 0x6e78_9e6a_a1b9_65f4);
    }
}
