//! The store thread: one SQLite connection on its own OS thread that runs jobs from the async
//! server in batches, one transaction per batch (group commit), and answers each job only
//! after its batch committed. Async tasks never block on SQLite.

use std::path::Path;
use std::sync::mpsc;

use rusqlite::{Connection, TransactionBehavior};
use tokio::sync::oneshot;

use super::StoreError;

/// A job runs inside the batch and returns the reply to send once the batch's fate is known.
type Reply = Box<dyn FnOnce(bool) + Send>;
type Job = Box<dyn FnOnce(&Connection) -> Reply + Send>;

/// The most jobs one transaction takes.
const MAX_BATCH: usize = 1024;

/// A handle to the store thread; cheap to clone.
#[derive(Clone)]
pub struct StoreHandle {
    tx: mpsc::Sender<Job>,
}

impl StoreHandle {
    /// Opens the database and starts the thread.
    pub fn start(data_dir: &Path) -> Result<StoreHandle, StoreError> {
        let conn = super::open(data_dir)?;
        let (tx, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("ivm-store".into())
            .spawn(move || run(conn, rx))
            .map_err(|source| StoreError::DataDir {
                path: data_dir.to_owned(),
                source,
            })?;
        Ok(StoreHandle { tx })
    }

    /// Queues `f` to run on the store thread inside a batch transaction, returning at once;
    /// the receiver yields the result after the batch committed. Jobs run in the order they
    /// were queued.
    pub fn submit<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<oneshot::Receiver<Result<T, StoreError>>, StoreError> {
        let (done_tx, done_rx) = oneshot::channel();
        let job: Job = Box::new(move |conn| {
            let result = f(conn);
            Box::new(move |committed: bool| {
                let _ = done_tx.send(if committed {
                    result
                } else {
                    Err(StoreError::CommitFailed)
                });
            })
        });
        self.tx.send(job).map_err(|_| StoreError::WriterGone)?;
        Ok(done_rx)
    }

    /// Runs `f` on the store thread and waits for its committed result.
    pub async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.submit(f)?.await.map_err(|_| StoreError::WriterGone)?
    }
}

fn run(mut conn: Connection, rx: mpsc::Receiver<Job>) {
    while let Ok(first) = rx.recv() {
        let mut jobs = vec![first];
        while jobs.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        // IMMEDIATE: the write lock is taken (waiting out the busy timeout) before the first
        // job reads. A deferred transaction that reads first and then writes gets SQLITE_BUSY
        // at once, without waiting, when another connection (the fragment index, the SMS
        // outbox, an admin command) committed in between: "database is locked", job lost.
        let (replies, committed): (Vec<Reply>, bool) =
            match conn.transaction_with_behavior(TransactionBehavior::Immediate) {
                Ok(tx) => {
                    let replies = jobs.into_iter().map(|job| job(&tx)).collect();
                    match tx.commit() {
                        Ok(()) => (replies, true),
                        Err(e) => {
                            tracing::error!(error = %e, "store: commit failed");
                            (replies, false)
                        }
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "store: cannot begin a transaction");
                    // Dropping the jobs drops their reply channels: each caller gets an error.
                    drop(jobs);
                    (Vec::new(), false)
                }
            };
        for reply in replies {
            reply(committed);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc as std_mpsc;
    use std::time::Duration;

    use super::*;

    /// A job that reads, then writes, while another connection commits a write in between
    /// (as the fragment index and the SMS outbox do all the time) is not lost.
    #[tokio::test]
    async fn a_job_that_reads_then_writes_survives_another_connection_writing() -> Result<(), StoreError> {
        let dir = tempfile::tempdir().map_err(|e| StoreError::DataDir {
            path: "tmp".into(),
            source: e,
        })?;
        let store = StoreHandle::start(dir.path())?;
        let other = super::super::open(dir.path())?;
        other.execute_batch("CREATE TABLE t (n INTEGER)")?;
        let (go, go_rx) = std_mpsc::channel::<()>();
        let (done, done_rx) = std_mpsc::channel::<()>();
        let writer = std::thread::spawn(move || -> Result<(), rusqlite::Error> {
            if go_rx.recv().is_ok() {
                other.execute("INSERT INTO t VALUES (1)", [])?;
                let _ = done.send(());
            }
            Ok(())
        });
        let n = store
            .run(move |conn| {
                let before: i64 = conn.query_row("SELECT count(*) FROM t", [], |r| r.get(0))?;
                let _ = go.send(());
                // The other connection commits now (deferred) or waits for this batch (immediate).
                let _ = done_rx.recv_timeout(Duration::from_millis(500));
                conn.execute("INSERT INTO t VALUES (2)", [])?;
                Ok(before)
            })
            .await?;
        assert_eq!(n, 0);
        let _ = writer.join();
        let rows: i64 = super::super::open(dir.path())?.query_row("SELECT count(*) FROM t", [], |r| r.get(0))?;
        assert_eq!(rows, 2, "both writes kept");
        Ok(())
    }
}
