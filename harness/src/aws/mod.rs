//! The embedded AWS emulator: ECR's API and registry front, reached only through the
//! gateway under the real AWS hostnames, so unmodified clients (ko's built-in ECR helper,
//! `docker-credential-ecr-login`, the AWS CLI, crane) engage exactly as in production.

pub mod sigv4;
