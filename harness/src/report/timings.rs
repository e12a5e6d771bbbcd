//! `run --timings`: a run's phases as a table, each with when it began (from the run's start)
//! and how long it took, then the line that says whether results came while tools still built.

use crate::timings::{BuildTiming, Span, Timings};

/// The table of `timings`.
pub fn render(timings: &Timings) -> String {
    let mut rows: Vec<(String, Option<u64>, Option<u64>)> = Vec::new();
    let span = |rows: &mut Vec<(String, Option<u64>, Option<u64>)>, name: String, span: Span| {
        rows.push((name, Some(span.start_ms), Some(span.duration_ms)))
    };
    if let Some(resolve) = timings.resolve {
        span(&mut rows, "resolve".into(), resolve);
    }
    for build in &timings.builds {
        span(&mut rows, format!("{} {} ({})", build.program, build.version, how(build)), build.total);
        let phases = [("download", build.download), ("wait for a build turn", build.wait), ("compile", build.compile)];
        for (name, phase) in phases {
            if let Some(phase) = phase {
                span(&mut rows, format!("  {name}"), phase);
            }
        }
    }
    if let Some(services) = timings.services {
        span(&mut rows, "services".into(), services);
    }
    if let Some(cells) = &timings.cells {
        let all = Span { start_ms: cells.first_start_ms, duration_ms: cells.last_result_ms - cells.first_start_ms };
        span(&mut rows, format!("cells ({})", cells.count), all);
        rows.push(("  first result".into(), Some(cells.first_result_ms), None));
        rows.push(("  last result".into(), Some(cells.last_result_ms), None));
    }
    if let Some(cleanup) = timings.cleanup {
        span(&mut rows, "cleanup".into(), cleanup);
    }
    if let Some(reports) = timings.reports {
        span(&mut rows, "reports".into(), reports);
    }
    rows.push(("run".into(), Some(0), Some(timings.end_ms())));
    let width = rows.iter().map(|(name, _, _)| name.chars().count()).max().unwrap_or(0).max("phase".len());
    let mut out = format!("{:<width$}  {:>9}  {:>9}\n", "phase", "start", "took");
    for (name, start, took) in rows {
        let cell = |ms: Option<u64>| ms.map_or_else(|| "-".to_string(), duration);
        out.push_str(&format!("{name:<width$}  {:>9}  {:>9}\n", cell(start), cell(took)));
    }
    if let Some(line) = overlap(timings) {
        out.push_str(&line);
        out.push('\n');
    }
    out
}

/// When the first cell's result came against when the last build ended: whether results came
/// while tools still built. `None` when either is missing.
pub fn overlap(timings: &Timings) -> Option<String> {
    let first = timings.cells.as_ref()?.first_result_ms;
    let last_build = timings.last_build_end_ms()?;
    let relation = if first < last_build { "before" } else { "after" };
    Some(format!(
        "first cell result at {}, {} {relation} the last build ended (at {})",
        duration(first),
        duration(first.abs_diff(last_build)),
        duration(last_build)
    ))
}

fn how(build: &BuildTiming) -> &str {
    match build.route.as_str() {
        "go" => "built",
        "release" => "downloaded",
        "cache" => "cached",
        other => other,
    }
}

/// `0.4s`, `52.1s`, `3m05.2s`.
fn duration(ms: u64) -> String {
    let seconds = ms as f64 / 1000.0;
    if ms < 60_000 {
        format!("{seconds:.1}s")
    } else {
        format!("{}m{:04.1}s", ms / 60_000, (ms % 60_000) as f64 / 1000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::timings::{CellTimings, CACHED};

    fn span(start_ms: u64, duration_ms: u64) -> Span {
        Span { start_ms, duration_ms }
    }

    fn build(program: &str, version: &str, route: &str, total: Span) -> BuildTiming {
        BuildTiming {
            program: program.into(),
            version: version.into(),
            route: route.into(),
            download: None,
            wait: None,
            compile: None,
            total,
        }
    }

    #[test]
    fn the_table_lists_each_phase_with_its_offset_and_length() {
        let ko = BuildTiming {
            download: Some(span(400, 12_300)),
            wait: Some(span(12_700, 30_100)),
            compile: Some(span(42_800, 142_400)),
            ..build("ko", "v0.15.2", "go", span(400, 184_800))
        };
        let timings = Timings {
            resolve: Some(span(0, 400)),
            builds: vec![build("ko", "v0.15.1", CACHED, span(410, 0)), ko],
            services: Some(span(420, 1_150)),
            cells: Some(CellTimings {
                count: 24,
                first_start_ms: 1_600,
                first_result_ms: 3_050,
                last_result_ms: 200_000,
            }),
            cleanup: Some(span(200_000, 10)),
            reports: Some(span(200_010, 250)),
        };
        assert_eq!(
            render(&timings),
            "\
phase                        start       took
resolve                       0.0s       0.4s
ko v0.15.1 (cached)           0.4s       0.0s
ko v0.15.2 (built)            0.4s    3m04.8s
  download                    0.4s      12.3s
  wait for a build turn      12.7s      30.1s
  compile                    42.8s    2m22.4s
services                      0.4s       1.1s
cells (24)                    1.6s    3m18.4s
  first result                3.0s          -
  last result              3m20.0s          -
cleanup                    3m20.0s       0.0s
reports                    3m20.0s       0.2s
run                           0.0s    3m20.3s
first cell result at 3.0s, 3m02.1s before the last build ended (at 3m05.2s)
"
        );
    }

    #[test]
    fn a_warm_run_has_no_build_to_compare_with() {
        let timings = Timings {
            builds: vec![build("crane", "v0.20.7", CACHED, span(10, 0))],
            cells: Some(CellTimings { count: 1, first_start_ms: 900, first_result_ms: 1_500, last_result_ms: 1_500 }),
            ..Timings::default()
        };
        let table = render(&timings);
        assert!(table.ends_with("\nrun                          0.0s       1.5s\n"), "no overlap line: {table}");
        assert_eq!(overlap(&timings), None, "a cached version is no build");
        let late = Timings { builds: vec![build("crane", "v0.20.7", "go", span(10, 1_000))], ..timings };
        assert_eq!(overlap(&late).unwrap(), "first cell result at 1.5s, 0.5s after the last build ended (at 1.0s)");
    }
}
