//! The release route against a real HTTP server on loopback: real tar.gz archives, real
//! checksums, and the ways a download goes wrong.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use ko_matrix::cache::Cache;
use ko_matrix::events::Silent;
use ko_matrix::tool::release::ReleaseError;
use ko_matrix::tool::{self, FetchError, FetchSettings, Source, ToolFetcher};
use support::{tree, write_release, Behaviour, FileServer};

fn fetcher(cache: &std::path::Path, server: &FileServer) -> ToolFetcher {
    let settings = FetchSettings {
        source: Source::Release,
        release_base_url: Some(server.url()),
        stall_timeout: Duration::from_secs(2),
        ..FetchSettings::default()
    };
    ToolFetcher::new(tool::shorthand(), Cache::at(cache), settings, Arc::new(Silent))
}

fn release_error(result: Result<ko_matrix::tool::ToolBinary, FetchError>) -> ReleaseError {
    match result {
        Err(FetchError::Release { source, .. }) => *source,
        other => panic!("expected a release error, got {other:?}"),
    }
}

#[tokio::test]
async fn downloads_verifies_and_caches() {
    let (site, cache) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    write_release(site.path(), "0.15.2", "0.15.2");
    let server = FileServer::start(site.path(), Behaviour::Serve).await;

    let ko = fetcher(cache.path(), &server).fetch("0.15.2").await.unwrap();
    assert_eq!((ko.version.as_str(), ko.route.as_str(), ko.from_cache), ("v0.15.2", "release", false));
    assert!(ko.origin.ends_with("/v0.15.2/ko_0.15.2_Linux_x86_64.tar.gz"), "{}", ko.origin);
    let out = std::process::Command::new(&ko.path).arg("version").output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "0.15.2");
    assert_eq!(ko.sha256, ko_matrix::cache::sha256_file(&ko.path).unwrap());

    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(ko.path.with_file_name("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["route"], "release");
    assert_eq!(manifest["version"], "v0.15.2");
    assert_eq!(manifest["sha256"], ko.sha256.as_str());

    drop(server); // The second fetch must not need the network.
    let started = Instant::now();
    let again = fetcher(cache.path(), &FileServer::start(tempfile::tempdir().unwrap().path(), Behaviour::Serve).await)
        .fetch("v0.15.2")
        .await
        .unwrap();
    assert!(again.from_cache);
    assert_eq!(again.path, ko.path);
    assert!(started.elapsed() < Duration::from_secs(1), "cache answer took {:?}", started.elapsed());
    assert_eq!(
        tree(cache.path()),
        [
            "tools/ko/.v0.15.2-release.lock",
            "tools/ko/v0.15.2-release/ko",
            "tools/ko/v0.15.2-release/manifest.json",
            "tools/ko/v0.15.2-release/verified"
        ]
    );
}

#[tokio::test]
async fn a_checksum_mismatch_names_both_digests_and_keeps_nothing() {
    let (site, cache) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let archive = write_release(site.path(), "0.15.2", "0.15.2");
    let mut bytes = std::fs::read(&archive).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff; // A tampered asset; checksums.txt still lists the original.
    std::fs::write(&archive, &bytes).unwrap();
    let server = FileServer::start(site.path(), Behaviour::Serve).await;

    let err = release_error(fetcher(cache.path(), &server).fetch("v0.15.2").await);
    let ReleaseError::ChecksumMismatch { url, expected, actual } = &err else { panic!("{err}") };
    assert!(url.ends_with("ko_0.15.2_Linux_x86_64.tar.gz"));
    assert_ne!(expected, actual);
    assert_eq!(actual, &hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes)));
    let message = err.to_string();
    assert!(message.contains(expected.as_str()) && message.contains(actual.as_str()), "{message}");
    assert_eq!(tree(cache.path()), ["tools/ko/.v0.15.2-release.lock"], "nothing but the lock file may remain");
}

#[tokio::test]
async fn a_missing_asset_is_reported_with_its_url() {
    let (site, cache) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    write_release(site.path(), "0.15.2", "0.15.2");
    let server = FileServer::start(site.path(), Behaviour::Serve).await;

    let err = release_error(fetcher(cache.path(), &server).fetch("v0.15.9").await);
    assert!(err.is_missing(), "{err}");
    assert_eq!(
        err.to_string(),
        format!("{}/v0.15.9/checksums.txt is missing (HTTP 404); check the version and release_base_url", server.url())
    );

    // checksums.txt present, archive gone.
    std::fs::remove_file(site.path().join("v0.15.2/ko_0.15.2_Linux_x86_64.tar.gz")).unwrap();
    let err = release_error(fetcher(cache.path(), &server).fetch("v0.15.2").await);
    assert!(err.to_string().contains("/v0.15.2/ko_0.15.2_Linux_x86_64.tar.gz is missing (HTTP 404)"), "{err}");
    assert!(!tree(cache.path()).iter().any(|f| f.ends_with("/ko")));
}

#[tokio::test]
async fn a_truncated_download_is_an_error_and_keeps_nothing() {
    let (site, cache) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    write_release(site.path(), "0.15.2", "0.15.2");
    let server = FileServer::start(site.path(), Behaviour::TruncateArchive(500_000)).await;

    let err = release_error(fetcher(cache.path(), &server).fetch("v0.15.2").await);
    let ReleaseError::Interrupted { url, received, expected, .. } = &err else { panic!("{err}") };
    assert!(url.ends_with(".tar.gz"));
    assert!(*received <= 500_000 && expected.unwrap() > 500_000, "{err}");
    assert!(err.to_string().starts_with(&format!("download of {url} was cut short after")), "{err}");
    assert_eq!(tree(cache.path()), ["tools/ko/.v0.15.2-release.lock"]);
}

#[tokio::test]
async fn a_stalled_download_times_out() {
    let (site, cache) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    write_release(site.path(), "0.15.2", "0.15.2");
    let server = FileServer::start(site.path(), Behaviour::StallArchive(300_000)).await;

    let started = Instant::now();
    let err = release_error(fetcher(cache.path(), &server).fetch("v0.15.2").await);
    assert!(matches!(err, ReleaseError::Interrupted { .. }), "{err}");
    assert!(err.to_string().contains("timed out"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(30), "the 2 s stall timeout took {:?}", started.elapsed());
    assert_eq!(tree(cache.path()), ["tools/ko/.v0.15.2-release.lock"]);
}

#[tokio::test]
async fn a_binary_reporting_another_version_is_refused() {
    let (site, cache) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    write_release(site.path(), "0.15.2", "0.15.1");
    let server = FileServer::start(site.path(), Behaviour::Serve).await;

    let err = fetcher(cache.path(), &server).fetch("v0.15.2").await.unwrap_err().to_string();
    assert!(err.contains("reports version \"0.15.1\" but v0.15.2 was requested"), "{err}");
    assert_eq!(tree(cache.path()), ["tools/ko/.v0.15.2-release.lock"]);
}

#[tokio::test]
async fn auto_prefers_the_release_host_when_it_answers() {
    let (site, cache) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    write_release(site.path(), "0.15.2", "0.15.2");
    let server = FileServer::start(site.path(), Behaviour::Serve).await;
    let settings =
        FetchSettings { source: Source::Auto, release_base_url: Some(server.url()), ..FetchSettings::default() };
    let ko = ToolFetcher::new(tool::shorthand(), Cache::at(cache.path()), settings, Arc::new(Silent))
        .fetch("v0.15.2")
        .await
        .unwrap();
    assert_eq!(ko.route, "release");
}

#[tokio::test]
async fn the_path_route_checks_the_binary_it_is_given() {
    let (site, cache) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    write_release(site.path(), "0.15.2", "0.15.2");
    let server = FileServer::start(site.path(), Behaviour::Serve).await;
    let downloaded = fetcher(cache.path(), &server).fetch("v0.15.2").await.unwrap();

    let settings = |path| FetchSettings { source: Source::Path, path: Some(path), ..FetchSettings::default() };
    let fetch = |version: &'static str| {
        let fetcher = ToolFetcher::new(
            tool::shorthand(),
            Cache::at(cache.path()),
            settings(downloaded.path.clone()),
            Arc::new(Silent),
        );
        async move { fetcher.fetch(version).await }
    };
    let ko = fetch("v0.15.2").await.unwrap();
    assert_eq!((ko.route.as_str(), ko.path.as_path()), ("path", downloaded.path.as_path()));
    let err = fetch("v0.16.0").await.unwrap_err().to_string();
    assert!(err.contains("reports version \"0.15.2\" but v0.16.0 was requested"), "{err}");
}
