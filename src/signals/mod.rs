//! Idle signals: whether an instance is in use, read from outside it.
//! A signal that cannot be read counts as active, never idle.

pub mod jupyter;
