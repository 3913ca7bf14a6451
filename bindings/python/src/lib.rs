//! `spotex._core`: the thin PyO3 face of spotex-core. Types in, types out; every engine
//! rejection becomes a named Python exception; the GIL is released while the core works.
//!
//! This module only declares the binding's modules and registers their classes,
//! functions and exceptions; each concern lives in its own module.

mod convert;
mod engine;
mod errors;
mod exchange;
mod journal;
mod replay;
mod replicated;
mod terms;
mod workload;
mod writer;

use pyo3::prelude::*;

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add_class::<engine::Engine>()?;
    m.add_class::<exchange::Exchange>()?;
    m.add("RefusedError", py.get_type::<errors::RefusedError>())?;
    m.add_function(wrap_pyfunction!(exchange::count_orders, m)?)?;
    m.add_function(wrap_pyfunction!(exchange::page_size, m)?)?;
    m.add_function(wrap_pyfunction!(exchange::status_codes, m)?)?;
    m.add_class::<convert::Event>()?;
    m.add_class::<engine::Events>()?;
    m.add_class::<terms::PySide>()?;
    m.add_class::<terms::PyOrderType>()?;
    m.add_class::<terms::PyTimeInForce>()?;
    m.add_class::<terms::PyStp>()?;
    m.add_class::<convert::Order>()?;
    m.add_class::<convert::Allocation>()?;
    m.add_class::<convert::Utilisation>()?;
    m.add_function(wrap_pyfunction!(convert::reject_codes, m)?)?;
    m.add_function(wrap_pyfunction!(convert::cancel_reasons, m)?)?;
    m.add_function(wrap_pyfunction!(workload::workload, m)?)?;
    m.add_function(wrap_pyfunction!(workload::flow, m)?)?;
    m.add_class::<journal::JournalWriter>()?;
    m.add_class::<writer::Writer>()?;
    m.add_function(wrap_pyfunction!(journal::read_journal, m)?)?;
    m.add_function(wrap_pyfunction!(replicated::read_jetstream, m)?)?;
    m.add_function(wrap_pyfunction!(replicated::follow_jetstream, m)?)?;
    m.add_function(wrap_pyfunction!(replicated::put_jetstream_snapshot, m)?)?;
    m.add_function(wrap_pyfunction!(replicated::get_jetstream_snapshot, m)?)?;
    m.add_class::<replicated::Lease>()?;
    m.add_function(wrap_pyfunction!(journal::truncate_journal, m)?)?;
    m.add_function(wrap_pyfunction!(replay::replay_journal, m)?)?;
    m.add_function(wrap_pyfunction!(replay::replay_audit, m)?)?;
    m.add_function(wrap_pyfunction!(journal::journal_segments, m)?)?;
    m.add_function(wrap_pyfunction!(journal::journal_bounds, m)?)?;
    m.add_function(wrap_pyfunction!(journal::retire_journal, m)?)?;
    m.add("JournalError", py.get_type::<errors::JournalError>())?;
    m.add("SpotexError", py.get_type::<errors::SpotexError>())?;
    m.add(
        "InvalidOrderError",
        py.get_type::<errors::InvalidOrderError>(),
    )?;
    m.add(
        "PostOnlyWouldCrossError",
        py.get_type::<errors::PostOnlyWouldCrossError>(),
    )?;
    m.add(
        "InvalidProductError",
        py.get_type::<errors::InvalidProductError>(),
    )?;
    m.add(
        "UnknownProductError",
        py.get_type::<errors::UnknownProductError>(),
    )?;
    m.add(
        "ProductStateError",
        py.get_type::<errors::ProductStateError>(),
    )?;
    m.add(
        "UnknownOrderError",
        py.get_type::<errors::UnknownOrderError>(),
    )?;
    m.add("NotOwnerError", py.get_type::<errors::NotOwnerError>())?;
    m.add("CapacityError", py.get_type::<errors::CapacityError>())?;
    m.add("MICROS_PER_HOUR", spotex_core::MICROS_PER_HOUR)?;
    Ok(())
}
