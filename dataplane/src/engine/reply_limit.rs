//! Limits on the frames the gateway makes up in answer to others: TCP resets
//! and UDP signed rejects. Without a limit, every spoofed SYN that a policy
//! rejects would make the gateway send a reset to the spoofed address, at the
//! rate the SYNs arrive: a reflector.
//!
//! Two token buckets per worker. Answers to a sender that proved nothing
//! (a SYN or SYN-ACK without a verified identity: its source address may be
//! forged) draw from the strict `unverified` bucket; answers to a verified
//! peer gateway or to a local PU (inside the gateway, not spoofable from the
//! network) from the `verified` one. A suppressed answer is counted; the frame
//! it answered is dropped with its own reason as before.

/// Rates and bursts, per worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplyLimits {
    /// Answers per second to verified peers and local PUs.
    pub verified_per_s: u32,
    /// Answers that may go at once after a quiet spell.
    pub verified_burst: u32,
    /// Answers per second to senders without a verified identity.
    pub unverified_per_s: u32,
    pub unverified_burst: u32,
}

impl Default for ReplyLimits {
    fn default() -> Self {
        ReplyLimits { verified_per_s: 10_000, verified_burst: 1_000, unverified_per_s: 100, unverified_burst: 20 }
    }
}

impl ReplyLimits {
    /// Every problem with these limits, each naming its field.
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        for (name, rate, burst) in [
            ("verified", self.verified_per_s, self.verified_burst),
            ("unverified", self.unverified_per_s, self.unverified_burst),
        ] {
            if rate > 0 && burst == 0 {
                p.push(format!("{name}_burst: 0 with {name}_per_s = {rate}: no answer could ever be sent (set a burst >= 1, or the rate to 0 to send none)"));
            }
        }
        p
    }
}

/// Whom an answer goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trust {
    /// A verified peer gateway, or a local PU.
    Verified,
    /// A sender that proved nothing.
    Unverified,
}

/// A token bucket in fixed point: `tokens` in millionths of a token.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: u64,
    max: u64,
    per_s: u64,
    at_ns: u64,
}

const UNIT: u64 = 1_000_000;

impl Bucket {
    fn new(per_s: u32, burst: u32) -> Bucket {
        let max = u64::from(burst) * UNIT;
        Bucket { tokens: max, max, per_s: u64::from(per_s), at_ns: 0 }
    }

    #[inline]
    fn take(&mut self, now_ns: u64) -> bool {
        if now_ns > self.at_ns {
            // Capped at 1000 s so the product cannot overflow; the bucket is
            // full long before.
            let dt = (now_ns - self.at_ns).min(1_000_000_000_000);
            self.tokens = (self.tokens + dt * self.per_s / 1_000).min(self.max);
            self.at_ns = now_ns;
        }
        if self.tokens >= UNIT {
            self.tokens -= UNIT;
            true
        } else {
            false
        }
    }
}

/// One worker's two buckets.
#[derive(Debug, Clone, Copy)]
pub struct ReplyLimiter {
    verified: Bucket,
    unverified: Bucket,
}

impl ReplyLimiter {
    pub fn new(l: ReplyLimits) -> ReplyLimiter {
        ReplyLimiter {
            verified: Bucket::new(l.verified_per_s, l.verified_burst),
            unverified: Bucket::new(l.unverified_per_s, l.unverified_burst),
        }
    }

    /// Whether an answer to `to` may be sent now (a token is taken if so).
    #[inline]
    pub fn allow(&mut self, to: Trust, now_ns: u64) -> bool {
        match to {
            Trust::Verified => self.verified.take(now_ns),
            Trust::Unverified => self.unverified.take(now_ns),
        }
    }
}

impl Default for ReplyLimiter {
    fn default() -> Self {
        ReplyLimiter::new(ReplyLimits::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn a_burst_then_the_rate() {
        let mut l = ReplyLimiter::new(ReplyLimits {
            verified_per_s: 1000,
            verified_burst: 10,
            unverified_per_s: 10,
            unverified_burst: 2,
        });
        let t = 5_000 * 1_000 * MS;
        let sent = (0..100).filter(|_| l.allow(Trust::Unverified, t)).count();
        assert_eq!(sent, 2, "the burst, then nothing at the same instant");
        // 10/s: one more after 100 ms, not before.
        assert!(!l.allow(Trust::Unverified, t + 99 * MS));
        assert!(l.allow(Trust::Unverified, t + 100 * MS));
        assert!(!l.allow(Trust::Unverified, t + 100 * MS));
        // The verified bucket is separate and larger.
        assert_eq!((0..100).filter(|_| l.allow(Trust::Verified, t)).count(), 10);
        // Over 1 s of a flood at 1 per ms: the burst plus the rate, no more.
        let mut l = ReplyLimiter::new(ReplyLimits::default());
        let sent = (0..1000).filter(|i| l.allow(Trust::Unverified, t + i * MS)).count();
        assert!((100..=120).contains(&sent), "{sent}");
        // After a long quiet spell the bucket holds its burst, not more.
        let later = t + 3_600_000 * MS;
        assert_eq!((0..1000).filter(|_| l.allow(Trust::Unverified, later)).count(), 20);
    }

    #[test]
    fn a_zero_rate_sends_nothing_and_a_zero_burst_is_a_problem() {
        let mut l = ReplyLimiter::new(ReplyLimits { unverified_per_s: 0, unverified_burst: 0, ..Default::default() });
        assert!(!l.allow(Trust::Unverified, 1));
        assert!(!l.allow(Trust::Unverified, 10_000 * 1_000 * MS));
        assert!(ReplyLimits { unverified_per_s: 0, unverified_burst: 0, ..Default::default() }.problems().is_empty());
        let p = ReplyLimits { verified_burst: 0, ..Default::default() }.problems();
        assert_eq!(p.len(), 1);
        assert!(p[0].starts_with("verified_burst: 0"), "{p:?}");
    }
}
