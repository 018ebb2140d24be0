//! The segmented sieve of Eratosthenes behind `count_primes` (`futures.rs`) and `primes`
//! (`stream.rs`): pure Rust, no Python, so that both feature modules can use it without
//! using each other. The same file, word for word, is in the 0.12 crate.

use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, Ordering};

/// The largest `n` the sieve takes: it keeps the primes up to √n in memory.
pub(crate) const MAX_BELOW: u64 = 1 << 40;

/// The numbers sieved at a time: one segment takes well under a millisecond.
const SEGMENT: u64 = 1 << 15;

/// The numbers a `primes` worker sieves at a time, at least: about 10 µs of work, less
/// than a consumer takes to empty a quarter of the default buffer (64 primes). Sieving
/// 2**15 at once kept the worker away from the buffer for about 200 µs per segment, and
/// the consumer found it empty and waited each time.
pub(crate) const STREAM_SEGMENT: u64 = 1 << 10;

// ANCHOR: segments
/// The primes below `n`, sieved one segment at a time, on demand.
pub(crate) struct Segments {
    n: u64,
    /// The primes up to √n: they strike out the composites of a segment.
    base: Vec<u64>,
    /// The composites of the segment sieved last, from `low - SEGMENT`.
    composite: Vec<bool>,
    /// Where the next segment starts.
    low: u64,
    /// The shortest segment. A shorter one than `SEGMENT` grows with √`high` up to
    /// `SEGMENT`, so that walking the base primes costs less than striking out their
    /// multiples.
    segment: u64,
}

impl Segments {
    pub(crate) fn new(n: u64) -> Self {
        Self::with_segment(n, SEGMENT)
    }

    /// The same, sieving segments of at least `segment` numbers.
    pub(crate) fn with_segment(n: u64, segment: u64) -> Self {
        if n < 3 {
            return Segments {
                n,
                base: Vec::new(),
                composite: Vec::new(),
                low: n,
                segment,
            };
        }
        // The primes up to √n, by a plain sieve.
        let root = (n as f64).sqrt() as u64 + 1;
        let mut composite = vec![false; root as usize + 1];
        let mut base = Vec::new();
        for i in 2..=root {
            if !composite[i as usize] {
                base.push(i);
                let mut j = i * i;
                while j <= root {
                    composite[j as usize] = true;
                    j += i;
                }
            }
        }
        Segments {
            n,
            base,
            composite: Vec::new(),
            low: 0,
            segment,
        }
    }

    /// Every segment was sieved.
    pub(crate) fn is_done(&self) -> bool {
        self.low >= self.n
    }

    /// Sieves the next segment: its primes in increasing order (none once `is_done`).
    pub(crate) fn sieve_next(&mut self) -> impl Iterator<Item = u64> + '_ {
        let low = self.low;
        let span = self.segment.max((low + self.segment).isqrt().min(SEGMENT));
        let high = (low + span).min(self.n);
        self.low = high.max(low);
        let composite = &mut self.composite;
        composite.clear();
        composite.resize(span as usize, false);
        for &p in self.base.iter().take_while(|&&p| p * p < high) {
            let mut multiple = (low.div_ceil(p) * p).max(p * p);
            while multiple < high {
                composite[(multiple - low) as usize] = true;
                multiple += p;
            }
        }
        (low.max(2)..high).filter(move |&i| !composite[(i - low) as usize])
    }
}
// ANCHOR_END: segments

// ANCHOR: for_each_prime_below
/// Calls `each` with every prime below `n`, in increasing order, one segment at a time.
///
/// Stops early, returning `Break(())`, when `each` returns `Break(())` or when
/// `cancelled` is found set (it is checked before each segment); `Continue(())` once
/// every prime was handed over.
pub(crate) fn for_each_prime_below(
    n: u64,
    cancelled: &AtomicBool,
    mut each: impl FnMut(u64) -> ControlFlow<()>,
) -> ControlFlow<()> {
    let mut segments = Segments::new(n);
    while !segments.is_done() {
        if cancelled.load(Ordering::Relaxed) {
            return ControlFlow::Break(());
        }
        segments.sieve_next().try_for_each(&mut each)?;
    }
    ControlFlow::Continue(())
}
// ANCHOR_END: for_each_prime_below

#[cfg(test)]
mod tests {
    use super::*;

    fn primes(n: u64) -> Vec<u64> {
        let mut found = Vec::new();
        let _ = for_each_prime_below(n, &AtomicBool::new(false), |p| {
            found.push(p);
            ControlFlow::Continue(())
        });
        found
    }

    #[test]
    fn small() {
        assert_eq!(primes(0), Vec::<u64>::new());
        assert_eq!(primes(3), vec![2]);
        assert_eq!(primes(30), vec![2, 3, 5, 7, 11, 13, 17, 19, 23, 29]);
        assert_eq!(primes(1_000_000).len(), 78_498);
    }

    #[test]
    fn segments_in_order() {
        let mut segments = Segments::new(200_000); // several segments, the last one short
        let mut found = Vec::new();
        while !segments.is_done() {
            found.extend(segments.sieve_next());
        }
        assert_eq!(found, primes(200_000));
        assert_eq!(segments.sieve_next().count(), 0);
        assert!(Segments::new(2).is_done());
    }

    #[test]
    fn short_segments_grow_with_the_root() {
        // 2**10 numbers at a time at first, √high once that is longer (past 2**20), up
        // to 2**15 (past 2**30).
        let n = (1 << 21) + 12_345;
        let mut segments = Segments::with_segment(n, STREAM_SEGMENT);
        let (mut found, mut spans) = (Vec::new(), Vec::new());
        while !segments.is_done() {
            let low = segments.low;
            found.extend(segments.sieve_next());
            spans.push(segments.low - low);
        }
        assert_eq!(found, primes(n));
        assert_eq!(spans[0], STREAM_SEGMENT);
        assert!(spans
            .iter()
            .rev()
            .skip(1)
            .any(|&span| span > STREAM_SEGMENT));
    }

    #[test]
    fn stops() {
        let mut seen = 0;
        let ended = for_each_prime_below(1000, &AtomicBool::new(false), |_| {
            seen += 1;
            if seen == 3 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        });
        assert_eq!((ended, seen), (ControlFlow::Break(()), 3));
        let cancelled = AtomicBool::new(true);
        assert!(for_each_prime_below(1000, &cancelled, |_| ControlFlow::Continue(())).is_break());
    }
}
