//! ko-matrix: push real images with many ko releases under many credential setups, and
//! record which combinations work.

pub mod aws;
pub mod base_image;
pub mod builtin;
pub mod bisect;
pub mod cache;
pub mod cell;
pub mod config;
pub mod gateway;
pub mod outcome;
pub mod pki;
pub mod services;
pub mod world;
pub mod events;
pub mod ko;
pub mod loopback;
pub mod process;
pub mod provision;
pub mod regressions;
pub mod report;
pub mod run;
pub mod scenario;
