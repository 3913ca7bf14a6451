//! The exceptions `spotex._core` raises, under the pure-Python `SpotexError`, and the
//! conversions of the core's refusals (an engine `Reject`, an exchange `Refusal`) and of
//! journal failures into them, each carrying its machine-readable `reason`.

use pyo3::create_exception;
use pyo3::prelude::*;

use spotex_core::Reject;
use spotex_exchange::Refusal;

// The base class is pure Python (spotex/errors.py), so the SDK raises the same base
// without loading this extension.
pyo3::import_exception!(spotex.errors, SpotexError);
create_exception!(
    _core,
    InvalidOrderError,
    SpotexError,
    "The order's terms are invalid."
);
create_exception!(
    _core,
    PostOnlyWouldCrossError,
    InvalidOrderError,
    "A post-only order would trade on arrival."
);
create_exception!(
    _core,
    InvalidProductError,
    SpotexError,
    "The product definition is invalid or exists already."
);
create_exception!(_core, UnknownProductError, SpotexError, "No such product.");
create_exception!(
    _core,
    ProductStateError,
    SpotexError,
    "The product is not open, halted, or closed."
);
create_exception!(_core, UnknownOrderError, SpotexError, "No such open order.");
create_exception!(
    _core,
    NotOwnerError,
    SpotexError,
    "The order or cluster belongs to another account."
);
create_exception!(
    _core,
    JournalError,
    SpotexError,
    "The journal or a snapshot is corrupt or unreadable."
);
create_exception!(
    _core,
    CapacityError,
    SpotexError,
    "Capacity or placement terms are invalid or insufficient."
);

pyo3::create_exception!(
    _core,
    RefusedError,
    SpotexError,
    "The exchange refused a request; `reason` is the machine-readable code."
);

pub(crate) fn refused(py: Python<'_>, r: Refusal) -> PyErr {
    let err = RefusedError::new_err(r.message);
    let _ = err.value(py).setattr("reason", r.reason);
    err
}

/// One arm per rejection class; the instance carries the machine-readable `reason`.
pub(crate) fn reject_to_pyerr(py: Python<'_>, r: Reject) -> PyErr {
    use Reject::*;
    let msg = r.message();
    let err = match r {
        InvalidProductId | DuplicateProduct | InvalidTickSize | InvalidLotSize
        | InvalidSchedule => InvalidProductError::new_err(msg),
        UnknownProduct => UnknownProductError::new_err(msg),
        ProductNotOpen | ProductHalted | ProductClosed => ProductStateError::new_err(msg),
        PostOnlyWouldCross => PostOnlyWouldCrossError::new_err(msg),
        NonPositivePrice
        | PriceTooHigh
        | PriceOffTick
        | NonPositiveQuantity
        | QuantityTooLarge
        | QuantityOffLot
        | InvalidTimeInForce
        | InvalidExpiry
        | NothingToAmend
        | InvalidGang
        | QuantityOffGang
        | InvalidBatchRecord
        | InvalidBlock
        | InvalidMinimumFill
        | InvalidGroup
        | InvalidBasket
        | InvalidDisplayQuantity
        | InvalidPlacement
        | InvalidResale
        | IdsInUse
        | InvalidAuction => InvalidOrderError::new_err(msg),
        AuctionInProgress | AuctionNotRunning | AuctionFirst => ProductStateError::new_err(msg),
        UnknownOrder => UnknownOrderError::new_err(msg),
        NotOwner => NotOwnerError::new_err(msg),
        ClusterRequired | ClusterNotAllowed | UnknownCluster | DuplicateCluster
        | InvalidCapacity | ClusterMismatch | OutsideAvailability | InsufficientCapacity => {
            CapacityError::new_err(msg)
        }
    };
    // Exceptions have a __dict__, so this cannot fail in practice; ignore if it did.
    let _ = err.value(py).setattr("reason", r.code());
    err
}

pub(crate) fn invalid(py: Python<'_>, what: &str) -> PyErr {
    let err = InvalidOrderError::new_err(what.to_string());
    let _ = err.value(py).setattr("reason", "INVALID_ARGUMENT");
    err
}

pub(crate) fn journal_error(msg: String) -> PyErr {
    JournalError::new_err(msg)
}
