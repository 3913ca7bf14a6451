//! Why the exchange refused a request: a stable machine-readable reason (the code in the
//! error's `google.rpc.ErrorInfo`) and a message for people. A refused request changes
//! nothing but the clock (see [`crate::Exchange`]).

use spotex_core::Reject;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub reason: &'static str,
    pub message: String,
}

impl Refusal {
    pub fn new(reason: &'static str, message: impl Into<String>) -> Refusal {
        Refusal {
            reason,
            message: message.into(),
        }
    }
}

impl From<Reject> for Refusal {
    fn from(r: Reject) -> Refusal {
        Refusal::new(r.code(), r.message())
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.reason, self.message)
    }
}

impl std::error::Error for Refusal {}
