//! The lookup answers one process keeps, bounded by count and by bytes: a Lambda function has
//! the memory it was given and no more, and one answer may be megabytes.

use super::lookup::Answer;
use crate::domain::Millis;
use std::collections::HashMap;
use std::sync::Arc;

/// Answers by cache key, each with its size (its JSON's length, which the resident answer
/// exceeds by a small factor).
pub(crate) struct LocalAnswers {
    entries: HashMap<String, (Arc<Answer>, usize)>,
    bytes: usize,
    max_entries: usize,
    max_bytes: usize,
}

impl LocalAnswers {
    pub(crate) fn new(max_entries: usize, max_bytes: usize) -> LocalAnswers {
        LocalAnswers {
            entries: HashMap::new(),
            bytes: 0,
            max_entries,
            max_bytes,
        }
    }

    /// The answer kept under `key`, expired or not.
    pub(crate) fn get(&self, key: &str) -> Option<&Arc<Answer>> {
        self.entries.get(key).map(|(answer, _)| answer)
    }

    /// The bytes the kept answers take.
    #[cfg(test)]
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Keeps `answer` of `size` bytes under `key`, making room first: the expired go, then
    /// the eighth that expires soonest, until it fits, so a full cache under a stream of new
    /// keys pays for one sort every so many inserts, not a scan per insert. An answer larger
    /// than the whole budget is not kept.
    pub(crate) fn insert(&mut self, key: &str, answer: Arc<Answer>, size: usize, now: Millis) {
        if size > self.max_bytes {
            return;
        }
        self.remove(key);
        if !self.fits(size) {
            self.retain(|a| a.expires_at > now);
        }
        while !self.fits(size) {
            let mut by_expiry: Vec<(Millis, String)> = self
                .entries
                .iter()
                .map(|(k, (a, _))| (a.expires_at, k.clone()))
                .collect();
            by_expiry.sort_unstable();
            let evicted = (self.entries.len() / 8).max(1);
            for (_, k) in by_expiry.into_iter().take(evicted) {
                self.remove(&k);
            }
        }
        self.bytes += size;
        self.entries.insert(key.to_owned(), (answer, size));
    }

    fn fits(&self, size: usize) -> bool {
        self.entries.len() < self.max_entries && self.bytes + size <= self.max_bytes
    }

    fn remove(&mut self, key: &str) {
        if let Some((_, size)) = self.entries.remove(key) {
            self.bytes -= size;
        }
    }

    fn retain(&mut self, keep: impl Fn(&Answer) -> bool) {
        let bytes = &mut self.bytes;
        self.entries.retain(|_, (answer, size)| {
            let kept = keep(answer);
            if !kept {
                *bytes -= *size;
            }
            kept
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(expires_at: Millis) -> Arc<Answer> {
        Arc::new(Answer::new(
            "d".into(),
            Vec::new(),
            Vec::new(),
            0,
            expires_at,
        ))
    }

    #[test]
    fn the_byte_budget_bounds_what_is_kept() {
        let mut cache = LocalAnswers::new(100, 1_000);
        for i in 0..10 {
            cache.insert(&format!("k{i}"), answer(1_000 + i), 300, 0);
            assert!(cache.bytes() <= 1_000, "{} bytes", cache.bytes());
        }
        assert_eq!(cache.len(), 3);
        // The soonest to expire went first: the latest three stay.
        assert!(cache.get("k9").is_some() && cache.get("k7").is_some());
        assert!(cache.get("k0").is_none());
        // Too big for the whole budget: not kept, and nothing evicted for it.
        cache.insert("huge", answer(5_000), 1_001, 0);
        assert!(cache.get("huge").is_none());
        assert_eq!(cache.len(), 3);
        // Replacing a key counts its new size only.
        cache.insert("k9", answer(2_000), 100, 0);
        assert_eq!(cache.bytes(), 700);
    }

    #[test]
    fn expired_answers_make_room_first() {
        let mut cache = LocalAnswers::new(2, 10_000);
        cache.insert("old", answer(10), 1, 0);
        cache.insert("fresh", answer(1_000), 1, 0);
        cache.insert("new", answer(900), 1, 100);
        assert!(cache.get("old").is_none());
        assert!(cache.get("fresh").is_some() && cache.get("new").is_some());
    }
}
