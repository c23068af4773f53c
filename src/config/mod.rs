//! Settings and policies: the YAML users write, decoded with every problem
//! reported at once.

pub mod check;
pub mod environment;
pub mod load;
pub mod notify;
pub mod online;
pub mod policy;
pub mod raw;
pub mod schema;
pub mod yaml;
