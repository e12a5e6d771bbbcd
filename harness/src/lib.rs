//! ko-matrix: push real images with many releases of a push tool (ko, crane, oras) under many
//! credential setups, and record which combinations work.
//!
//! Words, each with one meaning:
//! - **tool**: the program under test (ko, crane, oras), defined in [`tool`]; nothing outside
//!   its definition names it.
//! - **scenario**: a credential setup and a target registry, from a file under `scenarios/`
//!   ([`scenario`]); its **family** is the first part of its name (`ecr`, `registry`).
//! - **cell**: one tool version × one scenario, named `ko@v0.15.2::ecr/env-session`; run by
//!   [`cell`], its result is a [`result::CellResult`].
//! - **world**: the services a run starts once and every cell shares: registries, the
//!   gateway, the AWS emulator ([`world`]).
//! - **flavour**: how a registry authenticates: anonymous, basic, token or ecr.
//! - **outcome**: what a cell came to (pass, fail, infra-error, skipped, flaky); a failure's
//!   **class** says how it failed (unauthorized, denied, …) ([`outcome`]).
//! - **snapshot**: the committed outcomes, `results/<tool>/<family>.snap` ([`report`]).

pub mod address;
pub mod base_image;
pub mod bisect;
pub mod builtin;
pub mod cache;
pub mod cell;
pub mod config;
pub mod conformance;
pub mod containment;
pub(crate) mod credential_files;
pub mod diagnosis;
pub mod events;
pub mod leak_check;
pub mod located;
pub mod outcome;
pub mod payload;
pub mod process;
pub mod provision;
pub(crate) mod pty;
pub mod report;
pub mod result;
pub mod run;
pub mod scenario;
pub mod schedule;
pub mod services;
pub mod timings;
pub mod tool;
pub mod world;
