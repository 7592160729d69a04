//! `loadtest --report FILE.html`: one self-contained HTML file (inline SVG
//! and CSS, no scripts, no fetches) with the latency percentile plot from
//! the HdrHistogram, throughput over time, and the CPU split by process;
//! in lanes mode (`--backfill`), the interactive lane's latency by
//! percentile and over time and the bulk lane's replies per second.

use std::fmt::Write;

use super::{
    Report,
    cpu::{CpuSplit, PARTIES, Party, SAMPLE_EVERY},
    lanes::LanesReport,
    phase::{BucketLatency, Measured, THROUGHPUT_BUCKET},
};

const WIDTH: f64 = 860.0;
const HEIGHT: f64 = 300.0;
const MARGIN: f64 = 70.0;
/// Colours of the echo and worker phases, and of the CPU parties.
const PHASE_COLOURS: [&str; 2] = ["#8c8c8c", "#1f77b4"];
const PARTY_COLOURS: [&str; 5] = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#c7c7c7"];
/// Colours of the median and worst latency over time.
const LATENCY_COLOURS: [&str; 2] = ["#1f77b4", "#d62728"];
/// Nines shown on the percentile axis: 0 %, 90 %, 99 %, ... 99.999 %.
const NINES: usize = 5;

/// The page's head and title.
fn page_head() -> String {
    String::from(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>procinst loadtest</title><style>\
         body{font:14px system-ui,sans-serif;margin:24px;color:#222;max-width:920px}\
         table{border-collapse:collapse;margin:8px 0 24px}td,th{padding:4px 10px;border-bottom:1px solid #ddd;text-align:right}\
         th:first-child,td:first-child{text-align:left}svg{background:#fafafa;border:1px solid #e5e5e5}\
         .axis{stroke:#999}.grid{stroke:#e5e5e5}text{font-size:11px;fill:#555}\
         td.name,th.name{text-align:left;white-space:nowrap}\
         </style></head><body>\n<h1>procinst loadtest</h1>\n",
    )
}

/// The whole page.
pub fn html(report: &Report) -> String {
    let mut page = page_head();
    let _ = writeln!(
        page,
        "<p>{} processes per request, {} bytes per request.</p>",
        report.processes_per_request, report.body_bytes
    );
    page.push_str(&summary_table(report));
    let phases = phases(report);
    page.push_str("<h2>Latency by percentile</h2>\n");
    page.push_str(&percentile_plot(&phases));
    page.push_str("<h2>Throughput over time</h2>\n");
    page.push_str(&throughput_plot(&phases));
    for (name, split) in [("worker", &report.worker_cpu), ("echo", &report.echo_cpu)] {
        if let Some(split) = split {
            let _ = writeln!(page, "<h2>CPU split, {name} phase</h2>");
            page.push_str(&cpu_plot(split));
        }
    }
    page.push_str("</body></html>\n");
    page
}

/// The whole page of a lanes run: both lanes' figures, the interactive
/// lane's latency by percentile and over time, the bulk lane's replies per
/// second in both phases, and the CPU split of each phase.
pub fn lanes_html(report: &LanesReport) -> String {
    let mut page = page_head();
    let _ = writeln!(
        page,
        "<p>{} processes per request, {} bytes per request. A backfill of {} bulk requests \
         drained alone, then again while interactive requests arrived at {}/s. A drain is timed \
         from its first bulk publish to its last bulk reply.</p>",
        report.processes_per_request, report.body_bytes, report.backfill, report.interactive_rate
    );
    page.push_str(&lanes_table(report));
    page.push_str("<h2>Interactive latency by percentile</h2>\n");
    page.push_str(&percentile_plot(&[("interactive", &report.interactive)]));
    page.push_str("<h2>Interactive latency over time</h2>\n");
    page.push_str(&latency_over_time_plot(&report.interactive));
    let _ = writeln!(
        page,
        "<p>Median and worst publish-to-reply latency of the interactive replies received in \
         each {} ms, from the start of the phase with both lanes.</p>",
        THROUGHPUT_BUCKET.as_millis()
    );
    page.push_str("<h2>Bulk replies per second over time</h2>\n");
    page.push_str(&throughput_plot(&[
        ("bulk alone", &report.bulk_alone),
        ("bulk with interactive", &report.bulk_with_interactive),
    ]));
    page.push_str("<h2>Bulk backlog over time</h2>\n");
    page.push_str(&backlog_plot(&[
        ("bulk alone", &report.bulk_alone),
        ("bulk with interactive", &report.bulk_with_interactive),
    ]));
    let _ = writeln!(
        page,
        "<p>Bulk requests published and not yet answered at the end of each {} ms: the worker \
         drains while the backlog is being queued.</p>",
        THROUGHPUT_BUCKET.as_millis()
    );
    for (name, split) in [
        ("bulk alone", &report.bulk_alone_cpu),
        ("bulk with interactive", &report.with_interactive_cpu),
    ] {
        if let Some(split) = split {
            let _ = writeln!(page, "<h2>CPU split, {name} phase</h2>");
            page.push_str(&cpu_plot(split));
        }
    }
    page.push_str("</body></html>\n");
    page
}

fn lanes_table(report: &LanesReport) -> String {
    let mut t = String::from(
        "<table><tr><th>lane</th><th class=\"name\">phase</th><th>requests</th><th>answered</th><th>seconds</th>\
         <th>req/s</th><th>p50 ms</th><th>p95 ms</th><th>p99 ms</th><th>max ms</th><th>errors</th></tr>\n",
    );
    for (lane, phase, m, latency) in report.rows() {
        let ms = |v: f64| {
            if latency {
                format!("{v:.1}")
            } else {
                "&ndash;".to_owned()
            }
        };
        let _ = writeln!(
            t,
            "<tr><td class=\"name\">{lane}</td><td class=\"name\">{phase}</td><td>{}</td><td>{}</td><td>{:.2}</td><td>{:.0}</td>\
             <td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            m.requests,
            m.answered,
            m.seconds,
            m.requests_per_s,
            ms(m.p50_ms),
            ms(m.p95_ms),
            ms(m.p99_ms),
            ms(m.max_ms),
            m.errors
        );
    }
    t.push_str("</table>\n");
    let _ = writeln!(
        t,
        "<p>bulk drain rate with interactive / alone (the mean of the drains before and after): <b>{:.2}</b>; the backlog was queued in \
         {:.2} s alone, {:.2} s with interactive; most unanswered at once: {} alone, {} with \
         interactive.</p>",
        report.bulk_with_interactive_over_alone,
        report.bulk_alone.published_s,
        report.bulk_with_interactive.published_s,
        report.bulk_most_unanswered[0],
        report.bulk_most_unanswered[1]
    );
    if report.interactive_ran_out {
        t.push_str(
            "<p><b>The interactive requests (--requests) ran out before the backlog drained: \
             part of that drain had no interactive traffic.</b></p>\n",
        );
    }
    t
}

/// The median and the worst latency of each bucket's replies, against the
/// time since the phase began; buckets without replies are left out.
fn latency_over_time_plot(m: &Measured) -> String {
    let bucket_s = THROUGHPUT_BUCKET.as_secs_f64();
    let points = |pick: fn(&BucketLatency) -> f64| -> Vec<(f64, f64)> {
        m.latency_per_bucket
            .iter()
            .zip(&m.replies_per_bucket)
            .enumerate()
            .filter(|(_, (_, n))| **n > 0)
            .map(|(i, (b, _))| ((i as f64 + 0.5) * bucket_s, pick(b)))
            .collect()
    };
    series_plot(
        &[
            ("p50", LATENCY_COLOURS[0], points(|b| b.p50_ms)),
            ("max", LATENCY_COLOURS[1], points(|b| b.max_ms)),
        ],
        "ms",
        m.seconds,
    )
}

/// Each phase's published, unanswered requests at the end of each bucket.
fn backlog_plot(phases: &[(&str, &Measured)]) -> String {
    let bucket_s = THROUGHPUT_BUCKET.as_secs_f64();
    let series: Vec<Series<'_>> = phases
        .iter()
        .enumerate()
        .map(|(i, (name, m))| {
            let points = std::iter::once((0.0, 0.0))
                .chain(
                    m.unanswered_per_bucket()
                        .iter()
                        .enumerate()
                        .map(|(b, n)| ((b as f64 + 1.0) * bucket_s, f64::from(*n))),
                )
                .collect();
            (*name, PHASE_COLOURS[(i + 2 - phases.len()) % 2], points)
        })
        .collect();
    let x_max = phases.iter().map(|(_, m)| m.seconds).fold(0.0, f64::max);
    series_plot(&series, "", x_max)
}

/// One line of a plot: its name, colour and points.
type Series<'a> = (&'a str, &'a str, Vec<(f64, f64)>);

/// Lines against seconds, up to `x_max` at least.
fn series_plot(series: &[Series<'_>], y_unit: &str, x_max: f64) -> String {
    let points = || series.iter().flat_map(|(_, _, p)| p);
    let x_max = points()
        .map(|p| p.0)
        .fold(x_max, f64::max)
        .max(THROUGHPUT_BUCKET.as_secs_f64());
    let y_max = points().map(|p| p.1).fold(1.0, f64::max);
    let frame = Frame {
        x_max,
        y_max: nice_ceiling(y_max),
    };
    let mut svg = frame.open(y_unit, &seconds_labels(x_max));
    for (_, colour, points) in series {
        svg.push_str(&frame.polyline(points, colour));
    }
    let items: Vec<(&str, &str)> = series.iter().map(|(n, c, _)| (*n, *c)).collect();
    svg.push_str(&legend(&items));
    svg.push_str("</svg>\n");
    svg
}

fn phases(report: &Report) -> Vec<(&'static str, &Measured)> {
    let mut phases = Vec::new();
    if let Some(echo) = &report.echo {
        phases.push(("echo", echo));
    }
    phases.push(("worker", &report.worker));
    phases
}

fn summary_table(report: &Report) -> String {
    let mut t = String::from(
        "<table><tr><th>phase</th><th>requests</th><th>answered</th><th>req/s</th>\
         <th>p50 ms</th><th>p90 ms</th><th>p99 ms</th><th>max ms</th><th>errors</th></tr>\n",
    );
    for (name, m) in phases(report) {
        let _ = writeln!(
            t,
            "<tr><td>{name}</td><td>{}</td><td>{}</td><td>{:.0}</td><td>{:.1}</td><td>{:.1}</td>\
             <td>{:.1}</td><td>{:.1}</td><td>{}</td></tr>",
            m.requests,
            m.answered,
            m.requests_per_s,
            m.p50_ms,
            m.p90_ms,
            m.p99_ms,
            m.max_ms,
            m.errors
        );
    }
    t.push_str("</table>\n");
    if let Some(ratio) = report.worker_over_echo {
        let _ = writeln!(t, "<p>worker / echo: <b>{ratio:.2}</b></p>");
    }
    t
}

/// The smallest 1, 2 or 5 times a power of ten at or above `v`: an axis
/// maximum whose quarter marks read well.
fn nice_ceiling(v: f64) -> f64 {
    if v <= 0.0 || !v.is_finite() {
        return 1.0;
    }
    let magnitude = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|c| *c >= v)
        .unwrap_or(10.0 * magnitude)
}

/// Maps data coordinates into the plot area.
struct Frame {
    x_max: f64,
    y_max: f64,
}

impl Frame {
    fn x(&self, x: f64) -> f64 {
        MARGIN + (x / self.x_max.max(f64::EPSILON)) * (WIDTH - 2.0 * MARGIN)
    }

    fn y(&self, y: f64) -> f64 {
        HEIGHT - MARGIN + -(y / self.y_max.max(f64::EPSILON)) * (HEIGHT - 2.0 * MARGIN)
    }

    /// The SVG opening, axes, y grid with `y_unit` labels, and x labels.
    fn open(&self, y_unit: &str, x_labels: &[(f64, String)]) -> String {
        let mut svg = format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{HEIGHT}\" viewBox=\"0 0 {WIDTH} {HEIGHT}\">\n"
        );
        for i in 0..=4 {
            let v = self.y_max * f64::from(i) / 4.0;
            let y = self.y(v);
            let _ = writeln!(
                svg,
                "<line class=\"grid\" x1=\"{MARGIN}\" x2=\"{}\" y1=\"{y:.1}\" y2=\"{y:.1}\"/>\
                 <text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{v:.1} {y_unit}</text>",
                WIDTH - MARGIN,
                MARGIN - 4.0,
                y + 4.0
            );
        }
        for (x, label) in x_labels {
            let _ = writeln!(
                svg,
                "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{label}</text>",
                self.x(*x),
                HEIGHT - MARGIN + 16.0
            );
        }
        let _ = writeln!(
            svg,
            "<line class=\"axis\" x1=\"{MARGIN}\" x2=\"{}\" y1=\"{b}\" y2=\"{b}\"/>",
            WIDTH - MARGIN,
            b = HEIGHT - MARGIN
        );
        svg
    }

    /// A line through `points`, with a dot on each when there are too few
    /// for a line to show.
    fn polyline(&self, points: &[(f64, f64)], colour: &str) -> String {
        let pts: Vec<String> = points
            .iter()
            .map(|(x, y)| format!("{:.1},{:.1}", self.x(*x), self.y(*y)))
            .collect();
        let mut svg = format!(
            "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\" points=\"{}\"/>\n",
            pts.join(" ")
        );
        if points.len() < 3 {
            for (x, y) in points {
                let _ = writeln!(
                    svg,
                    "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"4\" fill=\"{colour}\"/>",
                    self.x(*x),
                    self.y(*y)
                );
            }
        }
        svg
    }
}

fn legend(items: &[(&str, &str)]) -> String {
    let mut svg = String::new();
    for (i, (name, colour)) in items.iter().enumerate() {
        let x = MARGIN + 10.0 + 110.0 * i as f64;
        let _ = writeln!(
            svg,
            "<rect x=\"{x}\" y=\"12\" width=\"12\" height=\"12\" fill=\"{colour}\"/>\
             <text x=\"{}\" y=\"22\">{name}</text>",
            x + 16.0
        );
    }
    svg
}

/// Latency against percentile, the percentile axis stretched by nines
/// (x = log10(1 / (1 - q))), as HdrHistogram's percentile plots are.
fn percentile_plot(phases: &[(&str, &Measured)]) -> String {
    let samples = 200;
    let curves: Vec<Vec<(f64, f64)>> = phases
        .iter()
        .map(|(_, m)| {
            (0..=samples)
                .map(|i| {
                    let nines = NINES as f64 * f64::from(i) / f64::from(samples);
                    let q = 1.0 - 10f64.powf(-nines);
                    let ms = if m.latency_us.is_empty() {
                        0.0
                    } else {
                        m.latency_us.value_at_quantile(q) as f64 / 1000.0
                    };
                    (nines, ms)
                })
                .collect()
        })
        .collect();
    let y_max = curves.iter().flatten().map(|p| p.1).fold(1.0, f64::max);
    let frame = Frame {
        x_max: NINES as f64,
        y_max: nice_ceiling(y_max),
    };
    let labels: Vec<(f64, String)> = (0..=NINES)
        .map(|n| {
            let pct = 100.0 * (1.0 - 10f64.powi(-(n as i32)));
            (n as f64, format!("{pct:.*} %", n.saturating_sub(2)))
        })
        .collect();
    let mut svg = frame.open("ms", &labels);
    for (i, curve) in curves.iter().enumerate() {
        svg.push_str(&frame.polyline(curve, PHASE_COLOURS[(i + 2 - curves.len()) % 2]));
    }
    svg.push_str(&phase_legend(phases));
    svg.push_str("</svg>\n");
    svg
}

fn phase_legend(phases: &[(&str, &Measured)]) -> String {
    let items: Vec<(&str, &str)> = phases
        .iter()
        .enumerate()
        .map(|(i, (name, _))| (*name, PHASE_COLOURS[(i + 2 - phases.len()) % 2]))
        .collect();
    legend(&items)
}

/// Replies per second in each bucket since the phase began.
fn throughput_plot(phases: &[(&str, &Measured)]) -> String {
    let per_second = 1.0 / THROUGHPUT_BUCKET.as_secs_f64();
    let bucket_s = THROUGHPUT_BUCKET.as_secs_f64();
    let curves: Vec<Vec<(f64, f64)>> = phases
        .iter()
        .map(|(_, m)| {
            m.replies_per_bucket
                .iter()
                .enumerate()
                .map(|(i, n)| ((i as f64 + 0.5) * bucket_s, f64::from(*n) * per_second))
                .collect()
        })
        .collect();
    let x_max = curves.iter().flatten().map(|p| p.0).fold(1.0, f64::max);
    let y_max = curves.iter().flatten().map(|p| p.1).fold(1.0, f64::max);
    let frame = Frame {
        x_max,
        y_max: nice_ceiling(y_max),
    };
    let svg_labels = seconds_labels(x_max);
    let mut svg = frame.open("/s", &svg_labels);
    for (i, curve) in curves.iter().enumerate() {
        svg.push_str(&frame.polyline(curve, PHASE_COLOURS[(i + 2 - curves.len()) % 2]));
    }
    svg.push_str(&phase_legend(phases));
    svg.push_str("</svg>\n");
    svg
}

fn seconds_labels(x_max: f64) -> Vec<(f64, String)> {
    (0..=5)
        .map(|i| {
            let x = x_max * f64::from(i) / 5.0;
            (x, format!("{x:.1} s"))
        })
        .collect()
}

/// Each party's share of the machine in each sample, as stacked bars, with
/// the average split in the legend.
fn cpu_plot(split: &CpuSplit) -> String {
    let step = SAMPLE_EVERY.as_secs_f64();
    let x_max = split.samples.last().map_or(step, |s| s.at_s).max(step);
    let frame = Frame {
        x_max,
        y_max: 100.0,
    };
    let mut svg = frame.open("%", &seconds_labels(x_max));
    let mut since = 0.0;
    for sample in &split.samples {
        // Each bar spans its own interval; the last one may be short.
        let x = frame.x(since);
        let bar = (frame.x(sample.at_s) - x - 1.0).max(1.0);
        since = sample.at_s;
        let mut below = 0.0;
        for (party, colour) in PARTIES.iter().zip(PARTY_COLOURS) {
            let share = sample.parties_pct.get(party).copied().unwrap_or(0.0);
            let (top, bottom) = (frame.y(below + share), frame.y(below));
            let _ = writeln!(
                svg,
                "<rect x=\"{x:.1}\" y=\"{top:.1}\" width=\"{bar:.1}\" height=\"{:.1}\" fill=\"{colour}\"/>",
                bottom - top
            );
            below += share;
        }
    }
    let names: Vec<String> = PARTIES
        .iter()
        .map(|p| format!("{} {:.0} %", p.label(), share(split, *p)))
        .collect();
    let items: Vec<(&str, &str)> = names
        .iter()
        .map(String::as_str)
        .zip(PARTY_COLOURS)
        .collect();
    svg.push_str(&legend(&items));
    svg.push_str("</svg>\n");
    let _ = writeln!(
        svg,
        "<p>machine busy {:.0} % of {} cores on average; each bar is {} ms.</p>",
        split.busy_pct,
        split.cores,
        SAMPLE_EVERY.as_millis()
    );
    svg
}

fn share(split: &CpuSplit, party: Party) -> f64 {
    split.parties_pct.get(&party).copied().unwrap_or(0.0)
}
