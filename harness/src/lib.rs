//! ko-matrix: push real images with many ko releases under many credential setups, and
//! record which combinations work.

pub mod cache;
pub mod config;
pub mod events;
pub mod ko;
pub mod process;
pub mod provision;
