//! The search strategies, independent of what a probe is: binary search over an ordered
//! list (releases, commits) and delta debugging (ddmin) over a set of changes (dependency
//! upgrades). Probes that cannot be built are skipped (like `git bisect skip`), never
//! counted as bad.

use std::collections::BTreeMap;

/// What a probe found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// The cell behaves like the good end.
    Good,
    /// The cell behaves like the bad end.
    Bad,
    /// No answer: the probe did not build, or the cell was flaky.
    Skip,
}

/// The outcome of a binary search over `candidates[0] (good) ..= candidates[n-1] (bad)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bracket {
    /// Index of the last candidate known good.
    pub last_good: usize,
    /// Index of the first candidate known bad.
    pub first_bad: usize,
    /// Candidates between them that could not be tested.
    pub skipped: Vec<usize>,
}

impl Bracket {
    /// True when nothing untested lies between the ends: `first_bad` is the culprit.
    pub(crate) fn is_exact(&self) -> bool {
        self.first_bad == self.last_good + 1 || (self.last_good + 1..self.first_bad).all(|i| self.skipped.contains(&i))
    }
}

/// Binary search: `probe(i)` tests candidate `i`; the ends are taken as good and bad.
pub async fn bisect<F, Fut>(count: usize, mut probe: F) -> Bracket
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = Verdict>,
{
    assert!(count >= 2, "bisect needs a good and a bad end");
    let (mut good, mut bad) = (0, count - 1);
    let mut skipped: Vec<usize> = Vec::new();
    loop {
        let untested: Vec<usize> = (good + 1..bad).filter(|i| !skipped.contains(i)).collect();
        if untested.is_empty() {
            skipped.retain(|i| *i > good && *i < bad);
            skipped.sort_unstable();
            return Bracket { last_good: good, first_bad: bad, skipped };
        }
        // The untested candidate nearest the middle.
        let middle = (good + bad) / 2;
        let pick = *untested.iter().min_by_key(|i| i.abs_diff(middle)).expect("untested is not empty");
        match probe(pick).await {
            Verdict::Good => good = pick,
            Verdict::Bad => bad = pick,
            Verdict::Skip => skipped.push(pick),
        }
    }
}

/// ddmin (Zeller & Hildebrandt): a minimal subset of `changes` (indices) for which `test`
/// is Bad, given that all of them together are Bad and none is Good. Results are memoised
/// per subset; Skip counts as "does not fail".
pub(crate) async fn ddmin<F, Fut>(changes: usize, mut test: F) -> Vec<usize>
where
    F: FnMut(Vec<usize>) -> Fut,
    Fut: std::future::Future<Output = Verdict>,
{
    let mut memo: BTreeMap<Vec<usize>, Verdict> = BTreeMap::new();
    let mut current: Vec<usize> = (0..changes).collect();
    let mut n = 2usize;
    while current.len() >= 2 {
        let chunk = current.len().div_ceil(n);
        let parts: Vec<Vec<usize>> = current.chunks(chunk).map(<[usize]>::to_vec).collect();
        let mut reduced = false;
        for part in &parts {
            if fails(&mut memo, &mut test, part.clone()).await {
                current = part.clone();
                n = 2;
                reduced = true;
                break;
            }
        }
        if !reduced && parts.len() > 2 {
            for part in &parts {
                let complement: Vec<usize> = current.iter().copied().filter(|c| !part.contains(c)).collect();
                if fails(&mut memo, &mut test, complement.clone()).await {
                    current = complement;
                    n = (n - 1).max(2);
                    reduced = true;
                    break;
                }
            }
        }
        if !reduced {
            if n >= current.len() {
                break;
            }
            n = (2 * n).min(current.len());
        }
    }
    current
}

async fn fails<F, Fut>(memo: &mut BTreeMap<Vec<usize>, Verdict>, test: &mut F, subset: Vec<usize>) -> bool
where
    F: FnMut(Vec<usize>) -> Fut,
    Fut: std::future::Future<Output = Verdict>,
{
    if let Some(v) = memo.get(&subset) {
        return *v == Verdict::Bad;
    }
    let verdict = test(subset.clone()).await;
    memo.insert(subset, verdict);
    verdict == Verdict::Bad
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
    }

    #[test]
    fn bisect_finds_the_first_bad_release() {
        // Candidates 0..=9; the break is at 6.
        let probed = RefCell::new(Vec::new());
        let bracket = block_on(bisect(10, |i| {
            probed.borrow_mut().push(i);
            async move {
                if i >= 6 {
                    Verdict::Bad
                } else {
                    Verdict::Good
                }
            }
        }));
        assert_eq!(bracket, Bracket { last_good: 5, first_bad: 6, skipped: vec![] });
        assert!(bracket.is_exact());
        assert!(probed.borrow().len() <= 4, "log2 probes: {:?}", probed.borrow());
    }

    #[test]
    fn unbuildable_probes_are_skipped_not_bad() {
        // 5 and 6 do not build; the break is at 6: the answer is "between 4 and 7".
        let bracket = block_on(bisect(10, |i| async move {
            match i {
                5 | 6 => Verdict::Skip,
                i if i >= 6 => Verdict::Bad,
                _ => Verdict::Good,
            }
        }));
        assert_eq!((bracket.last_good, bracket.first_bad), (4, 7));
        assert_eq!(bracket.skipped, vec![5, 6]);
        assert!(bracket.is_exact(), "only skipped candidates lie between: the culprit is among 5, 6, 7");
    }

    #[test]
    fn a_flaky_probe_does_not_mislead() {
        // The break is at 3; probe 2 answers Skip (flaky) once asked.
        let bracket = block_on(bisect(6, |i| async move {
            match i {
                2 => Verdict::Skip,
                i if i >= 3 => Verdict::Bad,
                _ => Verdict::Good,
            }
        }));
        assert_eq!((bracket.last_good, bracket.first_bad, bracket.skipped.clone()), (1, 3, vec![2]));
    }

    #[test]
    fn two_ends_need_no_probe() {
        let bracket = block_on(bisect(2, |_| async { panic!("no probe needed") }));
        assert_eq!(bracket, Bracket { last_good: 0, first_bad: 1, skipped: vec![] });
    }

    #[test]
    fn ddmin_finds_a_single_culprit() {
        let tests = RefCell::new(0);
        let culprit = block_on(ddmin(20, |subset| {
            *tests.borrow_mut() += 1;
            async move {
                if subset.contains(&13) {
                    Verdict::Bad
                } else {
                    Verdict::Good
                }
            }
        }));
        assert_eq!(culprit, vec![13]);
        assert!(*tests.borrow() <= 12, "{} tests", tests.borrow());
    }

    #[test]
    fn ddmin_finds_an_interacting_pair() {
        let culprit = block_on(ddmin(16, |subset| async move {
            if subset.contains(&2) && subset.contains(&11) {
                Verdict::Bad
            } else {
                Verdict::Good
            }
        }));
        assert_eq!(culprit, vec![2, 11]);
    }

    #[test]
    fn ddmin_treats_unbuildable_subsets_as_not_failing() {
        // Subsets holding 5 without 6 do not build (6 is needed by 5); the break needs 5.
        let culprit = block_on(ddmin(8, |subset| async move {
            if subset.contains(&5) && !subset.contains(&6) {
                Verdict::Skip
            } else if subset.contains(&5) {
                Verdict::Bad
            } else {
                Verdict::Good
            }
        }));
        assert_eq!(culprit, vec![5, 6]);
    }
}
