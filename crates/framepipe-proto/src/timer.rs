//! One table of deadlines per connection (SPEC §8.2).
//!
//! A connection core never reads a clock: its driver passes `now` into every call. Each deadline the
//! core keeps is a named entry of one [`TimerTable`]; the driver sleeps until [`TimerTable::next`]
//! and then calls the core's `handle_timeout(now)`, which asks the table which entries have expired.

use std::fmt;
use std::marker::PhantomData;
use std::time::{Duration, Instant};

/// The names of a core's timers: an enum whose variants index the table.
pub trait Timer: Copy + Eq + fmt::Debug + 'static {
    /// Every timer, in the order the table reports expired ones.
    const ALL: &'static [Self];

    /// The timer's slot, `0..ALL.len()`.
    fn index(self) -> usize;
}

/// Every deadline of one connection, by name. `N` is the number of timers (`T::ALL.len()`).
///
/// Costs nothing to keep: an array of `N` optional instants, no allocation, no clock.
#[derive(Clone, PartialEq, Eq)]
pub struct TimerTable<T, const N: usize> {
    at: [Option<Instant>; N],
    _names: PhantomData<T>,
}

impl<T: Timer, const N: usize> Default for TimerTable<T, N> {
    fn default() -> Self {
        debug_assert_eq!(T::ALL.len(), N, "a slot per timer");
        TimerTable {
            at: [None; N],
            _names: PhantomData,
        }
    }
}

impl<T: Timer, const N: usize> fmt::Debug for TimerTable<T, N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut map = f.debug_map();
        for &t in T::ALL {
            if let Some(at) = self.at[t.index()] {
                map.entry(&t, &at);
            }
        }
        map.finish()
    }
}

impl<T: Timer, const N: usize> TimerTable<T, N> {
    /// Arms `timer` to expire at `at`, replacing any earlier setting.
    pub fn set(&mut self, timer: T, at: Instant) {
        self.at[timer.index()] = Some(at);
    }

    /// Arms `timer` at `at` unless it is already armed.
    pub fn set_if_unset(&mut self, timer: T, at: Instant) {
        self.at[timer.index()].get_or_insert(at);
    }

    /// Disarms `timer`.
    pub fn stop(&mut self, timer: T) {
        self.at[timer.index()] = None;
    }

    /// When `timer` expires, if it is armed.
    pub fn get(&self, timer: T) -> Option<Instant> {
        self.at[timer.index()]
    }

    /// Moves an armed `timer` later by `by` (time that must not count against it).
    pub fn extend(&mut self, timer: T, by: Duration) {
        if let Some(at) = &mut self.at[timer.index()] {
            *at += by;
        }
    }

    /// The earliest armed deadline: when the driver must call `handle_timeout` next.
    pub fn next(&self) -> Option<Instant> {
        self.at.iter().flatten().min().copied()
    }

    /// An armed timer whose deadline is at or before `now`, disarmed as it is returned; `None` once
    /// none has expired. Timers come out in `T::ALL` order, whatever their deadlines.
    pub fn take_expired(&mut self, now: Instant) -> Option<T> {
        let t = T::ALL
            .iter()
            .copied()
            .find(|t| self.at[t.index()].is_some_and(|at| at <= now))?;
        self.at[t.index()] = None;
        Some(t)
    }

    /// Disarms every timer.
    pub fn clear(&mut self) {
        self.at = [None; N];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum T {
        A,
        B,
    }

    impl Timer for T {
        const ALL: &'static [T] = &[T::A, T::B];
        fn index(self) -> usize {
            self as usize
        }
    }

    #[test]
    fn the_earliest_deadline_is_next_and_expired_timers_come_out_once() {
        let t0 = Instant::now();
        let mut table = TimerTable::<T, 2>::default();
        assert_eq!(table.next(), None);
        table.set(T::B, t0 + Duration::from_secs(2));
        table.set(T::A, t0 + Duration::from_secs(5));
        assert_eq!(table.next(), Some(t0 + Duration::from_secs(2)));
        assert_eq!(table.take_expired(t0 + Duration::from_secs(1)), None);
        assert_eq!(table.take_expired(t0 + Duration::from_secs(2)), Some(T::B));
        assert_eq!(table.take_expired(t0 + Duration::from_secs(2)), None);
        table.extend(T::A, Duration::from_secs(1));
        table.set_if_unset(T::A, t0);
        assert_eq!(table.get(T::A), Some(t0 + Duration::from_secs(6)));
        table.stop(T::A);
        assert_eq!(table.next(), None);
    }
}
