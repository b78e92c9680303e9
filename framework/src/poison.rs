//! A panic in user code poisons the worker.
//!
//! Every call into user code (an operator's `process` and hooks, a codec) runs inside
//! [`guard`]: a panic is caught where it happened, turned into [`Error::Panicked`] naming
//! the operator and the record, and remembered in the worker's [`Poison`]. From then on no
//! code path commits — the commit cycle and the revoke callback check it — even when an
//! operator upstream swallowed the error its collector returned. The worker aborts the
//! open transaction before anything else runs and stops with the panic.

use crate::error::{Error, Result};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// The first panic caught in a worker's user code, if any.
#[derive(Debug, Default)]
pub(crate) struct Poison {
    set: AtomicBool,
    first: Mutex<Option<(String, String, String)>>,
}

impl Poison {
    /// Whether a panic was caught (one atomic load: cheap enough for every record).
    pub(crate) fn is_set(&self) -> bool {
        self.set.load(Ordering::Acquire)
    }

    /// The first panic as an error, if one was caught.
    pub(crate) fn error(&self) -> Option<Error> {
        if !self.is_set() {
            return None;
        }
        let first = self.first.lock().unwrap_or_else(|p| p.into_inner());
        first
            .as_ref()
            .map(|(operator, at, message)| Error::Panicked {
                operator: operator.clone(),
                at: at.clone(),
                message: message.clone(),
            })
    }

    /// Remembers a panic (the first one wins) and returns it as an error.
    pub(crate) fn record(&self, operator: &str, at: String, message: String) -> Error {
        let mut first = self.first.lock().unwrap_or_else(|p| p.into_inner());
        if first.is_none() {
            tracing::error!(operator, %at, %message, "user code panicked: aborting, nothing of this cycle commits");
            *first = Some((operator.to_string(), at.clone(), message.clone()));
        }
        self.set.store(true, Ordering::Release);
        Error::Panicked {
            operator: operator.to_string(),
            at,
            message,
        }
    }
}

/// Runs user code `f`; a panic becomes [`Error::Panicked`] and poisons the worker.
/// `whose()` names the code and where it ran (`(operator, at)`), only after a panic.
pub(crate) fn guard<T>(
    poison: &Poison,
    f: impl FnOnce() -> Result<T>,
    whose: impl FnOnce() -> (String, String),
) -> Result<T> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(result) => result,
        Err(payload) => {
            let (operator, at) = whose();
            Err(poison.record(&operator, at, message(payload.as_ref())))
        }
    }
}

/// The text of a panic payload.
pub(crate) fn message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_becomes_an_error_and_poisons() {
        let poison = Poison::default();
        assert!(poison.error().is_none());
        let whose = |op: &str, at: &str| (op.to_string(), at.to_string());
        let ok: Result<u8> = guard(&poison, || Ok(1), || whose("op", "here"));
        assert_eq!(ok.unwrap(), 1);
        assert!(!poison.is_set());
        let err = guard::<()>(
            &poison,
            || panic!("boom {}", 42),
            || whose("map-1", "on record in/0@7"),
        )
        .unwrap_err();
        assert!(poison.is_set());
        let text = err.to_string();
        assert!(
            text.starts_with("operator `map-1` panicked on record in/0@7: boom 42;"),
            "{text}"
        );
        // A second panic does not replace the first.
        let _ = guard::<()>(&poison, || panic!("second"), || whose("other", "later"));
        assert_eq!(poison.error().unwrap().to_string(), text);
    }
}
