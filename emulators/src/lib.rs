//! The emulated clouds ko-matrix runs its cells against, usable by any test that needs a
//! registry to behave like a vendor's: a recording, fault-injecting HTTPS gateway (an HTTP
//! proxy that terminates TLS for the hosts it knows and refuses every other), registry fronts
//! in front of a real CNCF distribution registry for ECR, gcr.io, ghcr.io, ACR and Docker Hub
//! and the self-hosted products Harbor, GitLab's registry, Quay, Artifactory and Nexus,
//! and the identity services their clients talk to (AWS STS, IAM and IMDS; Google's OAuth,
//! STS, IAM Credentials and metadata server; Entra ID and Azure's IMDS; GitHub Actions' OIDC
//! issuer). Each models the real service from its docs or source, cited in `docs/`.
//!
//! It knows nothing of scenarios, tools or runs: a caller opens a gateway [`gateway::Session`]
//! per client under test, a cell at each vendor it routes, and reads the session's
//! [`gateway::Record`] afterwards.
#![warn(unreachable_pub)]

pub mod artifactory;
pub mod aws;
pub mod azure;
pub mod bearer;
pub(crate) mod cells;
pub mod dockerhub;
pub mod gateway;
pub mod github;
pub mod gitlab;
pub mod google;
pub(crate) mod grants;
pub mod harbor;
pub mod loopback;
pub mod nexus;
pub mod pki;
pub mod quay;
pub mod registry_front;
pub mod storage;
pub mod token_server;
pub mod vendor;
pub(crate) mod wire;
