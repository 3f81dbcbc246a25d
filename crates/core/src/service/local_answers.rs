//! The lookup answers one process keeps, bounded by count and by bytes: a Lambda function has
//! the memory it was given and no more, and one answer may be megabytes. An answer's bytes are
//! what it takes in memory, estimated ([`resident_size`]), not its JSON's length: a value held
//! as `serde_json::Value` takes several times the bytes it prints as.

use super::lookup::Answer;
use crate::domain::Millis;
use std::collections::HashMap;
use std::sync::Arc;

/// Answers by cache key, each with its estimated resident size.
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
        // A newer answer replaces the kept one even when it is itself too large to keep.
        self.remove(key);
        if size > self.max_bytes || self.max_entries == 0 {
            return;
        }
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
            if self.entries.is_empty() {
                return;
            }
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

/// What `answer` takes in memory, about: a `Value` for each cell and a vector for each row,
/// and the heap its text (counted by its JSON, `json_len`) takes.
pub(crate) fn resident_size(answer: &Answer, json_len: usize) -> usize {
    let cells: usize = answer.rows.iter().map(Vec::len).sum();
    cells * std::mem::size_of::<serde_json::Value>()
        + answer.rows.len() * std::mem::size_of::<Vec<serde_json::Value>>()
        + json_len
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
        // Too big for the whole budget: not kept, and nothing evicted for it; a newer answer
        // too big to keep under a kept key takes the older one's place (it is not served).
        cache.insert("huge", answer(5_000), 1_001, 0);
        assert!(cache.get("huge").is_none());
        assert_eq!(cache.len(), 3);
        cache.insert("k8", answer(5_000), 1_001, 0);
        assert!(cache.get("k8").is_none());
        assert_eq!(cache.len(), 2);
        cache.insert("k8", answer(1_008), 300, 0);
        // Replacing a key counts its new size only.
        cache.insert("k9", answer(2_000), 100, 0);
        assert_eq!(cache.bytes(), 700);
    }

    #[test]
    fn a_cache_of_no_entries_keeps_nothing_and_returns() {
        let mut cache = LocalAnswers::new(0, 1_000);
        cache.insert("k", answer(10), 1, 0);
        assert_eq!(cache.len(), 0);
    }

    #[test]
    fn an_answer_s_resident_size_counts_its_cells() {
        let rows = vec![vec![serde_json::json!(1), serde_json::json!("ab")]; 10];
        let answer = Answer::new("d".into(), Vec::new(), rows, 0, 1);
        let size = resident_size(&answer, 70);
        assert!(
            size >= 20 * std::mem::size_of::<serde_json::Value>() + 70,
            "{size}"
        );
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
