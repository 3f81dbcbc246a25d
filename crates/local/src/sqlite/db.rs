//! The store's one connection, on a thread of its own, committing operations in groups.
//!
//! No SQLite call runs on an async runtime thread: each operation is a closure sent to the
//! connection's thread, and its caller awaits the answer. When the thread wakes it takes every
//! operation already waiting (up to [`MAX_GROUP`]) and runs them in one transaction, each
//! inside a savepoint of its own so that one failing rolls back alone. Answers go out after
//! that transaction commits: nobody hears "done" before their change is in the log, and under
//! load one commit (the write of its pages to the write-ahead log) is shared by many callers,
//! which pays for the hop between threads.

use rusqlite::Connection;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc;

/// How many waiting operations one transaction takes at most, so that the first of them is
/// not kept waiting for its answer behind an unbounded group.
const MAX_GROUP: usize = 64;

/// How a call on the connection failed.
#[derive(Debug)]
pub(super) enum StoreError {
    Sqlite(rusqlite::Error),
    /// A stored row that does not decode: no retry will change it.
    Corrupt(String),
    /// The group's transaction did not commit, so this operation's change is not stored.
    Commit(String),
    /// The connection's thread is gone.
    Closed,
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Sqlite(e)
    }
}

/// What an operation leaves to do once its group's outcome is known: answer its caller.
type Answer = Box<dyn FnOnce(Result<(), String>) + Send>;
type Operation = Box<dyn FnOnce(&mut Connection) -> Answer + Send>;

/// A handle on the connection's thread; clones share it, and the thread ends with the last.
#[derive(Clone)]
pub(super) struct Db {
    operations: mpsc::Sender<Operation>,
}

impl Db {
    pub fn start(conn: Connection) -> std::io::Result<Db> {
        let (operations, waiting) = mpsc::channel();
        std::thread::Builder::new()
            .name("sqlite-store".into())
            .spawn(move || serve(conn, waiting))?;
        Ok(Db { operations })
    }

    /// Runs `f` on the connection's thread and answers once its change is committed. `f` makes
    /// its changes inside `conn.savepoint()`, never `conn.transaction()`: it runs inside the
    /// group's transaction.
    pub async fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (answer, answered) = tokio::sync::oneshot::channel();
        let operation: Operation = Box::new(move |conn| {
            let result = f(conn);
            Box::new(move |committed: Result<(), String>| {
                let _ = answer.send(committed.map_err(StoreError::Commit).and(result));
            })
        });
        self.operations
            .send(operation)
            .map_err(|_| StoreError::Closed)?;
        answered.await.map_err(|_| StoreError::Closed)?
    }
}

fn serve(mut conn: Connection, waiting: mpsc::Receiver<Operation>) {
    while let Ok(first) = waiting.recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match waiting.try_recv() {
                Ok(operation) => group.push(operation),
                Err(_) => break,
            }
        }
        // Should the group's transaction not begin, each savepoint is a transaction of its
        // own, as if the operations had come one at a time.
        let grouped = conn.execute_batch("BEGIN IMMEDIATE").is_ok();
        let answers: Vec<Answer> = group
            .into_iter()
            // A panicking operation drops its answer (its caller hears `Closed`) and its
            // savepoint (rolled back), and leaves the thread serving the others.
            .filter_map(|operation| catch_unwind(AssertUnwindSafe(|| operation(&mut conn))).ok())
            .collect();
        let committed = if grouped {
            conn.execute_batch("COMMIT").map_err(|e| e.to_string())
        } else {
            Ok(())
        };
        if committed.is_err() && !conn.is_autocommit() {
            let _ = conn.execute_batch("ROLLBACK");
        }
        for answer in answers {
            answer(committed.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> Db {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t (v INTEGER PRIMARY KEY)")
            .unwrap();
        Db::start(conn).unwrap()
    }

    fn insert(v: i64) -> impl FnOnce(&mut Connection) -> Result<(), StoreError> + Send {
        move |conn| {
            let sp = conn.savepoint()?;
            sp.execute("INSERT INTO t (v) VALUES (?1)", [v])?;
            sp.commit()?;
            Ok(())
        }
    }

    fn count(conn: &mut Connection) -> Result<i64, StoreError> {
        Ok(conn.query_row("SELECT count(*) FROM t", [], |r| r.get(0))?)
    }

    #[tokio::test]
    async fn a_failing_operation_rolls_back_alone_within_its_group() {
        let db = db();
        // Sent together, so the thread finds them waiting and runs them as one group; the
        // duplicate key fails and takes nothing else with it.
        let (a, b, c) = tokio::join!(db.call(insert(1)), db.call(insert(1)), db.call(insert(2)));
        assert!(a.is_ok() && c.is_ok(), "{a:?} {c:?}");
        assert!(matches!(b, Err(StoreError::Sqlite(_))), "{b:?}");
        assert_eq!(db.call(count).await.unwrap(), 2);
    }

    #[tokio::test]
    async fn a_panicking_operation_leaves_the_thread_serving() {
        let db = db();
        let panicked = db
            .call(|conn| {
                let sp = conn.savepoint()?;
                sp.execute("INSERT INTO t (v) VALUES (7)", [])?;
                panic!("an operation's bug");
                #[allow(unreachable_code)]
                Ok(())
            })
            .await;
        assert!(matches!(panicked, Err(StoreError::Closed)), "{panicked:?}");
        db.call(insert(8)).await.unwrap();
        assert_eq!(
            db.call(count).await.unwrap(),
            1,
            "the panicking insert is rolled back"
        );
    }

    #[tokio::test]
    async fn every_one_of_many_concurrent_operations_is_committed() {
        let db = db();
        let results = futures::future::join_all((0..200).map(|v| db.call(insert(v)))).await;
        assert!(results.iter().all(Result::is_ok));
        assert_eq!(db.call(count).await.unwrap(), 200);
    }
}
