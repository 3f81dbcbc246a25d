//! What every shared lookup cache must do, as one suite each adapter runs (the in-memory
//! fake, SQLite, DynamoDB on the emulator).

use crate::ports::{AnswerCache, CachedAnswer};

fn fresh_key() -> String {
    format!("conformance#{}", uuid::Uuid::new_v4())
}

/// What every shared lookup cache must do: keep an answer under its key until it expires,
/// never hand one out after, and let a newer answer replace an older.
pub async fn check_answer_cache(cache: &dyn AnswerCache) {
    let key = fresh_key();
    let other = fresh_key();
    let now = 1_700_000_000_000;
    assert_eq!(cache.cached_answer(&key, now).await.unwrap(), None);
    let first = CachedAnswer {
        body: "{\"rows\":[1]}".into(),
        stored_at: now,
        expires_at: now + 180_000,
    };
    cache.cache_answer(&key, &first).await.unwrap();
    assert_eq!(
        cache.cached_answer(&key, now + 1).await.unwrap(),
        Some(first.clone())
    );
    assert_eq!(cache.cached_answer(&other, now + 1).await.unwrap(), None);
    // Expired, whether or not the store has removed it yet.
    assert_eq!(
        cache.cached_answer(&key, now + 180_000).await.unwrap(),
        None
    );
    let second = CachedAnswer {
        body: "{\"rows\":[2]}".into(),
        stored_at: now + 200_000,
        expires_at: now + 380_000,
    };
    cache.cache_answer(&key, &second).await.unwrap();
    assert_eq!(
        cache.cached_answer(&key, now + 200_001).await.unwrap(),
        Some(second)
    );
}
