//! Flaky cells: cells whose two runs reached different verdicts. A flaky cell passes the
//! matrix test when either run matches its snapshot, so nothing fails on it; this module keeps
//! it visible: the line a run prints per flaky cell, the GitHub annotation the nightly emits,
//! and the cells flaky on consecutive nights across successive matrices (`regressions --history`).

use std::path::Path;

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::outcome::Outcome;
use crate::report::MatrixReport;
use crate::result::CellResult;

/// The flaky cells of `report`, in its order.
pub fn cells(report: &MatrixReport) -> impl Iterator<Item = &CellResult> {
    report.cells.iter().filter(|c| c.outcome == Outcome::Flaky)
}

/// `pass then fail(unauthorized)`: the cell's runs in the order they ran.
pub fn runs(cell: &CellResult) -> String {
    cell.attempts.join(" then ")
}

/// `ko@v0.15.2::ecr/env-session ran pass then fail(unauthorized); logs: a.log, a.retry.log`.
pub fn line(cell: &CellResult) -> String {
    let logs = std::iter::once(cell.log.as_path())
        .chain(cell.retry_log.as_deref())
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ");
    format!("{} ran {}; logs: {logs}", cell.id(), runs(cell))
}

/// What a run prints after its summary line: a line per flaky cell, nothing when there is none.
pub fn listing(report: &MatrixReport) -> String {
    cells(report).map(|c| format!("flaky: {}\n", line(c))).collect()
}

/// A GitHub workflow command: `::warning title=TITLE::MESSAGE`, or `::error …` when `error`.
/// `title` must be plain words (no `:` or `,`, which a property would need escaped).
pub fn workflow_command(error: bool, title: &str, message: &str) -> String {
    let kind = if error { "error" } else { "warning" };
    // The message is the command's data: a newline would end the command early.
    let data = message.replace('%', "%25").replace('\r', "%0D").replace('\n', "%0A");
    format!("::{kind} title={title}::{data}")
}

/// The nightly's annotation for a flaky cell.
pub fn annotation(cell: &CellResult) -> String {
    workflow_command(false, "flaky cell", &format!("{} ran {}", cell.id(), runs(cell)))
}

/// One matrix of a sequence of nights, named by the day it started.
pub struct Night<'a> {
    /// `2026-12-01`; the full `started` where two nights share a day.
    pub name: String,
    pub report: &'a MatrixReport,
}

/// A cell flaky on consecutive nights.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Streak {
    /// `ko@v0.15.2::ecr/env-session`.
    pub cell: String,
    /// The nights, oldest first: two or more.
    pub nights: Vec<String>,
}

impl Streak {
    /// `flaky on 2 nights in a row: ko@v0.15.2::ecr/env-session (2026-11-30, 2026-12-01)`.
    pub fn sentence(&self) -> String {
        format!("flaky on {} nights in a row: {} ({})", self.nights.len(), self.cell, self.nights.join(", "))
    }

    pub fn annotation(&self) -> String {
        workflow_command(
            false,
            &format!("flaky on {} nights in a row", self.nights.len()),
            &format!("{} was flaky on {}", self.cell, self.nights.join(", ")),
        )
    }
}

/// Orders matrices from successive runs by their `started` time, oldest first, and names each
/// by its day. When a file's time does not parse (not RFC 3339), the order given is kept.
/// Two files of one run (the same `started`) are refused: a night counted twice would make
/// any flaky cell of it a streak.
pub fn nights<'a>(reports: &[(&Path, &'a MatrixReport)]) -> Result<Vec<Night<'a>>, String> {
    let mut ordered: Vec<(&Path, &MatrixReport)> = reports.to_vec();
    let times: Option<Vec<OffsetDateTime>> =
        ordered.iter().map(|(_, r)| OffsetDateTime::parse(&r.started, &Rfc3339).ok()).collect();
    if let Some(times) = times {
        let mut keyed: Vec<_> = times.into_iter().zip(ordered).collect();
        keyed.sort_by_key(|(t, _)| *t);
        ordered = keyed.into_iter().map(|(_, r)| r).collect();
    }
    for pair in ordered.windows(2) {
        if pair[0].1.started == pair[1].1.started {
            return Err(format!(
                "{} and {} are the same run (started {}): give each night once",
                pair[0].0.display(),
                pair[1].0.display(),
                pair[0].1.started
            ));
        }
    }
    let day = |r: &MatrixReport| r.started.get(..10).unwrap_or(&r.started).to_string();
    let shared_day = |r: &MatrixReport| ordered.iter().filter(|(_, o)| day(o) == day(r)).count() > 1;
    Ok(ordered
        .iter()
        .map(|(_, r)| Night { name: if shared_day(r) { r.started.clone() } else { day(r) }, report: r })
        .collect())
}

/// Cells flaky on two or more consecutive nights (adjacent in `nights`): the streaks that
/// ended before the newest night, then those still going on it. A night where the cell was
/// not flaky, or did not run, ends its streak.
pub fn streaks(nights: &[Night]) -> Vec<Streak> {
    let mut found: Vec<Streak> = Vec::new();
    let mut open: Vec<Streak> = Vec::new();
    for night in nights {
        let flaky: Vec<String> = cells(night.report).map(CellResult::id).collect();
        let (going_on, ended): (Vec<Streak>, Vec<Streak>) = open.drain(..).partition(|s| flaky.contains(&s.cell));
        found.extend(ended.into_iter().filter(|s| s.nights.len() > 1));
        open = going_on;
        for cell in flaky {
            match open.iter_mut().find(|s| s.cell == cell) {
                Some(streak) => streak.nights.push(night.name.clone()),
                None => open.push(Streak { cell, nights: vec![night.name.clone()] }),
            }
        }
    }
    found.extend(open.into_iter().filter(|s| s.nights.len() > 1));
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::FailClass;
    use crate::report::tests::{cell, report_of};

    fn flaky(scenario: &str, version: &str) -> CellResult {
        CellResult {
            attempts: vec!["pass".into(), "fail(unauthorized)".into()],
            retry_log: Some("/tmp/x.retry.log".into()),
            ..cell(scenario, version, Outcome::Flaky, None)
        }
    }

    fn night(started: &str, cells: Vec<CellResult>) -> MatrixReport {
        MatrixReport { started: started.into(), ..report_of(cells) }
    }

    #[test]
    fn a_flaky_cell_is_listed_and_annotated_with_both_runs() {
        let report = report_of(vec![
            flaky("ecr/env-session", "v0.15.2"),
            cell("ecr/env-session", "v0.15.1", Outcome::Fail, Some(FailClass::Unauthorized)),
        ]);
        assert_eq!(
            listing(&report),
            "flaky: ko@v0.15.2::ecr/env-session ran pass then fail(unauthorized); logs: /tmp/x.log, /tmp/x.retry.log\n"
        );
        assert_eq!(
            annotation(&report.cells[0]),
            "::warning title=flaky cell::ko@v0.15.2::ecr/env-session ran pass then fail(unauthorized)"
        );
        assert_eq!(listing(&report_of(vec![cell("a/b", "v1", Outcome::Pass, None)])), "");
        assert_eq!(workflow_command(true, "t", "100% sure\nsecond"), "::error title=t::100%25 sure%0Asecond");
    }

    #[test]
    fn two_consecutive_flaky_nights_are_a_streak_and_two_apart_are_not() {
        let pass = |scenario| cell(scenario, "v0.15.2", Outcome::Pass, None);
        let (a, b) = ("ecr/env-session", "registry/anonymous");
        let reports = [
            // Given out of order: nights are ordered by when they started.
            night("2026-12-01T03:17:00Z", vec![flaky(a, "v0.15.2"), flaky(b, "v0.15.2")]),
            night("2026-11-29T03:17:00Z", vec![pass(a), flaky(b, "v0.15.2")]),
            night("2026-11-30T03:17:00Z", vec![flaky(a, "v0.15.2"), pass(b)]),
        ];
        let paths = ["c.json", "a.json", "b.json"];
        let given: Vec<(&Path, &MatrixReport)> = paths.iter().map(Path::new).zip(&reports).collect();
        let nights = nights(&given).unwrap();
        let names: Vec<&str> = nights.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names, ["2026-11-29", "2026-11-30", "2026-12-01"]);
        let found = streaks(&nights);
        assert_eq!(
            found.iter().map(Streak::sentence).collect::<Vec<_>>(),
            ["flaky on 2 nights in a row: ko@v0.15.2::ecr/env-session (2026-11-30, 2026-12-01)"],
            "registry/anonymous was flaky on the 29th and the 1st, not in a row"
        );
        assert_eq!(
            found[0].annotation(),
            "::warning title=flaky on 2 nights in a row::ko@v0.15.2::ecr/env-session was flaky on 2026-11-30, 2026-12-01"
        );
    }

    #[test]
    fn nights_of_one_day_keep_their_times_and_one_run_given_twice_is_refused() {
        let (early, late) = (
            night("2026-12-01T03:17:00Z", vec![flaky("a/b", "v1")]),
            night("2026-12-01T15:00:00Z", vec![flaky("a/b", "v1")]),
        );
        let given = [(Path::new("x"), &early), (Path::new("y"), &late)];
        let found = streaks(&nights(&given).unwrap());
        assert_eq!(found[0].nights, ["2026-12-01T03:17:00Z", "2026-12-01T15:00:00Z"]);
        let twice = nights(&[(Path::new("x"), &early), (Path::new("x-copy"), &early)]).err().unwrap();
        assert!(twice.contains("x and x-copy are the same run (started 2026-12-01T03:17:00Z)"), "{twice}");
    }

    #[test]
    fn a_streak_runs_as_long_as_the_nights_and_unparsed_times_keep_the_given_order() {
        let reports: Vec<MatrixReport> =
            ["n1", "n2", "n3"].iter().map(|t| night(t, vec![flaky("a/b", "v1")])).collect();
        let given: Vec<(&Path, &MatrixReport)> = reports.iter().map(|r| (Path::new("f"), r)).collect();
        assert_eq!(
            streaks(&nights(&given).unwrap())[0].sentence(),
            "flaky on 3 nights in a row: ko@v1::a/b (n1, n2, n3)"
        );
    }
}
