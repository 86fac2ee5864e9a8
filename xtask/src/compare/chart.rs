//! The side-by-side chart as a self-contained SVG: one panel per figure, a group of bars per
//! service count, a bar per balancer, each labelled with its value.

use std::fmt::Write;

/// One balancer's values, one per group (`None`: not measured there).
pub struct Series {
    /// Legend name.
    pub name: String,
    /// Values, one per group.
    pub values: Vec<Option<f64>>,
}

/// One panel of the chart.
pub struct Panel {
    /// Title above the panel.
    pub title: String,
    /// Unit of the y axis.
    pub unit: String,
    /// Log scale (for figures spanning decades).
    pub log: bool,
    /// The balancers.
    pub series: Vec<Series>,
}

const COLORS: [&str; 6] = [
    "#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02",
];
const PANEL_W: f64 = 440.0;
const PANEL_H: f64 = 300.0;
const TOP: f64 = 70.0;
const LEFT: f64 = 60.0;
const BOTTOM: f64 = 40.0;

/// Renders `panels` side by side, groups labelled `groups` (e.g. "1 svc"), under `title`.
pub fn render(title: &str, subtitle: &str, groups: &[String], panels: &[Panel]) -> String {
    let width = PANEL_W * panels.len() as f64 + 20.0;
    let height = TOP + PANEL_H + BOTTOM + 40.0;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(
        s,
        r##"<rect width="100%" height="100%" fill="white"/><text x="10" y="20" font-size="15" font-weight="bold">{}</text><text x="10" y="38" fill="#555">{}</text>"##,
        esc(title),
        esc(subtitle)
    );
    for (i, p) in panels.iter().enumerate() {
        panel(&mut s, 10.0 + PANEL_W * i as f64, groups, p);
    }
    // Legend from the first panel's series.
    if let Some(first) = panels.first() {
        let y = TOP + PANEL_H + BOTTOM + 20.0;
        for (k, ser) in first.series.iter().enumerate() {
            let x = 20.0 + 170.0 * k as f64;
            let _ = writeln!(
                s,
                r#"<rect x="{x}" y="{}" width="12" height="12" fill="{}"/><text x="{}" y="{}">{}</text>"#,
                y - 10.0,
                COLORS[k % COLORS.len()],
                x + 16.0,
                y,
                esc(&ser.name)
            );
        }
    }
    s.push_str("</svg>\n");
    s
}

fn panel(s: &mut String, x0: f64, groups: &[String], p: &Panel) {
    let plot_w = PANEL_W - LEFT - 20.0;
    let plot_h = PANEL_H - 30.0;
    let y_base = TOP + PANEL_H;
    let values: Vec<f64> = p
        .series
        .iter()
        .flat_map(|se| se.values.iter().flatten().copied())
        .filter(|v| v.is_finite())
        .collect();
    let max = values.iter().copied().fold(0.0_f64, f64::max).max(1e-9);
    let min_pos = values
        .iter()
        .copied()
        .filter(|v| *v > 0.0)
        .fold(f64::INFINITY, f64::min);
    // Log axis: whole decades around the data.
    let (lo, hi) = if p.log {
        let lo = if min_pos.is_finite() {
            min_pos.log10().floor()
        } else {
            0.0
        };
        (lo, max.log10().ceil().max(lo + 1.0))
    } else {
        (0.0, nice_ceiling(max))
    };
    let scale = |v: f64| -> f64 {
        if p.log {
            if v <= 0.0 {
                0.0
            } else {
                ((v.log10() - lo) / (hi - lo)).clamp(0.0, 1.0) * plot_h
            }
        } else {
            (v / hi).clamp(0.0, 1.0) * plot_h
        }
    };
    let _ = writeln!(
        s,
        r##"<text x="{}" y="{}" font-size="13" font-weight="bold">{}</text><text x="{}" y="{}" fill="#555">{}</text>"##,
        x0 + 4.0,
        TOP - 14.0,
        esc(&p.title),
        x0 + 4.0,
        TOP - 1.0,
        esc(&p.unit)
    );
    // Axis and grid.
    let ticks: Vec<f64> = if p.log {
        (lo as i32..=hi as i32).map(|e| 10f64.powi(e)).collect()
    } else {
        (0..=4).map(|k| hi * f64::from(k) / 4.0).collect()
    };
    for t in ticks {
        let y = y_base - scale(t);
        let _ = writeln!(
            s,
            r##"<line x1="{}" y1="{y}" x2="{}" y2="{y}" stroke="#ddd"/><text x="{}" y="{}" text-anchor="end" fill="#555">{}</text>"##,
            x0 + LEFT,
            x0 + LEFT + plot_w,
            x0 + LEFT - 4.0,
            y + 4.0,
            short(t)
        );
    }
    let _ = writeln!(
        s,
        r##"<line x1="{}" y1="{y_base}" x2="{}" y2="{y_base}" stroke="#333"/>"##,
        x0 + LEFT,
        x0 + LEFT + plot_w
    );
    let group_w = plot_w / groups.len().max(1) as f64;
    let n = p.series.len().max(1) as f64;
    let bar_w = (group_w - 16.0) / n;
    for (g, name) in groups.iter().enumerate() {
        let gx = x0 + LEFT + group_w * g as f64 + 8.0;
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}" text-anchor="middle">{}</text>"#,
            gx + (group_w - 16.0) / 2.0,
            y_base + 16.0,
            esc(name)
        );
        for (k, ser) in p.series.iter().enumerate() {
            let Some(v) = ser.values.get(g).copied().flatten() else {
                continue;
            };
            let h = scale(v);
            let x = gx + bar_w * k as f64;
            let _ = writeln!(
                s,
                r#"<rect x="{x:.1}" y="{:.1}" width="{:.1}" height="{h:.1}" fill="{}"><title>{}: {}</title></rect><text x="{:.1}" y="{:.1}" font-size="9" text-anchor="start" transform="rotate(-90 {:.1} {:.1})">{}</text>"#,
                y_base - h,
                (bar_w - 2.0).max(1.0),
                COLORS[k % COLORS.len()],
                esc(&ser.name),
                short(v),
                x + bar_w / 2.0,
                y_base - h - 4.0,
                x + bar_w / 2.0 + 3.0,
                y_base - h - 4.0,
                short(v)
            );
        }
    }
}

/// 1, 2 or 5 times a power of ten, at least `v`.
fn nice_ceiling(v: f64) -> f64 {
    let p = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * p)
        .find(|c| *c >= v)
        .unwrap_or(10.0 * p)
}

/// A compact number: 3 significant digits.
fn short(v: f64) -> String {
    let a = v.abs();
    if a >= 100.0 || a == 0.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

fn esc(t: &str) -> String {
    t.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scales_and_numbers() {
        assert_eq!(nice_ceiling(3.2), 5.0);
        assert_eq!(nice_ceiling(120.0), 200.0);
        assert_eq!(short(1234.4), "1234");
        assert_eq!(short(0.01234), "0.012");
        let svg = render(
            "t",
            "s",
            &["1 svc".into()],
            &[Panel {
                title: "p".into(),
                unit: "ms".into(),
                log: true,
                series: vec![Series {
                    name: "a<b".into(),
                    values: vec![Some(12.0)],
                }],
            }],
        );
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
        assert!(svg.contains("a&lt;b"));
    }
}
