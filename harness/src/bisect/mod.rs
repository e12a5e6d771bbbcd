//! Bisecting a tool upgrade down to its cause: which release, which commit, or which
//! dependency upgrade turned a cell red. Every probe runs the real cell (same services,
//! same scenario); a probe that does not build is skipped, never counted as bad.

pub mod cells;
pub mod deps;
pub mod search;

use std::path::Path;
use std::sync::Mutex;
use std::time::Instant;

use serde::Serialize;

use crate::outcome::Outcome;
use crate::scenario::Scenario;
use crate::tool::versions::ReleaseIndex;
use crate::tool::{Tool, ToolBinary, ToolFetcher};
use cells::Cells;
use deps::Upgrade;
use search::Verdict;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Binary search over the releases between good and bad.
    Releases,
    /// Binary search over the commits between good and bad (each a pseudo-version).
    Commits,
    /// The tool's code at good, with subsets of bad's dependency upgrades (ddmin).
    Deps,
}

/// One probe, as reported.
#[derive(Debug, Clone, Serialize)]
pub struct ProbeRecord {
    pub k: usize,
    /// What was built: a version, a commit, or good + a set of upgrades (named when there are
    /// a few, counted when there are many).
    pub what: String,
    /// Deps mode: every upgrade the probe applied (`module@version`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub upgrades: Vec<String>,
    pub verdict: Verdict,
    /// The cell's label, or why there was none.
    pub outcome: String,
    /// The cell's detail (the tool's deciding line, or the harness's fault).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub detail: String,
    pub duration_ms: u64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub build_list: Vec<String>,
}

/// The answer, with the evidence.
#[derive(Debug, Clone, Serialize)]
pub struct BisectReport {
    pub tool: String,
    pub mode: Mode,
    pub scenario: String,
    pub good: String,
    pub bad: String,
    pub good_outcome: String,
    pub bad_outcome: String,
    /// In words: the first bad release/commit, or the minimal set of upgrades.
    pub culprit: String,
    /// Releases/commits: (last good, first bad, skipped between). Deps: the upgrades.
    pub culprit_items: Vec<String>,
    /// Deps mode: modules whose resolved versions separate passing from failing builds
    /// (module, versions in passing builds, versions in failing builds).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub separating_modules: Vec<(String, Vec<String>, Vec<String>)>,
    /// Deps mode, second stage: which modules raised by the culprit upgrades break the cell.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub narrowing: Option<Narrowing>,
    pub probes: Vec<ProbeRecord>,
    pub builds: usize,
    pub wall_ms: u64,
    /// How the probes' world and cells were contained, as matrix.json's `containment`.
    pub containment: String,
}

#[derive(Debug, Clone)]
pub enum BisectEvent {
    /// Probe `k` of about `estimate` starts; `what` is being built and run.
    Probing {
        k: usize,
        estimate: usize,
        what: String,
    },
    Probed(ProbeRecord),
}

pub trait BisectObserver: Send + Sync {
    fn on_bisect_event(&self, event: BisectEvent);
}

#[derive(Debug, thiserror::Error)]
pub enum BisectError {
    #[error("good ({good}) and bad ({bad}) both give `{label}` for {scenario}: nothing to bisect; check the versions and the scenario")]
    NoDifference { good: String, bad: String, label: String, scenario: String },
    #[error("could not get {tool} {version} for an end of the bisection: {reason}")]
    End { tool: &'static str, version: String, reason: String },
    #[error("{tool} {good} with all of {bad}'s dependency upgrades behaves like {good} (`{label}`): the break is in {tool}'s own code, not its dependencies; bisect commits instead")]
    NotInDependencies { tool: &'static str, good: String, bad: String, label: String },
    #[error("listing {what} failed: {reason}")]
    Listing { what: String, reason: String },
    /// An end whose cell has no verdict: the good end's label would be the reference for every
    /// probe, and the bad end's must differ from it.
    #[error("the {end} end ({version}) gives `{label}` for {scenario}, so it cannot anchor the bisection: {}", unreliable_why(.label, .detail))]
    UnreliableEnd { end: &'static str, version: String, label: String, scenario: String, detail: String },
}

impl BisectError {
    /// An unreliable end because the harness failed (infra-error) is the infrastructure's fault.
    pub fn is_infrastructure(&self) -> bool {
        matches!(self, BisectError::UnreliableEnd { label, .. } if label == "infra-error")
    }
}

fn unreliable_why(label: &str, detail: &str) -> String {
    match label {
        "flaky" => format!("its two runs disagree ({detail}); make the cell deterministic or choose other ends"),
        "infra-error" => format!("the harness failed, not the tool ({detail}); fix that and run the bisection again"),
        _ => format!("{detail}; choose a scenario this tool's cell runs"),
    }
}

pub struct Bisect<'a> {
    pub cells: &'a Cells,
    pub fetcher: &'a ToolFetcher,
    pub scenario: &'a Scenario,
    pub observer: &'a dyn BisectObserver,
    probes: Mutex<Vec<ProbeRecord>>,
    good_label: String,
}

impl<'a> Bisect<'a> {
    pub fn new(
        cells: &'a Cells,
        fetcher: &'a ToolFetcher,
        scenario: &'a Scenario,
        observer: &'a dyn BisectObserver,
    ) -> Bisect<'a> {
        Bisect { cells, fetcher, scenario, observer, probes: Mutex::new(Vec::new()), good_label: String::new() }
    }

    /// Runs the cell with `binary` and judges it against the good end's label.
    async fn judge(
        &self,
        what: String,
        upgrades: Vec<String>,
        estimate: usize,
        binary: Result<(ToolBinary, Vec<String>), String>,
    ) -> (Verdict, String) {
        let k = self.probes.lock().expect("probes lock").len() + 1;
        self.observer.on_bisect_event(BisectEvent::Probing { k, estimate, what: what.clone() });
        let started = Instant::now();
        let (verdict, outcome, detail, build_list) = match binary {
            Err(reason) => (
                Verdict::Skip,
                format!("did not build: {}", reason.lines().last().unwrap_or(&reason)),
                String::new(),
                Vec::new(),
            ),
            Ok((binary, build_list)) => {
                let cell = self.cells.run_cell(&binary, self.scenario).await;
                let label = cell.label();
                // Until the good end has run there is no reference: that first run is good by definition.
                let verdict = match cell.outcome {
                    Outcome::Flaky | Outcome::InfraError | Outcome::Skipped => Verdict::Skip,
                    _ if self.good_label.is_empty() || label == self.good_label => Verdict::Good,
                    _ => Verdict::Bad,
                };
                (verdict, label, cell.detail, build_list)
            }
        };
        let record = ProbeRecord {
            k,
            what,
            upgrades,
            verdict,
            outcome: outcome.clone(),
            detail,
            duration_ms: started.elapsed().as_millis() as u64,
            build_list,
        };
        self.probes.lock().expect("probes lock").push(record.clone());
        self.observer.on_bisect_event(BisectEvent::Probed(record));
        (verdict, outcome)
    }

    async fn fetch(&self, version: &str) -> Result<(ToolBinary, Vec<String>), String> {
        self.fetcher.fetch(version).await.map(|binary| (binary, Vec::new())).map_err(|e| e.to_string())
    }

    fn tool(&self) -> &'static Tool {
        self.fetcher.tool()
    }

    /// Runs the two ends and checks that they differ.
    async fn ends(
        &mut self,
        good: &str,
        bad: &str,
        good_binary: Result<(ToolBinary, Vec<String>), String>,
        bad_binary: Result<(ToolBinary, Vec<String>), String>,
        estimate: usize,
    ) -> Result<(String, String), BisectError> {
        let end = |version: &str, reason: String| BisectError::End {
            tool: self.tool().name(),
            version: version.into(),
            reason,
        };
        let good_binary = good_binary.map_err(|e| end(good, e))?;
        let bad_binary = bad_binary.map_err(|e| end(bad, e))?;
        let unreliable = |end, version: &str, label: String| {
            let detail = self.probes.lock().expect("probes lock").last().map(|p| p.detail.clone()).unwrap_or_default();
            BisectError::UnreliableEnd {
                end,
                version: version.into(),
                label,
                scenario: self.scenario.name.clone(),
                detail,
            }
        };
        self.good_label.clear();
        let (verdict, good_label) =
            self.judge(format!("{good} (good end)"), Vec::new(), estimate, Ok(good_binary)).await;
        // Refused before the bad end runs: every verdict would be judged against this label.
        if verdict == Verdict::Skip {
            return Err(unreliable("good", good, good_label));
        }
        self.good_label = good_label.clone();
        let (verdict, bad_label) = self.judge(format!("{bad} (bad end)"), Vec::new(), estimate, Ok(bad_binary)).await;
        if verdict == Verdict::Skip {
            return Err(unreliable("bad", bad, bad_label));
        }
        if verdict != Verdict::Bad {
            return Err(BisectError::NoDifference {
                good: good.into(),
                bad: bad.into(),
                label: good_label,
                scenario: self.scenario.name.clone(),
            });
        }
        Ok((good_label, bad_label))
    }

    fn report(
        &self,
        mode: Mode,
        (good, bad): (&str, &str),
        labels: (String, String),
        culprit: String,
        culprit_items: Vec<String>,
        started: Instant,
    ) -> BisectReport {
        let probes = self.probes.lock().expect("probes lock").clone();
        let builds = probes.iter().filter(|p| !p.outcome.starts_with("did not build")).count();
        let separating_modules = if mode == Mode::Deps {
            let lists = |v: Verdict| {
                probes
                    .iter()
                    .filter(|p| p.verdict == v && !p.build_list.is_empty())
                    .map(|p| p.build_list.clone())
                    .collect::<Vec<_>>()
            };
            deps::separating_modules(&lists(Verdict::Good), &lists(Verdict::Bad))
        } else {
            Vec::new()
        };
        BisectReport {
            tool: self.tool().name().into(),
            mode,
            scenario: self.scenario.name.clone(),
            good: good.into(),
            bad: bad.into(),
            good_outcome: labels.0,
            bad_outcome: labels.1,
            culprit,
            culprit_items,
            separating_modules,
            narrowing: None,
            probes,
            builds,
            wall_ms: started.elapsed().as_millis() as u64,
            containment: self.cells.containment.to_string(),
        }
    }

    /// Binary search over `candidates` strictly between good and bad, fetched by `fetch`.
    pub async fn ordered(
        &mut self,
        mode: Mode,
        good: &str,
        bad: &str,
        candidates: Vec<String>,
    ) -> Result<BisectReport, BisectError> {
        let started = Instant::now();
        let estimate = 2 + (candidates.len() + 1).ilog2() as usize + 1;
        let (g, b) = (self.fetch(good).await, self.fetch(bad).await);
        let labels = self.ends(good, bad, g, b, estimate).await?;
        let mut all = vec![good.to_string()];
        all.extend(candidates);
        all.push(bad.to_string());
        let this = &*self;
        let bracket = search::bisect(all.len(), |i| {
            let version = all[i].clone();
            async move {
                let binary = this.fetch(&version).await;
                this.judge(version, Vec::new(), estimate, binary).await.0
            }
        })
        .await;
        let (last_good, first_bad) = (&all[bracket.last_good], &all[bracket.first_bad]);
        let skipped: Vec<String> = bracket.skipped.iter().map(|i| all[*i].clone()).collect();
        let culprit = if bracket.is_exact() {
            format!(
                "{first_bad} is the first bad {} (the last good is {last_good})",
                if mode == Mode::Commits { "commit" } else { "release" }
            )
        } else {
            format!(
                "the break is after {last_good} and at or before {first_bad}; untestable in between: {}",
                skipped.join(", ")
            )
        };
        let mut items = vec![last_good.clone(), first_bad.clone()];
        items.extend(skipped);
        Ok(self.report(mode, (good, bad), labels, culprit, items, started))
    }

    /// ddmin over the dependency upgrades from good to bad, keeping the tool's code at good.
    /// It needs only the tool's Go module.
    pub async fn dependencies(&mut self, good: &str, bad: &str) -> Result<BisectReport, BisectError> {
        let started = Instant::now();
        let go = self.fetcher.go();
        let tool = self.tool();
        let listing =
            |what: String, e: crate::provision::ProvisionError| BisectError::Listing { what, reason: e.to_string() };
        let good_mod =
            go.resolve(tool.go(), good).await.map_err(|e| listing(format!("{}'s go.mod at good", tool.name()), e))?;
        let bad_mod =
            go.resolve(tool.go(), bad).await.map_err(|e| listing(format!("{}'s go.mod at bad", tool.name()), e))?;
        let upgrades: Vec<Upgrade> =
            deps::upgrades(&deps::requirements(&good_mod.go_mod), &deps::requirements(&bad_mod.go_mod));
        let estimate = 2 + 2 * upgrades.len().max(1).ilog2() as usize * 2;
        let good_version = good_mod.version.clone();
        // good with `targets` (`module@version`) required on top; MVS settles the rest.
        let build = |targets: Vec<String>| {
            let good_version = good_version.clone();
            async move {
                go.install_with_requirements(tool.go(), &good_version, &targets)
                    .await
                    .map(|(installed, list)| (ToolBinary::from_installed(tool, good_version, installed), list))
                    .map_err(|e| e.to_string())
            }
        };
        let targets = |subset: &[usize]| subset.iter().map(|i| upgrades[*i].target()).collect::<Vec<String>>();
        let all: Vec<usize> = (0..upgrades.len()).collect();
        let (none_built, all_built) = (build(Vec::new()).await, build(targets(&all)).await);
        let labels = match self
            .ends(
                &format!("{good} (as built here)"),
                &format!("{good} + all {} upgrades", upgrades.len()),
                none_built,
                all_built,
                estimate,
            )
            .await
        {
            Err(BisectError::NoDifference { label, .. }) => {
                return Err(BisectError::NotInDependencies {
                    tool: tool.name(),
                    good: good.into(),
                    bad: bad.into(),
                    label,
                })
            }
            other => other?,
        };
        let this = &*self;
        let build = &build;
        let culprit_indices = search::ddmin(upgrades.len(), |subset| {
            let names = targets(&subset);
            let what = format!("{good} + {}", upgrade_set(&names));
            let binary = build(names.clone());
            async move { this.judge(what, names, estimate, binary.await).await.0 }
        })
        .await;
        let items: Vec<String> = culprit_indices.iter().map(|i| upgrades[*i].to_string()).collect();
        let culprit = format!(
            "{} of the {} dependency upgrades from {good} to {bad} break the cell: {}",
            items.len(),
            upgrades.len(),
            items.join("; ")
        );
        let culprit_upgrades: Vec<Upgrade> = culprit_indices.iter().map(|i| upgrades[*i].clone()).collect();
        let narrowing = self.narrow(good, &culprit_upgrades, culprit_indices.len() == upgrades.len(), &build).await;
        let mut report = self.report(Mode::Deps, (good, bad), labels, culprit, items, started);
        report.narrowing = narrowing;
        Ok(report)
    }

    /// The second stage of a deps bisection: the direct upgrades in `culprit` break the cell,
    /// but through which of the modules they raise? Takes the build-list delta between the
    /// passing build (good as built here) and the failing one (good + `culprit`), and searches
    /// it with ddmin, raising only the chosen modules from the passing build and letting MVS
    /// settle the rest. None when either build list is missing.
    async fn narrow<B, Fut>(
        &self,
        good: &str,
        culprit: &[Upgrade],
        culprit_is_all: bool,
        build: &B,
    ) -> Option<Narrowing>
    where
        B: Fn(Vec<String>) -> Fut,
        Fut: std::future::Future<Output = Result<(ToolBinary, Vec<String>), String>>,
    {
        let culprit_targets: Vec<String> = culprit.iter().map(Upgrade::target).collect();
        let (passing, failing) = {
            let probes = self.probes.lock().expect("probes lock");
            let passing = probes
                .iter()
                .find(|p| p.verdict == Verdict::Good && p.upgrades.is_empty() && !p.build_list.is_empty())?
                .build_list
                .clone();
            // When every upgrade is needed, the failing build is the bad end (probe 2).
            let failing = probes
                .iter()
                .find(|p| {
                    p.verdict == Verdict::Bad
                        && (same_set(&p.upgrades, &culprit_targets) || (culprit_is_all && p.k == 2))
                        && !p.build_list.is_empty()
                })?
                .build_list
                .clone();
            (passing, failing)
        };
        let estimate = self.probes.lock().expect("probes lock").len() + 1 + 4 * failing.len().max(2).ilog2() as usize;
        let probe = |targets: Vec<String>| async move {
            let what = format!("stage 2: {good} + raise {}", upgrade_set(&targets));
            let binary = build(targets.clone()).await;
            let build_list = binary.as_ref().map(|(_, list)| list.clone()).unwrap_or_default();
            (self.judge(what, targets, estimate, binary).await.0, build_list)
        };
        Some(narrow_delta(&passing, &failing, culprit, probe).await)
    }
}

/// Searches the build-list delta from `passing` to `failing` (less the `culprit` upgrades'
/// own modules) for a minimal set of raised modules that breaks the cell: `probe(targets)` builds the passing build with `targets`
/// (`module@version`) required on top, runs the cell, and gives the verdict and the build
/// list MVS settled on. The whole delta is tried first; if it does not break the cell the
/// answer says so instead of searching.
async fn narrow_delta<P, Fut>(passing: &[String], failing: &[String], culprit: &[Upgrade], mut probe: P) -> Narrowing
where
    P: FnMut(Vec<String>) -> Fut,
    Fut: std::future::Future<Output = (Verdict, Vec<String>)>,
{
    let delta: Vec<Upgrade> = deps::build_list_delta(passing, failing)
        .into_iter()
        .filter(|u| !culprit.iter().any(|c| c.module == u.module))
        .collect();
    let raised: Vec<Upgrade> = delta.iter().filter(|u| u.from.is_some()).cloned().collect();
    let targets = |subset: &[usize]| subset.iter().map(|i| raised[*i].target()).collect::<Vec<String>>();
    let mut build_lists: Vec<(Vec<usize>, Vec<String>)> = Vec::new();
    let everything: Vec<usize> = (0..raised.len()).collect();
    let (verdict, list) = probe(targets(&everything)).await;
    if verdict != Verdict::Bad {
        return Narrowing::not_reproduced(culprit, delta, verdict);
    }
    build_lists.push((everything, list));
    let build_lists = std::sync::Mutex::new(build_lists);
    let probe = std::sync::Mutex::new(probe);
    let minimal = search::ddmin(raised.len(), |subset| {
        let pending = (probe.lock().expect("probe lock"))(targets(&subset));
        let build_lists = &build_lists;
        async move {
            let (verdict, list) = pending.await;
            build_lists.lock().expect("build lists lock").push((subset, list));
            verdict
        }
    })
    .await;
    // The proving build: what MVS raised or added along with the chosen modules.
    let proving = build_lists
        .into_inner()
        .expect("build lists lock")
        .into_iter()
        .find(|(subset, _)| *subset == minimal)
        .map(|(_, list)| list)
        .unwrap_or_default();
    let carried = deps::build_list_delta(passing, &proving);
    Narrowing::found(culprit, delta, minimal.iter().map(|i| raised[*i].clone()).collect(), carried)
}

/// The second stage's answer: which modules, raised by the culprit upgrades, break the cell.
#[derive(Debug, Clone, Serialize)]
pub struct Narrowing {
    /// Modules the failing build has at a higher version than the passing one, other than the
    /// culprit upgrades' own: the search space.
    pub raised: Vec<Upgrade>,
    /// Modules only the failing build has; never searched, MVS brings them with what needs them.
    pub added: Vec<Upgrade>,
    /// A minimal set of raised modules that breaks the cell on its own (none of them can be
    /// left out); empty when raising the whole delta did not reproduce the break.
    pub culprit: Vec<Upgrade>,
    /// What MVS raised or added along with `culprit` in the build that proved it.
    pub carried: Vec<Upgrade>,
    /// The explanation, in a sentence.
    pub chain: String,
}

impl Narrowing {
    fn split(delta: Vec<Upgrade>) -> (Vec<Upgrade>, Vec<Upgrade>) {
        delta.into_iter().partition(|u| u.from.is_some())
    }

    fn not_reproduced(culprit: &[Upgrade], delta: Vec<Upgrade>, verdict: Verdict) -> Narrowing {
        let (raised, added) = Self::split(delta);
        let one = culprit.len() == 1;
        let chain = format!(
            "{} {} {} other module{}, but raising all of them from the passing build does not break the cell ({}): the break is in the code of {} itself, or needs a module only {} adds{}",
            list(culprit),
            if one { "raises" } else { "raise" },
            raised.len(),
            plural(raised.len()),
            if verdict == Verdict::Skip { "that build did not build or run" } else { "it passes" },
            culprit.iter().map(|u| u.module.as_str()).collect::<Vec<_>>().join(", "),
            if one { "it" } else { "they" },
            if added.is_empty() { String::new() } else { format!(" (added: {})", list(&added)) },
        );
        Narrowing { raised, added, culprit: Vec::new(), carried: Vec::new(), chain }
    }

    fn found(
        culprit: &[Upgrade],
        delta: Vec<Upgrade>,
        narrowed: Vec<Upgrade>,
        proving_delta: Vec<Upgrade>,
    ) -> Narrowing {
        let (raised, added) = Self::split(delta);
        let carried: Vec<Upgrade> =
            proving_delta.into_iter().filter(|u| !narrowed.iter().any(|c| c.module == u.module)).collect();
        let (one_cause, one_found) = (culprit.len() == 1, narrowed.len() == 1);
        let involved = |module: &str| narrowed.iter().chain(&carried).any(|u| u.module == module);
        let others = raised.iter().filter(|u| !involved(&u.module)).count();
        let chain = format!(
            "{} {} the cell because {} {}{}; {} alone (with the {} module{} MVS raises or adds for {}) {} it, and none of the other {others} raised module{} is needed",
            list(culprit),
            if one_cause { "breaks" } else { "break" },
            if one_cause { "it raises" } else { "they raise" },
            narrowed.iter().map(Upgrade::to_string).collect::<Vec<_>>().join(" and "),
            if one_found { "" } else { " together" },
            if one_found { "that" } else { "these" },
            carried.len(),
            plural(carried.len()),
            if one_found { "it" } else { "them" },
            if one_found { "breaks" } else { "break" },
            plural(others),
        );
        Narrowing { raised, added, culprit: narrowed, carried, chain }
    }
}

fn list(upgrades: &[Upgrade]) -> String {
    upgrades.iter().map(Upgrade::to_string).collect::<Vec<_>>().join("; ")
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

fn same_set(a: &[String], b: &[String]) -> bool {
    a.len() == b.len() && a.iter().all(|x| b.contains(x))
}

/// A probe's set of upgrades for a line of output: named when there are a few, counted (with
/// the first) when there are many; the whole set goes into bisect.json.
fn upgrade_set(names: &[String]) -> String {
    match names {
        [] => "no upgrades".into(),
        [first, ..] if names.len() > 3 => format!("{} upgrades (first: {first})", names.len()),
        _ => format!("{{{}}}", names.join(", ")),
    }
}

/// `tool`'s releases strictly between `good` and `bad`: `explicit` if given, else its release list.
pub async fn releases_between(
    tool: &Tool,
    good: &str,
    bad: &str,
    explicit: Option<Vec<String>>,
) -> Result<Vec<String>, BisectError> {
    let parse = |v: &str| semver::Version::parse(v.trim_start_matches('v')).ok();
    let (g, b) = (parse(good), parse(bad));
    let between = |v: &semver::Version| g.as_ref().is_some_and(|g| v > g) && b.as_ref().is_some_and(|b| v < b);
    let versions: Vec<semver::Version> = match explicit {
        Some(list) => list.iter().filter_map(|v| parse(v)).collect(),
        None => {
            let go = crate::provision::Go::find(&format!("the {} release list", tool.name())).await.ok();
            ReleaseIndex::fetch(tool, go.as_ref())
                .await
                .map_err(|e| BisectError::Listing { what: format!("{} releases", tool.name()), reason: e.to_string() })?
                .versions
        }
    };
    let mut out: Vec<semver::Version> = versions.into_iter().filter(|v| between(v)).collect();
    out.sort();
    out.dedup();
    Ok(out.iter().map(|v| format!("v{v}")).collect())
}

/// Commits after `good` up to and excluding `bad`, oldest first, from a local clone.
pub fn commits_between(repo: &Path, good: &str, bad: &str) -> Result<Vec<String>, BisectError> {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(["rev-list", "--reverse", "--first-parent", &format!("{good}..{bad}")])
        .output()
        .map_err(|e| BisectError::Listing { what: format!("commits in {}", repo.display()), reason: e.to_string() })?;
    if !out.status.success() {
        return Err(BisectError::Listing {
            what: format!("commits {good}..{bad} in {}", repo.display()),
            reason: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    let mut commits: Vec<String> =
        String::from_utf8_lossy(&out.stdout).lines().map(|c| c[..12.min(c.len())].to_string()).collect();
    commits.pop(); // `bad` itself is the bad end.
    Ok(commits)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn commits_are_listed_oldest_first_without_the_ends() {
        let repo = tempfile::tempdir().unwrap();
        let git = |args: &[&str]| {
            let out = std::process::Command::new("git")
                .arg("-C")
                .arg(repo.path())
                .args(args)
                .env("GIT_AUTHOR_NAME", "t")
                .env("GIT_AUTHOR_EMAIL", "t@t")
                .env("GIT_COMMITTER_NAME", "t")
                .env("GIT_COMMITTER_EMAIL", "t@t")
                .output()
                .unwrap();
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            String::from_utf8_lossy(&out.stdout).trim().to_string()
        };
        git(&["init", "-q"]);
        let mut ids = Vec::new();
        for i in 0..5 {
            git(&["commit", "-q", "--allow-empty", "-m", &format!("c{i}")]);
            ids.push(git(&["rev-parse", "HEAD"]));
            if i == 0 {
                git(&["tag", "v1.0.0"]);
            }
        }
        git(&["tag", "v1.1.0"]);
        let between = commits_between(repo.path(), "v1.0.0", "v1.1.0").unwrap();
        assert_eq!(between, ids[1..4].iter().map(|c| c[..12].to_string()).collect::<Vec<_>>());
        let err = commits_between(repo.path(), "v9", "v1.1.0").unwrap_err().to_string();
        assert!(err.contains("commits v9..v1.1.0"), "{err}");
    }

    #[test]
    fn an_unreliable_end_says_why_and_only_infra_error_is_infrastructure() {
        let end = |label: &str, detail: &str| BisectError::UnreliableEnd {
            end: "good",
            version: "v0.15.1".into(),
            label: label.into(),
            scenario: "ecr/env-session".into(),
            detail: detail.into(),
        };
        let infra = end("infra-error", "base-image registry 127.0.0.1:40123 unreachable");
        assert!(infra.is_infrastructure());
        assert_eq!(
            infra.to_string(),
            "the good end (v0.15.1) gives `infra-error` for ecr/env-session, so it cannot anchor the bisection: the harness failed, not the tool (base-image registry 127.0.0.1:40123 unreachable); fix that and run the bisection again"
        );
        let flaky = end("flaky", "pass, then fail(unauthorized)");
        assert!(!flaky.is_infrastructure());
        assert!(flaky.to_string().ends_with(
            "its two runs disagree (pass, then fail(unauthorized)); make the cell deterministic or choose other ends"
        ));
    }

    #[test]
    fn many_upgrades_are_counted_not_listed() {
        let names: Vec<String> = (1..=30).map(|i| format!("example.com/m{i}@v1.{i}.0")).collect();
        assert_eq!(upgrade_set(&names), "30 upgrades (first: example.com/m1@v1.1.0)");
        assert_eq!(upgrade_set(&names[..2]), "{example.com/m1@v1.1.0, example.com/m2@v1.2.0}");
        assert_eq!(upgrade_set(&[]), "no upgrades");
    }

    /// A small module graph with Go's minimal version selection: each `module@version`
    /// requires others; a build list is the highest version of each module reachable.
    struct Graph(BTreeMap<&'static str, Vec<&'static str>>);

    impl Graph {
        fn ko_1245() -> Graph {
            Graph(BTreeMap::from([
                ("ko@v0.15.1", vec!["cosign@v2.2.1", "sdk@v1.21.2", "ecr@v1.20.2", "smithy@v1.15.0", "yaml@v3.0.0"]),
                ("cosign@v2.2.1", vec!["sdk@v1.21.2"]),
                ("cosign@v2.2.3", vec!["sdk@v1.24.1", "config@v1.26.6", "yaml@v3.0.1", "otel@v1.0.0"]),
                ("sdk@v1.24.1", vec!["smithy@v1.19.0"]),
                ("config@v1.26.6", vec!["sdk@v1.24.1"]),
            ]))
        }

        fn build_list(&self, extra: &[String]) -> Vec<String> {
            let mut chosen: BTreeMap<String, String> = BTreeMap::new();
            let mut todo: Vec<String> = vec!["ko@v0.15.1".into()];
            todo.extend(extra.iter().cloned());
            while let Some(next) = todo.pop() {
                let (module, version) = next.split_once('@').unwrap();
                if chosen.get(module).is_some_and(|have| have.as_str() >= version) {
                    continue;
                }
                chosen.insert(module.into(), version.into());
                todo.extend(self.0.get(next.as_str()).into_iter().flatten().map(|r| r.to_string()));
            }
            chosen.into_iter().filter(|(m, _)| m != "ko").map(|(m, v)| format!("{m} {v}")).collect()
        }
    }

    fn upgrade(module: &str, from: Option<&str>, to: &str) -> Upgrade {
        Upgrade { module: module.into(), from: from.map(Into::into), to: to.into() }
    }

    #[tokio::test]
    async fn the_second_stage_names_the_module_the_culprit_raises() {
        let graph = Graph::ko_1245();
        let cosign = [upgrade("cosign", Some("v2.2.1"), "v2.2.3")];
        let (passing, failing) = (graph.build_list(&[]), graph.build_list(&["cosign@v2.2.3".into()]));
        // The break: the core SDK at v1.24 beside the unchanged service module.
        let breaks = |list: &[String]| list.iter().any(|l| l == "sdk v1.24.1");
        let probes = std::cell::RefCell::new(Vec::new());
        let narrowing = narrow_delta(&passing, &failing, &cosign, |targets| {
            probes.borrow_mut().push(targets.clone());
            let list = graph.build_list(&targets);
            async move { (if breaks(&list) { Verdict::Bad } else { Verdict::Good }, list) }
        })
        .await;
        let names = |u: &[Upgrade]| u.iter().map(Upgrade::to_string).collect::<Vec<_>>();
        assert_eq!(
            names(&narrowing.raised),
            ["sdk v1.21.2 → v1.24.1", "smithy v1.15.0 → v1.19.0", "yaml v3.0.0 → v3.0.1"]
        );
        assert_eq!(
            names(&narrowing.added),
            ["config (new) v1.26.6", "otel (new) v1.0.0"],
            "new modules come with what needs them"
        );
        assert!(narrowing.raised.iter().all(|u| u.module != "cosign"), "the culprit's own module is not searched");
        assert_eq!(names(&narrowing.culprit), ["sdk v1.21.2 → v1.24.1"]);
        assert_eq!(names(&narrowing.carried), ["smithy v1.15.0 → v1.19.0"]);
        assert_eq!(
            narrowing.chain,
            "cosign v2.2.1 → v2.2.3 breaks the cell because it raises sdk v1.21.2 → v1.24.1; that alone (with the 1 module MVS raises or adds for it) breaks it, and none of the other 1 raised module is needed"
        );
        assert_eq!(probes.borrow()[0].len(), 3, "the whole raised delta is tried first: {:?}", probes.borrow());
    }

    #[tokio::test]
    async fn a_break_in_the_culprits_own_code_is_said_not_searched() {
        let graph = Graph::ko_1245();
        let cosign = [upgrade("cosign", Some("v2.2.1"), "v2.2.3")];
        let (passing, failing) = (graph.build_list(&[]), graph.build_list(&["cosign@v2.2.3".into()]));
        let mut probes = 0;
        let narrowing = narrow_delta(&passing, &failing, &cosign, |targets| {
            probes += 1;
            let list = graph.build_list(&targets);
            async move { (if list.iter().any(|l| l == "cosign v2.2.3") { Verdict::Bad } else { Verdict::Good }, list) }
        })
        .await;
        assert_eq!(probes, 1);
        assert!(narrowing.culprit.is_empty());
        assert!(narrowing.chain.contains("does not break the cell (it passes): the break is in the code of cosign itself, or needs a module only it adds (added: config (new) v1.26.6; otel (new) v1.0.0)"), "{}", narrowing.chain);
    }

    #[tokio::test]
    async fn explicit_release_candidates_are_filtered_and_ordered() {
        let list = vec![
            "v0.15.3".into(),
            "v0.15.0".into(),
            "0.15.2".into(),
            "v0.14.1".into(),
            "v0.16.0".into(),
            "junk".into(),
        ];
        assert_eq!(
            releases_between(crate::tool::shorthand(), "v0.14.1", "v0.16.0", Some(list)).await.unwrap(),
            ["v0.15.0", "v0.15.2", "v0.15.3"]
        );
    }
}
