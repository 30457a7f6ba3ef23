//! The timeline picture: throughput and latency per node over time, fault windows shaded.
//! Written by hand as SVG (a few lines of text) rather than with `plotters`, to add no
//! dependency to a crate that builds on two shared cores.

use std::fmt::Write;

use crate::history::{Outcome, Record};
use crate::nemesis::Window;

const W: f64 = 1000.0;
const PANEL: f64 = 200.0;
const LEFT: f64 = 60.0;
const TOP: f64 = 30.0;
const COLOURS: &[&str] = &["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd"];
const BUCKET_NS: u64 = 250_000_000;

pub fn timeline(records: &[Record], windows: &[Window], ids: &[String], title: &str) -> String {
    let end_ns = records.iter().map(|r| r.complete_ns).max().unwrap_or(1).max(1);
    let buckets = (end_ns / BUCKET_NS + 1) as usize;
    let n = ids.len();
    // Per node and bucket: acknowledged ops, their summed latency, unknown/failed ops.
    let mut ok = vec![vec![0u64; buckets]; n];
    let mut lat = vec![vec![0u64; buckets]; n];
    let mut bad = vec![vec![0u64; buckets]; n];
    for r in records.iter().filter(|r| r.node < n) {
        let b = (r.complete_ns / BUCKET_NS) as usize;
        match r.outcome {
            Outcome::Ok(_) => {
                ok[r.node][b] += 1;
                lat[r.node][b] += r.complete_ns.saturating_sub(r.invoke_ns);
            }
            _ => bad[r.node][b] += 1,
        }
    }
    let per_s = 1e9 / BUCKET_NS as f64;
    let max_tput = ok.iter().flatten().copied().max().unwrap_or(1).max(1) as f64 * per_s;
    let mean_ms = |node: usize, b: usize| if ok[node][b] == 0 { None } else { Some(lat[node][b] as f64 / ok[node][b] as f64 / 1e6) };
    let max_lat = (0..n).flat_map(|i| (0..buckets).filter_map(move |b| mean_ms(i, b))).fold(1.0f64, f64::max);
    let x = |ns: u64| LEFT + (W - LEFT - 20.0) * ns as f64 / end_ns as f64;
    let height = TOP + 2.0 * PANEL + 80.0;

    let mut s = String::new();
    let _ = writeln!(s, r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{height}" font-family="sans-serif" font-size="11">"#);
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/><text x="{LEFT}" y="18" font-size="13">{}</text>"#, escape(title));
    for w in windows {
        let (x0, x1) = (x(w.start_ns), x(w.end_ns));
        let _ = writeln!(s, r##"<rect x="{x0:.1}" y="{TOP}" width="{:.1}" height="{}" fill="#999" opacity="0.25"/>"##, (x1 - x0).max(1.0), 2.0 * PANEL + 20.0);
        let label = format!("{} {}", w.nemesis.name(), ids.get(w.target).map_or("?", |s| s.as_str()));
        let _ = writeln!(s, r##"<text x="{:.1}" y="{:.1}" fill="#555">{}</text>"##, x0 + 2.0, TOP + 10.0, escape(&label));
    }
    for (panel, (name, max)) in [("acknowledged ops/s", max_tput), ("mean latency, ms", max_lat)].into_iter().enumerate() {
        let y0 = TOP + panel as f64 * (PANEL + 20.0);
        let _ = writeln!(s, r#"<rect x="{LEFT}" y="{y0}" width="{:.1}" height="{PANEL}" fill="none" stroke="black"/>"#, W - LEFT - 20.0);
        let _ = writeln!(s, r#"<text x="4" y="{:.1}">{max:.0}</text><text x="4" y="{:.1}">0</text>"#, y0 + 10.0, y0 + PANEL);
        let _ = writeln!(s, r#"<text x="{:.1}" y="{:.1}">{name}</text>"#, LEFT + 4.0, y0 + PANEL - 4.0);
        for node in 0..n {
            let mut points = String::new();
            for (b, &count) in ok[node].iter().enumerate() {
                let v = if panel == 0 { Some(count as f64 * per_s) } else { mean_ms(node, b) };
                if let Some(v) = v {
                    let _ = write!(points, "{:.1},{:.1} ", x(b as u64 * BUCKET_NS), y0 + PANEL - PANEL * v / max);
                }
            }
            let _ = writeln!(s, r#"<polyline fill="none" stroke="{}" stroke-width="1.2" points="{points}"/>"#, COLOURS[node % COLOURS.len()]);
            if panel == 0 {
                for b in (0..buckets).filter(|&b| bad[node][b] > 0) {
                    let _ = writeln!(s, r#"<line x1="{0:.1}" x2="{0:.1}" y1="{1:.1}" y2="{2:.1}" stroke="red"/>"#, x(b as u64 * BUCKET_NS), y0 + PANEL, y0 + PANEL - 6.0);
                }
            }
        }
    }
    let legend_y = TOP + 2.0 * PANEL + 40.0;
    for (i, id) in ids.iter().enumerate() {
        let _ = writeln!(s, r#"<text x="{:.1}" y="{legend_y}" fill="{}">node {}</text>"#, LEFT + 70.0 * i as f64, COLOURS[i % COLOURS.len()], escape(id));
    }
    let _ = writeln!(
        s,
        r#"<text x="{LEFT}" y="{:.1}">time 0..{:.1} s, buckets of 250 ms; shaded: fault windows; red ticks: failed or unknown ops</text></svg>"#,
        legend_y + 20.0,
        end_ns as f64 / 1e9
    );
    s
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}
