//! Keeps the actors crate's modules in one direction: reads every `crate::…` path
//! in actors/src/**/*.rs and fails on a cycle between modules (a module is a file,
//! or a directory with its files). `crate::Name` re-exported by lib.rs counts as a
//! use of the module that defines it. Test code (`#[cfg(test)]` onwards in a file,
//! and the `testing*` support modules) may use anything.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The module a file belongs to: `room.rs` → `room`, `cluster/redis.rs` → `cluster`.
fn module_of(root: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(root).unwrap_or(file);
    let first = rel
        .components()
        .next()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .unwrap_or_default();
    first.trim_end_matches(".rs").to_string()
}

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("actors/src is readable") {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The code of a file without comments and without its tests.
fn code(text: &str) -> String {
    let text = text.split("#[cfg(test)]").next().unwrap_or_default();
    text.lines()
        .map(|l| l.split("//").next().unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n")
}

fn ident(s: &str) -> &str {
    let end = s
        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    &s[..end]
}

/// The first path segment of each item in `crate::{…}` / `crate::x`, given the text
/// right after `crate::`.
fn heads(after: &str) -> Vec<String> {
    let after = after.trim_start();
    if let Some(group) = after.strip_prefix('{') {
        let mut depth = 0usize;
        let mut items = Vec::new();
        let mut start = 0;
        for (i, c) in group.char_indices() {
            match c {
                '{' => depth += 1,
                '}' if depth == 0 => {
                    items.push(&group[start..i]);
                    break;
                }
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    items.push(&group[start..i]);
                    start = i + 1;
                }
                _ => {}
            }
        }
        items
            .into_iter()
            .map(|i| ident(i.trim()).to_string())
            .filter(|i| !i.is_empty())
            .collect()
    } else {
        vec![ident(after).to_string()]
    }
}

/// lib.rs's `pub use module::{A, B}` / `pub use module::A`: name → module.
fn reexports(lib: &str) -> BTreeMap<String, String> {
    let mut map = BTreeMap::new();
    for stmt in lib.split(';') {
        let Some(rest) = stmt.trim().strip_prefix("pub use ") else {
            continue;
        };
        let Some((module, names)) = rest.split_once("::") else {
            continue;
        };
        let names = names.trim().trim_start_matches('{').trim_end_matches('}');
        for n in names.split(',') {
            let n = ident(n.trim());
            if !n.is_empty() {
                map.insert(n.to_string(), module.trim().to_string());
            }
        }
    }
    map
}

/// Module → the modules it uses.
fn graph(root: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    rust_files(root, &mut files);
    let lib = std::fs::read_to_string(root.join("lib.rs")).expect("lib.rs");
    let names = reexports(&lib);
    let modules: BTreeSet<String> = files
        .iter()
        .map(|f| module_of(root, f))
        .filter(|m| m != "lib")
        .collect();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in &files {
        let from = module_of(root, file);
        if from == "lib" || from.starts_with("testing") || from == "module_graph" {
            continue;
        }
        let text = code(&std::fs::read_to_string(file).expect("source is readable"));
        let edges = graph.entry(from.clone()).or_default();
        for (i, _) in text.match_indices("crate::") {
            for head in heads(&text[i + "crate::".len()..]) {
                let to = if modules.contains(&head) {
                    head
                } else if let Some(m) = names.get(&head) {
                    m.clone()
                } else {
                    continue;
                };
                if to != from {
                    edges.insert(to);
                }
            }
        }
    }
    graph
}

/// A cycle in `graph`, as the modules along it (first = last), if there is one.
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Open,
        Done,
    }
    fn visit(
        m: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        marks: &mut BTreeMap<String, Mark>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        match marks.get(m) {
            Some(Mark::Done) => return None,
            Some(Mark::Open) => {
                let start = path.iter().position(|p| p == m).unwrap_or(0);
                let mut cycle = path[start..].to_vec();
                cycle.push(m.to_string());
                return Some(cycle);
            }
            None => {}
        }
        marks.insert(m.to_string(), Mark::Open);
        path.push(m.to_string());
        for next in graph.get(m).into_iter().flatten() {
            if let Some(c) = visit(next, graph, marks, path) {
                return Some(c);
            }
        }
        path.pop();
        marks.insert(m.to_string(), Mark::Done);
        None
    }
    let mut marks = BTreeMap::new();
    for m in graph.keys() {
        if let Some(c) = visit(m, graph, &mut marks, &mut Vec::new()) {
            return Some(c);
        }
    }
    None
}

#[test]
fn actor_modules_import_in_one_direction() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let graph = graph(&root);
    assert!(
        graph.get("session").is_some_and(|e| e.contains("room")),
        "the scan found session → room; it reads nothing if this fails: {graph:?}"
    );
    if let Some(cycle) = find_cycle(&graph) {
        panic!(
            "import cycle between actors modules: {} (move the shared type to a leaf \
             module such as `messages`, or reach the other actor through a Recipient \
             or the Cluster seam)",
            cycle.join(" → ")
        );
    }
}

#[test]
fn the_cycle_finder_finds_cycles() {
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    g.entry("a".into()).or_default().insert("b".into());
    g.entry("b".into()).or_default().insert("c".into());
    g.entry("c".into()).or_default().insert("a".into());
    g.entry("d".into()).or_default().insert("a".into());
    let cycle = find_cycle(&g).expect("a cycle");
    assert_eq!(cycle.first(), cycle.last());
    assert_eq!(cycle.len(), 4, "{cycle:?}");
    g.get_mut("c").expect("c").clear();
    assert_eq!(find_cycle(&g), None);
}

#[test]
fn paths_are_read_from_use_groups_and_inline_uses() {
    assert_eq!(heads("{a::X, b, c::{D, E}};"), vec!["a", "b", "c"]);
    assert_eq!(heads("room::Post {"), vec!["room"]);
    let names = reexports("pub use bus::Bus;\npub use ids::{AudioId, CallId};");
    assert_eq!(names.get("CallId").map(String::as_str), Some("ids"));
    assert_eq!(names.get("Bus").map(String::as_str), Some("bus"));
}
