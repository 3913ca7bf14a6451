//! An order's terms as typed values: `Side.BUY`, `TimeInForce.IOC` and the like. The
//! per-call engine API takes these, or the same words as strings ("buy", "ioc").

// the self-trade-prevention words all start with "cancel" (the contract's), so do its variants
#![allow(clippy::enum_variant_names)]

use pyo3::prelude::*;
use pyo3::types::PyString;

#[pyclass(eq, eq_int, frozen, module = "spotex._core", name = "Side")]
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum PySide {
    #[pyo3(name = "BUY")]
    Buy,
    #[pyo3(name = "SELL")]
    Sell,
}

#[pyclass(eq, eq_int, frozen, module = "spotex._core", name = "OrderType")]
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum PyOrderType {
    #[pyo3(name = "LIMIT")]
    Limit,
    #[pyo3(name = "MARKET")]
    Market,
}

#[pyclass(eq, eq_int, frozen, module = "spotex._core", name = "TimeInForce")]
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum PyTimeInForce {
    #[pyo3(name = "GTC")]
    Gtc,
    #[pyo3(name = "GTD")]
    Gtd,
    #[pyo3(name = "IOC")]
    Ioc,
    #[pyo3(name = "FOK")]
    Fok,
}

#[pyclass(
    eq,
    eq_int,
    frozen,
    module = "spotex._core",
    name = "SelfTradePrevention"
)]
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum PyStp {
    #[pyo3(name = "CANCEL_NEWEST")]
    CancelNewest,
    #[pyo3(name = "CANCEL_OLDEST")]
    CancelOldest,
    #[pyo3(name = "CANCEL_BOTH")]
    CancelBoth,
}

/// The word for a term given as its typed value or as its word ("buy", "ioc", ...). Checks
/// the type of each candidate in turn: nothing is raised on the way.
pub fn word<'a>(term: &'a Bound<'_, PyAny>) -> PyResult<&'a str> {
    if let Ok(s) = term.cast::<PyString>() {
        return s.to_str();
    }
    if let Ok(t) = term.cast::<PySide>() {
        return Ok(match t.get() {
            PySide::Buy => "buy",
            PySide::Sell => "sell",
        });
    }
    if let Ok(t) = term.cast::<PyTimeInForce>() {
        return Ok(match t.get() {
            PyTimeInForce::Gtc => "gtc",
            PyTimeInForce::Gtd => "gtd",
            PyTimeInForce::Ioc => "ioc",
            PyTimeInForce::Fok => "fok",
        });
    }
    if let Ok(t) = term.cast::<PyOrderType>() {
        return Ok(match t.get() {
            PyOrderType::Limit => "limit",
            PyOrderType::Market => "market",
        });
    }
    if let Ok(t) = term.cast::<PyStp>() {
        return Ok(match t.get() {
            PyStp::CancelNewest => "cancel_newest",
            PyStp::CancelOldest => "cancel_oldest",
            PyStp::CancelBoth => "cancel_both",
        });
    }
    Err(pyo3::exceptions::PyTypeError::new_err(format!(
        "an order term is a spotex enum value or its word, not {}",
        term.get_type().name()?
    )))
}
