//! memcached's expiry rules, in one place.

/// Expiry values up to 30 days are relative seconds; larger ones are absolute unix times.
pub const MAX_RELATIVE_EXPTIME: u32 = 60 * 60 * 24 * 30;

/// An expiry that has always passed: used for absolute times already in the past.
pub const ALREADY_EXPIRED: u32 = 1;

/// Turns a client's exptime into an absolute unix time (0 = never).
pub fn absolute(exptime: u32, now: u32) -> u32 {
    if exptime == 0 {
        0
    } else if exptime <= MAX_RELATIVE_EXPTIME {
        now.saturating_add(exptime)
    } else if exptime <= now {
        ALREADY_EXPIRED
    } else {
        exptime
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memcached_rules() {
        let now = 1_800_000_000;
        assert_eq!(absolute(0, now), 0);
        assert_eq!(absolute(1, now), now + 1);
        assert_eq!(absolute(MAX_RELATIVE_EXPTIME, now), now + MAX_RELATIVE_EXPTIME);
        assert_eq!(absolute(MAX_RELATIVE_EXPTIME + 1, now), ALREADY_EXPIRED);
        assert_eq!(absolute(now, now), ALREADY_EXPIRED);
        assert_eq!(absolute(now + 5, now), now + 5);
    }
}
