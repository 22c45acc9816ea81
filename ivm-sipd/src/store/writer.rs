//! The store thread: one SQLite connection on its own OS thread that runs jobs from the async
//! server in batches, one transaction per batch (group commit), and answers each job only
//! after its batch committed. Async tasks never block on SQLite.

use std::path::Path;
use std::sync::mpsc;

use rusqlite::Connection;
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
        let (replies, committed): (Vec<Reply>, bool) = match conn.transaction() {
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
