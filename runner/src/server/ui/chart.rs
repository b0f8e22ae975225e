//! Charts as inline SVG, drawn on the server: they need no script, scale with
//! the page, and carry their figures as text (a title per point, a caption)
//! for readers who cannot see them. Marks differ by shape as well as colour.

use maud::{Markup, PreEscaped, html};

const W: f64 = 560.0;
const H: f64 = 180.0;
const LEFT: f64 = 56.0;
const RIGHT: f64 = 12.0;
const TOP: f64 = 12.0;
const BOTTOM: f64 = 28.0;

/// A point of a series: its x, its y, and a mark (`ok`, `bad`, `wait`,
/// `err`) with a label read on hover.
pub struct Point {
    pub x: f64,
    pub y: f64,
    pub mark: &'static str,
    pub label: String,
}

/// A horizontal line across the chart (a threshold), with its label.
pub struct Rule {
    pub y: f64,
    pub label: String,
}

/// A line chart: points joined in order, each drawn with its mark, and the
/// rules; the y axis spans the points and the rules.
pub fn line(title: &str, x_label: &str, points: &[Point], rules: &[Rule]) -> Markup {
    // Rules at one height (a watch's failure and success thresholds) share a line.
    let mut merged: Vec<Rule> = Vec::new();
    for r in rules {
        match merged.iter_mut().find(|m| m.y == r.y) {
            Some(m) => m.label = format!("{} · {}", m.label, r.label),
            None => merged.push(Rule {
                y: r.y,
                label: r.label.clone(),
            }),
        }
    }
    let rules = &merged[..];
    let ys = points.iter().map(|p| p.y).chain(rules.iter().map(|r| r.y));
    let (mut lo, mut hi) = bounds(ys);
    if lo == hi {
        lo -= 1.0_f64.max(lo.abs() * 0.1);
        hi += 1.0_f64.max(hi.abs() * 0.1);
    }
    let pad = (hi - lo) * 0.08;
    let (lo, hi) = (
        if lo >= 0.0 {
            (lo - pad).max(0.0)
        } else {
            lo - pad
        },
        hi + pad,
    );
    let (x0, x1) = bounds(points.iter().map(|p| p.x));
    let x1 = if x1 > x0 { x1 } else { x0 + 1.0 };
    let sx = |x: f64| LEFT + (x - x0) / (x1 - x0) * (W - LEFT - RIGHT);
    let sy = |y: f64| TOP + (hi - y) / (hi - lo) * (H - TOP - BOTTOM);
    let path: String = points
        .iter()
        .enumerate()
        .map(|(i, p)| {
            format!(
                "{}{:.1},{:.1}",
                if i == 0 { "M" } else { " L" },
                sx(p.x),
                sy(p.y)
            )
        })
        .collect();
    html! {
        figure.chart {
            svg viewBox={ "0 0 " (W) " " (H) } role="img" aria-label=(title) {
                title { (title) }
                line.axis x1=(LEFT) y1=(H - BOTTOM) x2=(W - RIGHT) y2=(H - BOTTOM) {}
                line.axis x1=(LEFT) y1=(TOP) x2=(LEFT) y2=(H - BOTTOM) {}
                text.tick x=(LEFT - 4.0) y=(sy(hi) + 4.0) text-anchor="end" { (number(hi)) }
                text.tick x=(LEFT - 4.0) y=(sy(lo)) text-anchor="end" { (number(lo)) }
                text.tick x=(LEFT) y=(H - 8.0) { (format!("{x0:.0}")) }
                text.tick x=(W - RIGHT) y=(H - 8.0) text-anchor="end" { (x_label) " " (format!("{x1:.0}")) }
                @for r in rules {
                    line.rule x1=(LEFT) y1=(sy(r.y)) x2=(W - RIGHT) y2=(sy(r.y)) {}
                    text.rule-label x=(W - RIGHT - 2.0) y=(sy(r.y) - 3.0) text-anchor="end" { (r.label) }
                }
                @if points.len() > 1 { path.series d=(path) {} }
                @for p in points { (mark(sx(p.x), sy(p.y), p.mark, &p.label)) }
            }
        }
    }
}

/// Bars over days (or any categories), with a label under each few; `says`
/// writes a value as the reader reads it (a count, a percentage, a duration).
/// `top`: the scale's fixed top (100 for a rate, so that half is half high);
/// `None`: the highest bar.
pub fn bars(
    title: &str,
    bars: &[(String, f64, &'static str)],
    top: Option<f64>,
    says: &dyn Fn(f64) -> String,
) -> Markup {
    let hi = bars.iter().map(|b| b.1).fold(top.unwrap_or(0.0), f64::max);
    // Nothing above zero: the scale still has a top.
    let hi = if hi > 0.0 { hi } else { 1.0 };
    let n = bars.len().max(1) as f64;
    let step = (W - LEFT - RIGHT) / n;
    let every = ((bars.len() as f64) / 8.0).ceil().max(1.0) as usize;
    html! {
        figure.chart {
            svg viewBox={ "0 0 " (W) " " (H) } role="img" aria-label=(title) {
                title { (title) }
                line.axis x1=(LEFT) y1=(H - BOTTOM) x2=(W - RIGHT) y2=(H - BOTTOM) {}
                text.tick x=(LEFT - 4.0) y=(TOP + 4.0) text-anchor="end" { (says(hi)) }
                text.tick x=(LEFT - 4.0) y=(H - BOTTOM) text-anchor="end" { "0" }
                @for (i, (label, v, class)) in bars.iter().enumerate() {
                    @let h = v / hi * (H - TOP - BOTTOM);
                    @let x = LEFT + i as f64 * step;
                    rect class={ "bar " (class) } x=(format!("{:.1}", x + step * 0.15)) y=(format!("{:.1}", H - BOTTOM - h))
                        width=(format!("{:.1}", step * 0.7)) height=(format!("{:.1}", h)) {
                        title { (label) ": " (says(*v)) }
                    }
                    @if i % every == 0 {
                        text.tick x=(format!("{:.1}", x + step / 2.0)) y=(H - 10.0) text-anchor="middle" { (label) }
                    }
                }
            }
        }
    }
}

/// A mark: a circle (ok), a cross (bad), a triangle (wait), a square (err).
fn mark(x: f64, y: f64, kind: &str, label: &str) -> Markup {
    let shape = match kind {
        "ok" => format!(r#"<circle cx="{x:.1}" cy="{y:.1}" r="4"/>"#),
        "bad" => format!(
            r#"<path d="M{:.1},{:.1} L{:.1},{:.1} M{:.1},{:.1} L{:.1},{:.1}"/>"#,
            x - 4.0,
            y - 4.0,
            x + 4.0,
            y + 4.0,
            x - 4.0,
            y + 4.0,
            x + 4.0,
            y - 4.0
        ),
        "wait" => format!(
            r#"<path d="M{x:.1},{:.1} L{:.1},{:.1} L{:.1},{:.1} Z"/>"#,
            y - 5.0,
            x + 5.0,
            y + 4.0,
            x - 5.0,
            y + 4.0
        ),
        _ => format!(
            r#"<rect x="{:.1}" y="{:.1}" width="8" height="8"/>"#,
            x - 4.0,
            y - 4.0
        ),
    };
    html! {
        g class={ "mark " (kind) } {
            title { (label) }
            // Numbers only: made here from f64 values, nothing of the input.
            (PreEscaped(shape))
        }
    }
}

fn bounds(values: impl Iterator<Item = f64>) -> (f64, f64) {
    values
        .filter(|v| v.is_finite())
        .fold(None, |acc: Option<(f64, f64)>, v| match acc {
            None => Some((v, v)),
            Some((lo, hi)) => Some((lo.min(v), hi.max(v))),
        })
        .unwrap_or((0.0, 1.0))
}

/// A figure for an axis or a tooltip: short, without noise.
pub fn number(v: f64) -> String {
    if v == 0.0 {
        return "0".to_owned();
    }
    let a = v.abs();
    if a >= 1000.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else if a >= 0.01 {
        format!("{v:.3}")
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_owned()
    } else {
        format!("{v:.2e}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_chart_has_a_mark_per_point_and_its_rules() {
        let points: Vec<Point> = (0..4)
            .map(|i| Point {
                x: f64::from(i),
                y: f64::from(i) * 0.01,
                mark: if i == 3 { "bad" } else { "ok" },
                label: format!("#{i}"),
            })
            .collect();
        let rule = Rule {
            y: 0.02,
            label: "success: value <= 0.02".into(),
        };
        let svg = line("errors", "#", &points, &[rule]).into_string();
        assert_eq!(svg.matches("class=\"mark ok\"").count(), 3, "{svg}");
        assert_eq!(svg.matches("class=\"mark bad\"").count(), 1, "{svg}");
        assert!(svg.contains("success: value &lt;= 0.02"), "{svg}");
        // Two thresholds at one height: one line, both labels.
        let both = [
            Rule {
                y: 0.02,
                label: "failure: value > 0.02".into(),
            },
            Rule {
                y: 0.02,
                label: "success: value <= 0.02".into(),
            },
        ];
        let svg = line("errors", "#", &points, &both).into_string();
        assert_eq!(svg.matches("class=\"rule\"").count(), 1, "{svg}");
        assert!(svg.contains("failure: value &gt; 0.02 · success"), "{svg}");
        assert!(!svg.contains("NaN"), "{svg}");
    }

    #[test]
    fn one_point_or_none_still_draws() {
        let one = [Point {
            x: 1.0,
            y: 5.0,
            mark: "ok",
            label: "x".into(),
        }];
        assert!(!line("t", "#", &one, &[]).into_string().contains("NaN"));
        assert!(!line("t", "#", &[], &[]).into_string().contains("NaN"));
        assert!(!bars("t", &[], None, &number).into_string().contains("NaN"));
        // Values are written as the caller says: a duration as a duration.
        let days = [
            ("12-05".to_owned(), 0.0, "count"),
            ("12-06".to_owned(), 0.001, "count"),
        ];
        let svg = bars("t", &days, None, &crate::server::ui::html::duration).into_string();
        assert!(svg.contains(">1ms<") && svg.contains("12-06: 1ms"), "{svg}");
        assert!(!svg.contains("e-3"), "{svg}");
        // A rate of 50 % is drawn half as high as the scale's 100 %.
        let half = [("12-06".to_owned(), 50.0, "count")];
        let svg = bars("t", &half, Some(100.0), &number).into_string();
        let full = H - TOP - BOTTOM;
        assert!(
            svg.contains(&format!("height=\"{:.1}\"", full / 2.0)),
            "{svg}"
        );
        assert!(svg.contains(">100.0<"), "{svg}");
    }

    #[test]
    fn numbers_are_short() {
        assert_eq!(number(0.0125), "0.013");
        assert_eq!(number(0.5), "0.5");
        assert_eq!(number(1234.5), "1234");
        assert_eq!(number(0.0001), "1.00e-4");
    }
}
