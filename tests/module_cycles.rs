//! No import cycles between the library's top-level modules, in the spirit of
//! go-containerregistry's `depcheck` tests: a module that imports another must not be imported
//! back, directly or through others, so each concern can be read (and moved) on its own.
//!
//! The graph is read from the source: every `crate::<module>` path outside comments and outside
//! `#[cfg(test)]` code is an edge. The emulated clouds are another crate (`emulators/`), which
//! cannot name the harness at all.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// `module → (module it names → the first place it does)`.
type Graph = BTreeMap<String, BTreeMap<String, String>>;

fn source_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("harness/src")
}

/// The top-level module a file belongs to: `aws/sts.rs` → `aws`, `cell.rs` → `cell`.
fn top_module(relative: &Path) -> Option<String> {
    let first = relative.components().next()?.as_os_str().to_str()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    // lib.rs declares the modules; bin/ is another crate, which uses the library from outside.
    (name != "lib" && name != "bin").then(|| name.to_string())
}

fn rust_files(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, found);
        } else if path.extension().is_some_and(|e| e == "rs") {
            found.push(path);
        }
    }
}

/// The modules `text` names as `crate::<module>`, each with its first line number; code after
/// `#[cfg(test)]` and comment lines are left out.
fn named_modules(text: &str) -> BTreeMap<String, usize> {
    let mut named = BTreeMap::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.starts_with("#[cfg(test)]") {
            break;
        }
        if line.starts_with("//") {
            continue;
        }
        for (at, _) in line.match_indices("crate::") {
            let rest = &line[at + "crate::".len()..];
            let name: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            if !name.is_empty() {
                named.entry(name).or_insert(number + 1);
            }
        }
    }
    named
}

fn graph() -> Graph {
    let root = source_root();
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    let mut graph = Graph::new();
    for file in files {
        let relative = file.strip_prefix(&root).unwrap().to_path_buf();
        let Some(module) = top_module(&relative) else { continue };
        let text = std::fs::read_to_string(&file).unwrap();
        let edges = graph.entry(module.clone()).or_default();
        for (named, line) in named_modules(&text) {
            if named != module {
                edges.entry(named).or_insert_with(|| format!("{}:{line}", relative.display()));
            }
        }
    }
    graph
}

/// The strongly connected components with more than one module (Tarjan's algorithm).
fn cycles(graph: &Graph) -> Vec<Vec<String>> {
    struct Walk<'a> {
        graph: &'a Graph,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        found: Vec<Vec<String>>,
    }
    fn visit<'a>(w: &mut Walk<'a>, node: &'a str) {
        let next = w.index.len();
        w.index.insert(node, next);
        w.low.insert(node, next);
        w.stack.push(node);
        w.on_stack.insert(node);
        for target in w.graph.get(node).into_iter().flat_map(|edges| edges.keys()) {
            let target = target.as_str();
            if !w.index.contains_key(target) {
                visit(w, target);
                let low = w.low[node].min(w.low[target]);
                w.low.insert(node, low);
            } else if w.on_stack.contains(target) {
                let low = w.low[node].min(w.index[target]);
                w.low.insert(node, low);
            }
        }
        if w.low[node] == w.index[node] {
            let mut component = Vec::new();
            while let Some(member) = w.stack.pop() {
                w.on_stack.remove(member);
                component.push(member.to_string());
                if member == node {
                    break;
                }
            }
            if component.len() > 1 {
                component.sort();
                w.found.push(component);
            }
        }
    }
    let mut walk = Walk {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        found: Vec::new(),
    };
    for node in graph.keys() {
        if !walk.index.contains_key(node.as_str()) {
            visit(&mut walk, node);
        }
    }
    walk.found.sort();
    walk.found
}

/// Each edge inside `component`, with where it is made: what to change to break the cycle.
fn explain(graph: &Graph, component: &[String]) -> String {
    let mut lines = Vec::new();
    for from in component {
        for (to, place) in &graph[from] {
            if component.contains(to) {
                lines.push(format!("    {from} → {to} ({place})"));
            }
        }
    }
    lines.join("\n")
}

#[test]
fn the_library_modules_import_each_other_in_one_direction() {
    let graph = graph();
    assert!(graph.len() > 10, "read too few modules from {}: {graph:?}", source_root().display());
    let found: Vec<String> =
        cycles(&graph).iter().map(|c| format!("  {}:\n{}", c.join(", "), explain(&graph, c))).collect();
    assert!(found.is_empty(), "import cycles between top-level modules:\n{}", found.join("\n"));
}

#[test]
fn a_cycle_is_found_and_explained() {
    let mut graph = Graph::new();
    for (from, to) in [("a", "b"), ("b", "c"), ("c", "a"), ("c", "d"), ("d", "e")] {
        graph.entry(from.into()).or_default().insert(to.into(), format!("{from}.rs:1"));
    }
    graph.entry("e".into()).or_default();
    assert_eq!(cycles(&graph), [["a", "b", "c"]]);
    assert_eq!(explain(&graph, &cycles(&graph)[0]), "    a → b (a.rs:1)\n    b → c (b.rs:1)\n    c → a (c.rs:1)");
    let text = "use crate::gateway::Record;\n// crate::ignored\nfn f() { crate::aws::x(); }\n#[cfg(test)]\nmod tests { use crate::late; }";
    assert_eq!(
        named_modules(text).into_iter().collect::<Vec<_>>(),
        [("aws".to_string(), 3), ("gateway".to_string(), 1)]
    );
}
