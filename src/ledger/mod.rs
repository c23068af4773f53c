//! The spend ledger: what ran, at what price, what was done and why, in
//! PostgreSQL (production) or SQLite (the default).

pub mod accounting;
pub mod connect;
pub mod facts;
pub mod habits;
pub mod journal;
pub mod leadership;
pub mod memory;
pub mod outbox;
pub mod records;
pub mod report;
pub mod service;
pub mod store;
pub mod uses;

pub use connect::{AnyStore, OpenError, connect, open, open_existing};
pub use journal::{Ended, Entry};
pub use memory::MemoryStore;
pub use records::*;
pub use service::{Ledger, Recorded};
pub use store::{LedgerError, PgStore, SqliteStore, Store};
