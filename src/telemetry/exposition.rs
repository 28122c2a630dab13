//! Merging Prometheus text expositions (this process's, every live worker's, the queues')
//! into one valid exposition: each metric family once, its `# HELP` and `# TYPE` first and
//! all its samples together, as `promtool check metrics` requires.

use std::collections::HashMap;

/// One family: its help, its type and its samples, in the order first seen.
#[derive(Default)]
struct Family {
    help: Option<String>,
    kind: Option<String>,
    samples: Vec<String>,
}

/// The family a sample belongs to: its metric name, less a histogram's or summary's
/// `_bucket`, `_sum` or `_count` when that family is declared.
fn family_of<'a>(name: &'a str, kinds: &HashMap<String, String>) -> &'a str {
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = name.strip_suffix(suffix)
            && kinds
                .get(base)
                .is_some_and(|k| k == "histogram" || k == "summary")
        {
            return base;
        }
    }
    name
}

/// Joins expositions: every family once, with its help, type and every part's samples.
pub fn merge_expositions(parts: &[String]) -> String {
    // Types first, so that `x_count` samples can be told apart from a counter named so.
    let mut kinds: HashMap<String, String> = HashMap::new();
    for line in parts.iter().flat_map(|p| p.lines()) {
        if let Some(rest) = line.strip_prefix("# TYPE ")
            && let Some((name, kind)) = rest.split_once(' ')
        {
            kinds
                .entry(name.to_owned())
                .or_insert_with(|| kind.trim().to_owned());
        }
    }
    let mut order: Vec<String> = Vec::new();
    let mut families: HashMap<String, Family> = HashMap::new();
    for line in parts.iter().flat_map(|p| p.lines()) {
        let Some((name, what)) = parse(line) else {
            continue;
        };
        let name = match &what {
            Line::Sample(_) => family_of(name, &kinds),
            _ => name,
        };
        if !families.contains_key(name) {
            order.push(name.to_owned());
        }
        let f = families.entry(name.to_owned()).or_default();
        match what {
            Line::Help(h) => {
                f.help.get_or_insert(h);
            }
            Line::Type(t) => {
                f.kind.get_or_insert(t);
            }
            Line::Sample(s) => f.samples.push(s),
        }
    }
    let mut out = String::new();
    for name in order {
        let Some(f) = families.get(&name) else {
            continue;
        };
        if f.samples.is_empty() {
            continue;
        }
        if let Some(help) = &f.help {
            out.push_str(&format!("# HELP {name} {help}\n"));
        }
        if let Some(kind) = &f.kind {
            out.push_str(&format!("# TYPE {name} {kind}\n"));
        }
        for s in &f.samples {
            out.push_str(s);
            out.push('\n');
        }
    }
    out
}

enum Line {
    Help(String),
    Type(String),
    Sample(String),
}

/// A line's metric name and what it is; None for blank lines and other comments.
fn parse(line: &str) -> Option<(&str, Line)> {
    let line = line.trim_end();
    if line.is_empty() {
        return None;
    }
    if let Some(rest) = line.strip_prefix("# HELP ") {
        let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
        return Some((name, Line::Help(help.to_owned())));
    }
    if let Some(rest) = line.strip_prefix("# TYPE ") {
        let (name, kind) = rest.split_once(' ')?;
        return Some((name, Line::Type(kind.trim().to_owned())));
    }
    if line.starts_with('#') {
        return None;
    }
    let end = line.find(['{', ' ']).unwrap_or(line.len());
    Some((&line[..end], Line::Sample(line.to_owned())))
}

#[cfg(test)]
mod tests {
    use super::merge_expositions;

    #[test]
    fn families_split_across_parts_come_out_once_and_together() {
        let merged = merge_expositions(&[
            "# HELP a_total As.\n# TYPE a_total counter\na_total{p=\"1\"} 1\n# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_sum 1\nh_count 1\n".into(),
            "# TYPE b gauge\nb 3\n# TYPE a_total counter\na_total{p=\"2\"} 2\n# TYPE h histogram\nh_count{p=\"2\"} 4\n".into(),
        ]);
        assert_eq!(
            merged,
            "# HELP a_total As.\n# TYPE a_total counter\na_total{p=\"1\"} 1\na_total{p=\"2\"} 2\n\
             # TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_sum 1\nh_count 1\nh_count{p=\"2\"} 4\n\
             # TYPE b gauge\nb 3\n"
        );
    }
}
