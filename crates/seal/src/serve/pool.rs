//! A bounded pool for CPU-bound jobs called from async code: at most `workers` jobs run at once
//! on tokio's blocking threads, at most `queue` more wait, and anything beyond that is turned away
//! at once instead of piling up.
//!
//! Useful for: keeping model work off the async runtime, so that `/health`, `/stats` and the
//! rejection of excess load stay instant while every worker is busy. Not for: cancelling a job
//! that has started (a search cannot be interrupted; a timed-out caller gets its answer dropped,
//! and the job keeps its worker until it ends, so the bound on running jobs always holds).

use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

/// Why a job did not produce a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolError {
    /// Every worker was busy and the queue was full: the job was not accepted.
    Full,
    /// The deadline passed before the job finished (it may have been skipped, or may still run).
    TimedOut,
    /// The job panicked.
    Panicked,
}

/// See the module docs.
#[derive(Debug, Clone)]
pub struct WorkerPool {
    /// Permits for jobs in the pool (running or waiting): `workers + queue`.
    admitted: Arc<Semaphore>,
    /// Permits for running jobs: `workers`.
    running: Arc<Semaphore>,
    workers: usize,
    queue: usize,
}

/// What a finished job returns besides its value.
#[derive(Debug, Clone, Copy)]
pub struct JobTimes {
    /// Time spent waiting for a worker.
    pub queued: Duration,
}

impl WorkerPool {
    /// A pool running at most `workers` (at least 1) jobs, with `queue` more waiting.
    pub fn new(workers: usize, queue: usize) -> Self {
        let workers = workers.max(1);
        WorkerPool {
            admitted: Arc::new(Semaphore::new(workers + queue)),
            running: Arc::new(Semaphore::new(workers)),
            workers,
            queue,
        }
    }

    /// Jobs that may run at once.
    pub fn workers(&self) -> usize {
        self.workers
    }

    /// Jobs that may wait.
    pub fn queue_capacity(&self) -> usize {
        self.queue
    }

    /// Jobs running now.
    pub fn running(&self) -> usize {
        self.workers - self.running.available_permits()
    }

    /// Jobs waiting now.
    pub fn queued(&self) -> usize {
        let in_pool = self.workers + self.queue - self.admitted.available_permits();
        in_pool.saturating_sub(self.running())
    }

    /// Runs `job` on a blocking thread once a worker is free, or fails fast with
    /// [`PoolError::Full`]. A job whose deadline has passed when its worker frees up is skipped;
    /// one that is still running at the deadline is abandoned by the caller (the worker stays
    /// taken until it ends).
    ///
    /// # Errors
    /// [`PoolError`].
    pub async fn run<T, F>(&self, deadline: Instant, job: F) -> Result<(T, JobTimes), PoolError>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let admitted = self.admitted.clone().try_acquire_owned().map_err(|_| PoolError::Full)?;
        let arrived = Instant::now();
        let running = self.running.clone();
        let work = async move {
            // The semaphore is never closed, so acquiring only waits.
            let worker = running.acquire_owned().await.map_err(|_| PoolError::Full)?;
            let queued = arrived.elapsed();
            let handle = tokio::task::spawn_blocking(move || {
                let _permits = (admitted, worker);
                if Instant::now() >= deadline {
                    return None;
                }
                Some(job())
            });
            match handle.await {
                Ok(Some(value)) => Ok((value, JobTimes { queued })),
                Ok(None) => Err(PoolError::TimedOut),
                Err(_) => Err(PoolError::Panicked),
            }
        };
        match tokio::time::timeout_at(deadline.into(), work).await {
            Ok(result) => result,
            Err(_) => Err(PoolError::TimedOut),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::mpsc;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
    }

    fn later(s: u64) -> Instant {
        Instant::now() + Duration::from_secs(s)
    }

    #[test]
    fn at_most_workers_run_and_the_queue_overflows_into_full() {
        let rt = runtime();
        rt.block_on(async {
            let pool = WorkerPool::new(2, 1);
            let (release_tx, release_rx) = mpsc::channel::<()>();
            let release_rx = Arc::new(std::sync::Mutex::new(release_rx));
            let peak = Arc::new(AtomicUsize::new(0));
            let now = Arc::new(AtomicUsize::new(0));
            let mut jobs = Vec::new();
            for i in 0..3 {
                let (pool, rx, peak, now) =
                    (pool.clone(), release_rx.clone(), peak.clone(), now.clone());
                jobs.push(tokio::spawn(async move {
                    pool.run(later(30), move || {
                        let n = now.fetch_add(1, Ordering::SeqCst) + 1;
                        peak.fetch_max(n, Ordering::SeqCst);
                        rx.lock().unwrap().recv().unwrap();
                        now.fetch_sub(1, Ordering::SeqCst);
                        i
                    })
                    .await
                }));
            }
            // Two run, one waits.
            while pool.running() < 2 || pool.queued() < 1 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            assert_eq!((pool.running(), pool.queued()), (2, 1));
            // A fourth is turned away at once.
            assert_eq!(pool.run(later(30), || 99).await.unwrap_err(), PoolError::Full);
            for _ in 0..3 {
                release_tx.send(()).unwrap();
            }
            let mut values: Vec<usize> = Vec::new();
            for j in jobs {
                values.push(j.await.unwrap().unwrap().0);
            }
            values.sort();
            assert_eq!(values, vec![0, 1, 2]);
            assert_eq!(peak.load(Ordering::SeqCst), 2, "never more than `workers` at once");
            assert_eq!((pool.running(), pool.queued()), (0, 0));
            // Capacity is back.
            assert_eq!(pool.run(later(30), || 7).await.unwrap().0, 7);
        });
    }

    #[test]
    fn a_queued_job_past_its_deadline_is_skipped_and_a_slow_one_abandoned() {
        let rt = runtime();
        rt.block_on(async {
            let pool = WorkerPool::new(1, 4);
            let (release_tx, release_rx) = mpsc::channel::<()>();
            let busy = {
                let pool = pool.clone();
                tokio::spawn(async move {
                    pool.run(later(30), move || release_rx.recv().unwrap()).await
                })
            };
            while pool.running() < 1 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            let ran = Arc::new(AtomicUsize::new(0));
            let ran2 = ran.clone();
            let short = Instant::now() + Duration::from_millis(50);
            let r = pool.run(short, move || ran2.fetch_add(1, Ordering::SeqCst)).await;
            assert_eq!(r.unwrap_err(), PoolError::TimedOut);
            // The slow job still holds its worker after its caller gave up.
            assert_eq!(pool.running(), 1);
            release_tx.send(()).unwrap();
            busy.await.unwrap().unwrap();
            tokio::time::sleep(Duration::from_millis(20)).await;
            assert_eq!(ran.load(Ordering::SeqCst), 0, "the expired job never ran");
            assert_eq!((pool.running(), pool.queued()), (0, 0));
        });
    }

    #[test]
    fn a_panicking_job_is_an_error_and_frees_its_worker() {
        let rt = runtime();
        rt.block_on(async {
            let pool = WorkerPool::new(1, 0);
            let r =
                pool.run(later(30), || -> usize { panic!("boom (expected by this test)") }).await;
            assert_eq!(r.unwrap_err(), PoolError::Panicked);
            assert_eq!(pool.run(later(30), || 1).await.unwrap().0, 1);
        });
    }
}
