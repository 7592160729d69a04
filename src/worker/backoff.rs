use std::time::Duration;

/// Capped exponential backoff with jitter, so that many workers losing the
/// same service do not come back in lockstep.
#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    current: Duration,
}

impl Backoff {
    pub fn new(min: Duration, max: Duration) -> Self {
        Self {
            min,
            max,
            current: min,
        }
    }

    /// The next delay: the current step plus up to half of it again.
    pub fn next_delay(&mut self) -> Duration {
        let step = self.current;
        self.current = (self.current * 2).min(self.max);
        let jitter = step.mul_f64(fastrand::f64() / 2.0);
        (step + jitter).min(self.max)
    }

    pub fn reset(&mut self) {
        self.current = self.min;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_and_stop_at_the_cap() {
        let ms = Duration::from_millis;
        let mut b = Backoff::new(ms(100), Duration::from_secs(1));
        // Step n is 100 ms * 2^n plus up to half of it, capped at 1 s.
        for (low, high) in [(100, 150), (200, 300), (400, 600), (800, 1000)] {
            let delay = b.next_delay();
            assert!(
                delay >= ms(low) && delay <= ms(high),
                "{delay:?} not in {low}..={high} ms"
            );
        }
        for _ in 0..10 {
            assert_eq!(b.next_delay(), Duration::from_secs(1), "held at the cap");
        }
        b.reset();
        let again = b.next_delay();
        assert!(again >= ms(100) && again <= ms(150), "{again:?}");
    }

    #[test]
    fn delays_are_jittered() {
        let delays: std::collections::HashSet<Duration> = (0..20)
            .map(|_| Backoff::new(Duration::from_secs(1), Duration::from_secs(10)).next_delay())
            .collect();
        assert!(delays.len() > 1, "twenty workers would retry in lockstep");
    }
}
