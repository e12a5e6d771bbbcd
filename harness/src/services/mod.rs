//! The services a run starts besides the emulated clouds: what to run kept apart from how it
//! runs (a local child process or a container). [`registry::RegistrySpec`] says what a
//! registry is and [`runtime`] starts it; [`binaries`] gets the programs (distribution's
//! registry, Amazon's ECR credential helper); [`localstack`] is the container backend of
//! the ECR scenarios when `ecr.backend = "localstack"`.

pub mod binaries;
pub mod localstack;
pub mod registry;
pub mod runtime;
