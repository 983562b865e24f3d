//! A call that outlives its client without a task of its own while the client waits.
//!
//! A call must finish even when its client goes away (times out, disconnects): its retries
//! carry the ClientToken and the dedupe entry must be released for the client's re-send. The
//! simple way, a `tokio::spawn` per call, costs a task allocation and two cross-task wake-ups
//! on every call (≈ 80–100 µs of latency at low load on the benchmark machine). [`Detach`] runs
//! the call on the connection's own task instead, and only when that task drops it before the
//! call finished (hyper drops the service future when the client leaves) does it move the
//! unfinished call to a task of its own, where it runs to the end.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use futures_util::FutureExt;

type Boxed<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// See the module docs. Yields `Err` with the panic message if the call panicked.
pub struct Detach<T: Send + 'static> {
    fut: Option<Boxed<Result<T, String>>>,
}

impl<T: Send + 'static> std::fmt::Debug for Detach<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Detach")
            .field("running", &self.fut.is_some())
            .finish()
    }
}

impl<T: Send + 'static> Detach<T> {
    /// Wraps `fut`; it starts when first polled.
    pub fn new(fut: impl Future<Output = T> + Send + 'static) -> Self {
        let fut = AssertUnwindSafe(fut).catch_unwind().map(|r| {
            r.map_err(|p| {
                p.downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| p.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "panic".to_owned())
            })
        });
        Detach {
            fut: Some(Box::pin(fut)),
        }
    }
}

impl<T: Send + 'static> Future for Detach<T> {
    type Output = Result<T, String>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let Some(fut) = self.fut.as_mut() else {
            // Polled again after it finished: it has nothing more to give.
            return Poll::Pending;
        };
        let out = ready!(fut.as_mut().poll(cx));
        self.fut = None;
        Poll::Ready(out)
    }
}

impl<T: Send + 'static> Drop for Detach<T> {
    fn drop(&mut self) {
        let Some(fut) = self.fut.take() else {
            return;
        };
        // Outside a runtime (it is shutting down) there is nowhere to finish the call; it is
        // dropped, as a spawned task would be.
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                if let Err(p) = fut.await {
                    tracing::error!(panic = %p, "a detached call panicked");
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    #[tokio::test]
    async fn runs_inline_when_awaited() {
        assert_eq!(Detach::new(async { 7 }).await, Ok(7));
    }

    #[tokio::test]
    async fn finishes_on_its_own_task_when_dropped_early() {
        let done = Arc::new(AtomicBool::new(false));
        let d = done.clone();
        let (started_tx, started_rx) = tokio::sync::oneshot::channel();
        let call = Detach::new(async move {
            let _ = started_tx.send(());
            tokio::time::sleep(Duration::from_millis(50)).await;
            d.store(true, Ordering::SeqCst);
        });
        // The client waits until the call is under way, then leaves.
        let waiting = tokio::spawn(call);
        started_rx.await.unwrap();
        waiting.abort();
        assert!(waiting.await.unwrap_err().is_cancelled());
        assert!(!done.load(Ordering::SeqCst));
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(
            done.load(Ordering::SeqCst),
            "the call finished after its client left"
        );
    }

    #[tokio::test]
    async fn a_panic_becomes_an_error() {
        let r = Detach::new(async {
            if true {
                panic!("boom");
            }
        })
        .await;
        assert_eq!(r, Err("boom".to_owned()));
    }
}
