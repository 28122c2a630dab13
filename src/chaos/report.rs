//! The report of a chaos run: the invariants of every adapter side by side, and each phase
//! with its scenario, how long its request took, and what was reconciled or resent.

use std::fmt::Write as _;

use super::invariants::Report;

/// The tables of every adapter's run, as Markdown.
pub fn render(reports: &[Report]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "\n## Invariants\n");
    let mut header = "| invariant |".to_owned();
    let mut rule = "| --- |".to_owned();
    for r in reports {
        let _ = write!(header, " {} |", r.adapter);
        rule.push_str(" --- |");
    }
    let _ = writeln!(out, "{header}\n{rule}");
    if let Some(first) = reports.first() {
        for (i, c) in first.checks.iter().enumerate() {
            let mut row = format!("| {} |", c.name);
            for r in reports {
                let cell = r.checks.get(i).map_or("-".to_owned(), |c| {
                    format!("{} {}", if c.ok { "ok" } else { "FAIL" }, c.value)
                });
                let _ = write!(row, " {cell} |");
            }
            let _ = writeln!(out, "{row}");
        }
    }
    let _ = writeln!(
        out,
        "\n## Scenarios\n\n| adapter | scenario | recipients | completed in | reconciled | settled by an event first | resent |\n| --- | --- | --- | --- | --- | --- | --- |"
    );
    for r in reports {
        for p in &r.phases {
            let took = p.took.map_or("not completed".to_owned(), |t| {
                format!("{:.1} s", t.as_secs_f64())
            });
            let _ = writeln!(
                out,
                "| {} | {} | {} | {took} | {} | {} | {} |",
                r.adapter,
                p.scenario.name(),
                p.recipients,
                p.reconciled,
                p.event_first,
                p.resent
            );
        }
    }
    out
}
