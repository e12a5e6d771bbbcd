//! Conditions users meet in CI, which the gateway injects into one session's traffic: read
//! by the caller (ko-matrix: from a scenario's `[faults]` table).

use serde::Deserialize;

/// Conditions users meet in CI, injected by the gateway into the cell's own traffic. Each
/// injected answer is recorded as evidence (`injected: …`), never as a fault of the emulated world: how the
/// tool copes is the verdict.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Faults {
    /// The first N calls to the ECR API answer `ThrottlingException` (HTTP 400), as AWS does
    /// under its request-rate limit.
    #[serde(default)]
    pub ecr_throttle: u32,
    /// The Nth blob upload (counting `POST …/blobs/uploads/`) fails this way.
    pub blob_upload: Option<UploadFault>,
    /// Every request to these hosts (placeholders expand) waits this long first.
    #[serde(default)]
    pub latency: Vec<Latency>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UploadFault {
    /// 1-based.
    pub nth: u32,
    /// An HTTP status to answer (e.g. 503), or none: the connection is dropped unanswered.
    pub status: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Latency {
    pub host: String,
    #[serde(with = "humantime_duration")]
    pub delay: std::time::Duration,
}

mod humantime_duration {
    use serde::{Deserialize, Deserializer};

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<std::time::Duration, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_duration(&text).map_err(|e| {
            serde::de::Error::custom(format!("`{text}` is not a duration ({e}); write e.g. \"500ms\" or \"2s\""))
        })
    }
}
