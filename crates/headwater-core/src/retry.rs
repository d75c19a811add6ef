//! Retry schedules: how long to wait before each retry.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How the delay grows between retries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub enum Backoff {
    /// The listed delays in order; the last one repeats if there are more
    /// retries than delays. An empty list means no delay.
    #[default]
    Listed,
    /// `base * 2^(n-1)` for the n-th retry, capped at `max`.
    Exponential { base: Duration, max: Duration },
}

/// When and how often a failed run is tried again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct RetryPolicy {
    /// How many times to retry after the first attempt (0: never).
    pub retries: u32,
    pub delays: Vec<Duration>,
    pub backoff: Backoff,
    /// Adds up to this fraction of the delay at random, so that many runs
    /// failing together do not all retry at the same instant. Jitter only
    /// lengthens a delay: a retry never comes earlier than configured.
    pub jitter_factor: f64,
}

impl RetryPolicy {
    pub fn none() -> Self {
        RetryPolicy::default()
    }

    pub fn fixed(retries: u32, delay: Duration) -> Self {
        RetryPolicy { retries, delays: vec![delay], ..Default::default() }
    }

    /// Whether a run that has now failed `attempts` times may try again.
    pub fn should_retry(&self, attempts: u32) -> bool {
        attempts <= self.retries
    }

    /// The delay before retry number `retry` (1-based). `jitter_sample` is a
    /// value in `[0, 1)` from the caller's random source.
    pub fn delay_before(&self, retry: u32, jitter_sample: f64) -> Duration {
        let retry = retry.max(1);
        let base = match &self.backoff {
            Backoff::Listed => {
                self.delays.get(retry as usize - 1).or(self.delays.last()).copied().unwrap_or(Duration::ZERO)
            }
            Backoff::Exponential { base, max } => {
                let factor = 2u32.saturating_pow(retry - 1);
                base.checked_mul(factor).unwrap_or(*max).min(*max)
            }
        };
        if self.jitter_factor > 0.0 {
            let sample = jitter_sample.clamp(0.0, 1.0);
            base.mul_f64(1.0 + self.jitter_factor * sample)
        } else {
            base
        }
    }

    /// The whole schedule without jitter, for display and tests.
    pub fn schedule(&self) -> Vec<Duration> {
        (1..=self.retries).map(|n| self.delay_before(n, 0.0)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(v: &[u64]) -> Vec<Duration> {
        v.iter().map(|s| Duration::from_secs(*s)).collect()
    }

    #[test]
    fn listed_delays_repeat_the_last() {
        let p = RetryPolicy { retries: 5, delays: secs(&[1, 10, 60]), ..Default::default() };
        assert_eq!(p.schedule(), secs(&[1, 10, 60, 60, 60]));
    }

    #[test]
    fn no_delays_means_immediate_retries() {
        let p = RetryPolicy { retries: 2, ..Default::default() };
        assert_eq!(p.schedule(), secs(&[0, 0]));
    }

    #[test]
    fn exponential_backoff_doubles_and_caps() {
        let p = RetryPolicy {
            retries: 6,
            backoff: Backoff::Exponential { base: Duration::from_secs(10), max: Duration::from_secs(120) },
            ..Default::default()
        };
        assert_eq!(p.schedule(), secs(&[10, 20, 40, 80, 120, 120]));
        // Far retries do not overflow.
        assert_eq!(p.delay_before(200, 0.0), Duration::from_secs(120));
    }

    #[test]
    fn jitter_only_lengthens_within_the_factor() {
        let p = RetryPolicy { retries: 1, delays: secs(&[10]), jitter_factor: 0.5, ..Default::default() };
        assert_eq!(p.delay_before(1, 0.0), Duration::from_secs(10));
        assert_eq!(p.delay_before(1, 0.5), Duration::from_millis(12_500));
        assert!(p.delay_before(1, 0.999) < Duration::from_secs(15));
        // Samples outside [0, 1) are clamped, never shorten the delay.
        assert_eq!(p.delay_before(1, -3.0), Duration::from_secs(10));
    }

    #[test]
    fn should_retry_counts_attempts() {
        let p = RetryPolicy::fixed(2, Duration::ZERO);
        assert!(p.should_retry(1));
        assert!(p.should_retry(2));
        assert!(!p.should_retry(3));
        assert!(!RetryPolicy::none().should_retry(1));
    }
}
