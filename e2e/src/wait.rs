//! Polling with a deadline and a record of what was last seen, so a timeout says why.

use std::future::Future;
use std::time::{Duration, Instant};

use crate::{Error, Result};

/// One observation while polling.
#[derive(Debug)]
pub enum Poll<T> {
    /// The wait is over.
    Ready(T),
    /// Not yet; the text describes the current state for the timeout message.
    Pending(String),
}

/// Calls `check` every `every` until it returns [`Poll::Ready`] or `timeout` has passed.
///
/// Errors from `check` count as "not yet" (the API server may blip during a rollout) and are
/// reported in the timeout message if they were the last thing seen.
pub async fn poll_until<T, F, Fut>(
    what: &str,
    timeout: Duration,
    every: Duration,
    mut check: F,
) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Poll<T>>>,
{
    let started = Instant::now();
    loop {
        let last = match check().await {
            Ok(Poll::Ready(v)) => return Ok(v),
            Ok(Poll::Pending(state)) => state,
            Err(e) => format!("error: {e}"),
        };
        let elapsed = started.elapsed();
        if elapsed >= timeout {
            return Err(Error::Timeout {
                what: what.to_string(),
                after: timeout,
                last,
            });
        }
        tokio::time::sleep(every.min(timeout - elapsed)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn returns_the_ready_value() {
        let mut n = 0;
        let v = poll_until(
            "n to reach 3",
            Duration::from_secs(5),
            Duration::ZERO,
            || {
                n += 1;
                let now = n;
                async move {
                    Ok(if now >= 3 {
                        Poll::Ready(now)
                    } else {
                        Poll::Pending(format!("n={now}"))
                    })
                }
            },
        )
        .await
        .unwrap();
        assert_eq!(v, 3);
    }

    #[tokio::test]
    async fn timeout_reports_the_last_observation() {
        let err = poll_until(
            "the impossible",
            Duration::from_millis(30),
            Duration::from_millis(5),
            || async { Ok::<_, Error>(Poll::<()>::Pending("still waiting".into())) },
        )
        .await
        .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("the impossible"), "{msg}");
        assert!(msg.contains("last observed: still waiting"), "{msg}");
    }

    #[tokio::test]
    async fn errors_are_retried_and_reported() {
        let mut calls = 0;
        let err = poll_until(
            "a flaky API",
            Duration::from_millis(30),
            Duration::from_millis(5),
            || {
                calls += 1;
                async { Err::<Poll<()>, _>(crate::failed("connection reset")) }
            },
        )
        .await
        .unwrap_err();
        assert!(calls > 1, "retried {calls} times");
        assert!(err.to_string().contains("error: connection reset"), "{err}");
    }
}
