//! Charts drawn on the server as SVG: no chart library, no script, readable without colour
//! (each chart has a text summary for screen readers and the figures in a table beside it).

use std::fmt::Write as _;

use maud::{Markup, PreEscaped, html};

const W: f64 = 640.0;
const H: f64 = 200.0;
const PAD_L: f64 = 64.0;
const PAD_B: f64 = 26.0;
const PAD_T: f64 = 10.0;
const COLOURS: [&str; 6] = [
    "#1f5fbf", "#b3261e", "#1b7a3a", "#8a5a00", "#6b3fa0", "#00796b",
];

/// One line of a chart.
pub struct Series<'a> {
    pub name: &'a str,
    pub values: Vec<f64>,
}

/// A line chart of `series` over `labels` (one per point, e.g. the hour); `format` writes a
/// value of the y axis.
pub fn lines(
    title: &str,
    labels: &[String],
    series: &[Series<'_>],
    format: fn(f64) -> String,
) -> Markup {
    let max = series
        .iter()
        .flat_map(|s| s.values.iter().copied())
        .fold(0.0_f64, f64::max);
    let frame = Frame {
        points: labels.len(),
        top: if max <= 0.0 { 1.0 } else { max },
    };
    let mut svg = frame.axes(labels, format);
    for (n, s) in series.iter().enumerate() {
        let path: Vec<String> = s
            .values
            .iter()
            .enumerate()
            .map(|(i, v)| format!("{:.1},{:.1}", frame.x(i), frame.y(*v)))
            .collect();
        let _ = write!(
            svg,
            r##"<polyline fill="none" stroke-width="2" stroke="{}" points="{}"/>"##,
            COLOURS[n % COLOURS.len()],
            path.join(" ")
        );
    }
    let summary = summary(title, series, format);
    html! {
        figure.chart {
            figcaption { (title) }
            svg viewBox=(format!("0 0 {W} {H}")) role="img" aria-label=(summary) {
                (PreEscaped(svg))
            }
            div.legend {
                @for (n, s) in series.iter().enumerate() {
                    span { svg.swatch width="12" height="12" aria-hidden="true" { rect width="12" height="12" fill=(COLOURS[n % COLOURS.len()]) {} } " " (s.name) }
                }
            }
        }
    }
}

/// Where points land: `points` along x, values up to `top` along y.
struct Frame {
    points: usize,
    top: f64,
}

impl Frame {
    fn x(&self, i: usize) -> f64 {
        if self.points <= 1 {
            PAD_L
        } else {
            PAD_L + (W - PAD_L - 8.0) * i as f64 / (self.points - 1) as f64
        }
    }

    fn y(&self, v: f64) -> f64 {
        PAD_T + (H - PAD_T - PAD_B) * (1.0 - v / self.top)
    }

    /// The axes, the top and zero of y, the first and last label of x.
    fn axes(&self, labels: &[String], format: fn(f64) -> String) -> String {
        let mut svg = String::new();
        let _ = write!(
            svg,
            r##"<line x1="{PAD_L}" y1="{b}" x2="{W}" y2="{b}" stroke="#9aa6b2"/><line x1="{PAD_L}" y1="{PAD_T}" x2="{PAD_L}" y2="{b}" stroke="#9aa6b2"/>"##,
            b = H - PAD_B
        );
        for value in [self.top, 0.0] {
            let _ = write!(
                svg,
                r##"<text x="{}" y="{}" font-size="14" text-anchor="end" fill="#5b6672">{}</text>"##,
                PAD_L - 4.0,
                self.y(value) + 4.0,
                escape(&format(value))
            );
        }
        if let (Some(first), Some(last)) = (labels.first(), labels.last()) {
            let _ = write!(
                svg,
                r##"<text x="{PAD_L}" y="{H}" font-size="14" fill="#5b6672">{}</text><text x="{W}" y="{H}" font-size="14" text-anchor="end" fill="#5b6672">{}</text>"##,
                escape(first),
                escape(last)
            );
        }
        svg
    }
}

fn summary(title: &str, series: &[Series<'_>], format: fn(f64) -> String) -> String {
    let parts: Vec<String> = series
        .iter()
        .map(|s| {
            let last = s.values.last().copied().unwrap_or(0.0);
            let peak = s.values.iter().copied().fold(0.0_f64, f64::max);
            format!("{}: latest {}, peak {}", s.name, format(last), format(peak))
        })
        .collect();
    format!("{title}. {}", parts.join("; "))
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A count as an axis label.
pub fn count(v: f64) -> String {
    if v >= 10_000.0 {
        format!("{:.0}k", v / 1000.0)
    } else {
        format!("{v:.0}")
    }
}

/// A ratio as a percentage axis label.
pub fn ratio(v: f64) -> String {
    format!("{:.0}%", v * 100.0)
}

/// Milliseconds as an axis label.
pub fn millis(v: f64) -> String {
    format!("{v:.0} ms")
}

/// A horizontal bar of parts (e.g. a request's recipients by status), as SVG.
pub fn parts_bar(label: &str, parts: &[(&str, i64, &str)]) -> Markup {
    let total: i64 = parts.iter().map(|p| p.1).sum();
    let mut svg = String::new();
    let mut at = 0.0;
    for (_, n, colour) in parts {
        if total == 0 || *n == 0 {
            continue;
        }
        let w = 200.0 * *n as f64 / total as f64;
        let _ = write!(
            svg,
            r#"<rect x="{at:.2}" y="0" width="{w:.2}" height="10" fill="{colour}"/>"#
        );
        at += w;
    }
    html! {
        svg.bar viewBox="0 0 200 10" width="200" height="10" role="img" aria-label=(label) preserveAspectRatio="none" {
            rect width="200" height="10" fill="#e3e8ee" {}
            (PreEscaped(svg))
        }
    }
}
