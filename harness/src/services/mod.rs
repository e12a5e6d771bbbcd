//! Service definitions — what to run — kept apart from how they run (a local child process
//! or a container): [`registry::RegistrySpec`] says what a registry is, [`runtime`] starts it.

pub mod binaries;
pub mod localstack;
pub mod registry;
pub mod runtime;
