//! The shape of `src/`, checked: no module imports a layer above its own, and no two modules
//! depend on each other in a cycle (see docs/ARCHITECTURE.md). A module's paths are read from
//! its source: `crate::…`, `super::…` and paths through its own child modules; a module using
//! its own ancestor (`super::Thing` defined in `mod.rs`) is containment, not a dependency.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Layers, bottom to top, by top-level module: each may use its own and lower layers only.
const LAYERS: &[&[&str]] = &[
    &["config", "auth"],
    &["store", "queue", "telemetry", "redis_conn", "state"],
    &["clients", "sandbox"],
    &["jobs"],
    &["webhooks", "api", "dashboard", "scheduler"],
    &[
        "router", "startup", "worker", "cli", "demo", "doctor", "chaos",
    ],
];

fn layer(module: &str) -> Option<usize> {
    let top = module.split("::").next()?;
    LAYERS.iter().position(|names| names.contains(&top))
}

/// Every `.rs` file under `src`: its path relative to `src` and its text.
fn rust_files(src: &Path) -> Vec<(std::path::PathBuf, String)> {
    let mut found = Vec::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read src") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).expect("read");
                let relative = path.strip_prefix(src).expect("under src").to_path_buf();
                found.push((relative, text));
            }
        }
    }
    found
}

/// Every module of `src/` (`jobs::registry`) and the text of its file, comments removed.
fn modules(src: &Path) -> BTreeMap<String, String> {
    let mut found = BTreeMap::new();
    for (relative, text) in rust_files(src) {
        let mut parts: Vec<String> = relative
            .iter()
            .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_owned())
            .collect();
        if parts.last().is_some_and(|p| p == "mod") {
            parts.pop();
        }
        if parts == ["lib"] || parts == ["main"] {
            continue;
        }
        found.insert(parts.join("::"), without_comments(&text));
    }
    found
}

fn without_comments(text: &str) -> String {
    text.lines()
        .map(|line| {
            let trimmed = line.trim_start();
            if trimmed.starts_with("//") {
                ""
            } else {
                line.split(" // ").next().unwrap_or("")
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The paths a module's text names, made absolute (`jobs::registry::JobError`).
fn paths(module: &str, text: &str, children: &BTreeSet<String>) -> Vec<String> {
    let mut out = Vec::new();
    let bytes: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < bytes.len() {
        let starts_word = i == 0 || !(bytes[i - 1].is_alphanumeric() || bytes[i - 1] == '_');
        if !starts_word {
            i += 1;
            continue;
        }
        let rest: String = bytes[i..bytes.len().min(i + 200)].iter().collect();
        let (base, skip) = if let Some(after) = rest.strip_prefix("crate::") {
            (Vec::new(), rest.len() - after.len())
        } else if rest.starts_with("super::") {
            let mut base: Vec<&str> = module.split("::").collect();
            let mut consumed = 0;
            while rest[consumed..].starts_with("super::") {
                base.pop();
                consumed += "super::".len();
            }
            (base.into_iter().map(str::to_owned).collect(), consumed)
        } else if let Some(child) = children
            .iter()
            .find(|c| rest.starts_with(&format!("{c}::")))
        {
            let base: Vec<String> = module.split("::").map(str::to_owned).collect();
            let _ = child;
            (base, 0)
        } else {
            i += 1;
            continue;
        };
        let tail = &rest[skip..];
        for name in expand(tail) {
            let mut full = base.clone();
            full.extend(name.split("::").map(str::to_owned));
            out.push(full.join("::"));
        }
        i += skip.max(1);
    }
    out
}

/// `a::b::C` → `[a::b::C]`; `{a, b::{c, d}}` → `[a, b::c, b::d]` (one level of braces each).
fn expand(tail: &str) -> Vec<String> {
    let ident: String = tail
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
        .collect();
    let ident = ident.trim_end_matches(':').to_owned();
    let after = &tail[ident.len()..];
    let after = after.trim_start_matches(':');
    if tail[ident.len()..].starts_with("::{") || (ident.is_empty() && after.starts_with('{')) {
        let inner = group(after);
        let prefix = if ident.is_empty() {
            String::new()
        } else {
            format!("{ident}::")
        };
        return split_top(&inner)
            .into_iter()
            .flat_map(|part| expand(part.trim()))
            .map(|p| format!("{prefix}{p}"))
            .collect();
    }
    if ident.is_empty() {
        Vec::new()
    } else {
        vec![ident]
    }
}

fn group(text: &str) -> String {
    let mut depth = 0;
    let mut inner = String::new();
    for c in text.chars() {
        match c {
            '{' => {
                depth += 1;
                if depth == 1 {
                    continue;
                }
            }
            '}' => {
                depth -= 1;
                if depth == 0 {
                    break;
                }
            }
            _ => {}
        }
        inner.push(c);
    }
    inner
}

fn split_top(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, c) in text.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

/// The module a path lands in: its longest prefix that is a module.
fn owner<'a>(path: &str, modules: &'a BTreeMap<String, String>) -> Option<&'a str> {
    let mut parts: Vec<&str> = path.split("::").collect();
    while !parts.is_empty() {
        let candidate = parts.join("::");
        if let Some((name, _)) = modules.get_key_value(&candidate) {
            return Some(name.as_str());
        }
        parts.pop();
    }
    None
}

fn is_ancestor(ancestor: &str, of: &str) -> bool {
    of.starts_with(&format!("{ancestor}::"))
}

/// Module → the modules it uses (not itself, not its ancestors).
fn graph(modules: &BTreeMap<String, String>) -> BTreeMap<String, BTreeSet<String>> {
    let mut edges = BTreeMap::new();
    for (module, text) in modules {
        let children: BTreeSet<String> = modules
            .keys()
            .filter_map(|m| m.strip_prefix(&format!("{module}::")))
            .filter(|rest| !rest.contains("::"))
            .map(str::to_owned)
            .collect();
        let used: BTreeSet<String> = paths(module, text, &children)
            .iter()
            .filter_map(|p| owner(p, modules))
            .filter(|target| *target != module && !is_ancestor(target, module))
            .map(str::to_owned)
            .collect();
        edges.insert(module.clone(), used);
    }
    edges
}

/// Strongly connected components of more than one module (Tarjan).
fn cycles(edges: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct State<'a> {
        edges: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        found: Vec<Vec<String>>,
    }
    fn visit<'a>(s: &mut State<'a>, v: &'a str) {
        let n = s.index.len();
        s.index.insert(v, n);
        s.low.insert(v, n);
        s.stack.push(v);
        s.on_stack.insert(v);
        for w in s.edges.get(v).into_iter().flatten() {
            let w = w.as_str();
            if !s.index.contains_key(w) {
                visit(s, w);
                let low = s.low[v].min(s.low[w]);
                s.low.insert(v, low);
            } else if s.on_stack.contains(w) {
                let low = s.low[v].min(s.index[w]);
                s.low.insert(v, low);
            }
        }
        if s.low[v] == s.index[v] {
            let mut component = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(w);
                component.push(w.to_owned());
                if w == v {
                    break;
                }
            }
            if component.len() > 1 {
                component.sort();
                s.found.push(component);
            }
        }
    }
    let mut state = State {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        found: Vec::new(),
    };
    for v in edges.keys() {
        if !state.index.contains_key(v.as_str()) {
            visit(&mut state, v);
        }
    }
    state.found
}

#[test]
fn no_module_imports_upward_and_none_is_in_a_cycle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let modules = modules(&src);
    let unplaced: Vec<&String> = modules.keys().filter(|m| layer(m).is_none()).collect();
    assert!(
        unplaced.is_empty(),
        "modules in no layer (add them to LAYERS): {unplaced:?}"
    );
    let edges = graph(&modules);
    let upward: Vec<String> = edges
        .iter()
        .flat_map(|(from, to)| to.iter().map(move |t| (from, t)))
        .filter(|(from, to)| layer(to) > layer(from))
        .map(|(from, to)| format!("{from} -> {to}"))
        .collect();
    let cycles = cycles(&edges);
    let edge_count: usize = edges.values().map(BTreeSet::len).sum();
    println!(
        "architecture: {} modules, {edge_count} dependencies, {} upward, {} cycles ({:?} modules)",
        modules.len(),
        upward.len(),
        cycles.len(),
        cycles.iter().map(Vec::len).collect::<Vec<_>>()
    );
    assert!(
        upward.is_empty() && cycles.is_empty(),
        "upward imports:\n  {}\ncycles:\n  {}",
        upward.join("\n  "),
        cycles
            .iter()
            .map(|c| c.join(", "))
            .collect::<Vec<_>>()
            .join("\n  ")
    );
}

#[test]
fn the_checker_sees_paths_in_every_form() {
    let children: BTreeSet<String> = ["child".to_owned()].into();
    let found = paths(
        "jobs::x",
        "use crate::{api::y, queue::{a, b::C}};\nlet v = super::super::config::Z;\nchild::run(); other::no();\nuse super::registry::JobError;",
        &children,
    );
    assert_eq!(
        found,
        [
            "api::y",
            "queue::a",
            "queue::b::C",
            "config::Z",
            "jobs::x::child::run",
            "jobs::registry::JobError"
        ]
    );
    let edges: BTreeMap<String, BTreeSet<String>> = [
        ("a".to_owned(), ["b".to_owned()].into()),
        ("b".to_owned(), ["c".to_owned()].into()),
        ("c".to_owned(), ["a".to_owned()].into()),
        ("d".to_owned(), ["a".to_owned()].into()),
    ]
    .into();
    assert_eq!(cycles(&edges), [["a", "b", "c"]]);
}

#[test]
fn all_sql_lives_in_store() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let markers = [
        "sqlx::query",
        "sqlx::raw_sql",
        "query_as(",
        "query_scalar(",
        "query_as::<",
        "query_scalar::<",
    ];
    let outside: Vec<String> = modules(&src)
        .iter()
        .filter(|(module, _)| module.split("::").next() != Some("store"))
        .flat_map(|(module, text)| {
            text.lines()
                .enumerate()
                .filter(|(_, line)| markers.iter().any(|m| line.contains(m)))
                .map(move |(n, _)| format!("{module}:{}", n + 1))
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(outside.is_empty(), "SQL outside store/: {outside:?}");
}

/// Functions longer than `max_lines` in `text`, counted as the shape check of
/// `../shared/hooks/fnlen.py` counts them (braces from each `fn` line, strings blanked).
fn long_functions(text: &str, max_lines: usize) -> Vec<(usize, usize)> {
    let lines: Vec<&str> = text.lines().collect();
    let is_fn = |line: &str| {
        let t = line.trim_start();
        let t = t.strip_prefix("pub ").or_else(|| {
            t.strip_prefix("pub(")
                .and_then(|r| r.split_once(") ").map(|(_, rest)| rest))
        });
        let t = t.unwrap_or(line.trim_start());
        let t = t.strip_prefix("async ").unwrap_or(t);
        let t = t.strip_prefix("const ").unwrap_or(t);
        t.starts_with("fn ")
    };
    let mut found = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        if !is_fn(lines[i]) {
            i += 1;
            continue;
        }
        let (mut depth, mut started, mut j) = (0i64, false, i);
        while j < lines.len() {
            let code = blank_strings(lines[j]);
            let code = code.split("//").next().unwrap_or("");
            depth += code.matches('{').count() as i64 - code.matches('}').count() as i64;
            started |= code.contains('{');
            if (code.contains(';') && !started) || (started && depth <= 0) {
                break;
            }
            j += 1;
        }
        if started && j - i + 1 > max_lines {
            found.push((i + 1, j - i + 1));
        }
        i = if started { j + 1 } else { i + 1 };
    }
    found
}

fn blank_strings(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut in_string = false;
    let mut escaped = false;
    for c in line.chars() {
        match (in_string, escaped, c) {
            (true, true, _) => escaped = false,
            (true, false, '\\') => escaped = true,
            (true, false, '"') => {
                in_string = false;
                out.push('"');
            }
            (true, false, _) => {}
            (false, _, '"') => {
                in_string = true;
                out.push('"');
            }
            (false, _, c) => out.push(c),
        }
    }
    out
}

#[test]
fn functions_and_files_stay_short() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let (mut long, mut big) = (Vec::new(), Vec::new());
    for (relative, text) in rust_files(&src) {
        let name = relative.display().to_string();
        let lines = text.split('\n').count();
        if lines > 500 && !name.ends_with("tests.rs") {
            big.push(format!("{name} ({lines})"));
        }
        for (at, n) in long_functions(&text, 60) {
            long.push(format!("{name}:{at} ({n})"));
        }
    }
    println!(
        "shape: {} functions over 60 lines, {} files over 500 lines",
        long.len(),
        big.len()
    );
    assert!(
        long.len() <= 8,
        "at most 8 functions over 60 lines: {long:?}"
    );
    assert!(big.len() <= 2, "at most 2 files over 500 lines: {big:?}");
}

#[test]
fn the_readme_lists_every_scheduled_job_with_its_default() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).expect("README");
    let listed: Vec<(String, String)> = readme
        .lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let name = cells.get(1)?.strip_prefix('`')?.strip_suffix('`')?;
            let cron = cells.get(2)?.strip_prefix('`')?.strip_suffix('`')?;
            let is_cron = cron.split_whitespace().count() == 6 || cron == "off";
            is_cron.then(|| (name.to_owned(), cron.to_owned()))
        })
        .collect();
    let defined: Vec<(String, String)> = campaign_sync::jobs::schedulable()
        .into_iter()
        .map(|job| (job.name.to_owned(), job.default.to_owned()))
        .collect();
    assert_eq!(listed, defined, "README's schedule table against jobs::ALL");
}
