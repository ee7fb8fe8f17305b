//! `--report FILE.svg` / `FILE.html`: the evidence drawn with plotters — latency by request
//! number coloured by outcome (timeouts marked with a cross, the slow threshold of a two-mode
//! distribution as a dashed line), the target's resident memory over the probe, and the
//! saturation ramp's throughput and p99 latency by connections. The SVG is self-contained
//! (text stays SVG text, no fonts or scripts to fetch); the HTML page embeds it next to the text
//! report.

use plotters::prelude::*;

use super::model::Outcome;
use super::report::Report;

/// Pixels per panel.
const PANEL: (u32, u32) = (960, 320);

fn err(e: impl std::fmt::Display) -> String {
    format!("cannot draw the report: {e}")
}

/// The colour and legend name of an outcome.
fn style(o: &Outcome) -> (RGBColor, &'static str) {
    match o {
        Outcome::Status { code } if *code < 400 => (RGBColor(46, 125, 50), "2xx/3xx"),
        Outcome::Status { code } if *code < 500 => (RGBColor(239, 108, 0), "4xx"),
        Outcome::Status { .. } => (RGBColor(198, 40, 40), "5xx"),
        Outcome::Timeout => (RGBColor(106, 27, 154), "timeout"),
        _ => (RGBColor(97, 97, 97), "connection error"),
    }
}

/// The report as one SVG document.
pub fn svg(report: &Report) -> Result<String, String> {
    let memory: Vec<(f64, f64)> = report
        .process
        .as_ref()
        .map(|p| {
            p.rss_by_request
                .iter()
                .map(|(n, b)| (*n as f64, *b as f64 / (1024.0 * 1024.0)))
                .collect()
        })
        .unwrap_or_default();
    let ramp = report.ramp.as_ref().filter(|r| !r.steps.is_empty());
    let panels = 1 + usize::from(memory.len() >= 2) + usize::from(ramp.is_some());
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (PANEL.0, PANEL.1 * panels as u32))
            .into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let areas = root.split_evenly((panels, 1));
        let mut next = areas.iter();
        if let Some(area) = next.next() {
            latency_panel(report, area)?;
        }
        if memory.len() >= 2
            && let Some(area) = next.next()
        {
            memory_panel(&memory, area)?;
        }
        if let (Some(r), Some(area)) = (ramp, next.next()) {
            ramp_panel(r, area)?;
        }
        root.present().map_err(err)?;
    }
    Ok(out)
}

type Area<'a> = DrawingArea<SVGBackend<'a>, plotters::coord::Shift>;

fn latency_panel(report: &Report, area: &Area<'_>) -> Result<(), String> {
    let n = report.samples.len().max(1) as f64;
    let ymax = report
        .samples
        .iter()
        .map(|s| s.latency_ms)
        .fold(1.0, f64::max)
        * 1.1;
    let mut chart = ChartBuilder::on(area)
        .caption(
            format!("Latency by request: {}", report.target),
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(64)
        .build_cartesian_2d(0.0..n + 1.0, 0.0..ymax)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("request number")
        .y_desc("latency (ms)")
        .draw()
        .map_err(err)?;
    let mut names: Vec<&'static str> = Vec::new();
    for s in &report.samples {
        let (_, name) = style(&s.outcome);
        if !names.contains(&name) {
            names.push(name);
        }
    }
    for name in names {
        let points: Vec<(f64, f64, RGBColor, bool)> = report
            .samples
            .iter()
            .filter(|s| style(&s.outcome).1 == name)
            .map(|s| {
                let (c, _) = style(&s.outcome);
                (
                    s.ordinal as f64,
                    s.latency_ms,
                    c,
                    s.outcome == Outcome::Timeout,
                )
            })
            .collect();
        let color = points.first().map_or(BLACK, |p| p.2);
        let timeout = points.first().is_some_and(|p| p.3);
        if timeout {
            chart
                .draw_series(
                    points
                        .iter()
                        .map(|p| Cross::new((p.0, p.1), 5, color.stroke_width(2))),
                )
                .map_err(err)?
                .label(name)
                .legend(move |(x, y)| Cross::new((x, y), 5, color.stroke_width(2)));
        } else {
            chart
                .draw_series(
                    points
                        .iter()
                        .map(|p| Circle::new((p.0, p.1), 3, color.filled())),
                )
                .map_err(err)?
                .label(name)
                .legend(move |(x, y)| Circle::new((x, y), 3, color.filled()));
        }
    }
    if let Some(t) = report.slow_threshold_ms {
        let grey = RGBColor(120, 120, 120);
        chart
            .draw_series(DashedLineSeries::new(
                vec![(0.0, t), (n + 1.0, t)],
                6,
                4,
                grey.stroke_width(1),
            ))
            .map_err(err)?
            .label("slow threshold")
            .legend(move |(x, y)| PathElement::new(vec![(x - 8, y), (x + 8, y)], grey));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(err)
}

fn memory_panel(memory: &[(f64, f64)], area: &Area<'_>) -> Result<(), String> {
    let xmax = memory.iter().map(|p| p.0).fold(1.0, f64::max);
    let ymax = memory.iter().map(|p| p.1).fold(1.0, f64::max) * 1.1;
    let mut chart = ChartBuilder::on(area)
        .caption(
            "Resident memory of the target during the probe",
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(64)
        .build_cartesian_2d(0.0..xmax + 1.0, 0.0..ymax)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("request number")
        .y_desc("RSS (MiB)")
        .draw()
        .map_err(err)?;
    let blue = RGBColor(21, 101, 192);
    chart
        .draw_series(LineSeries::new(
            memory.iter().copied(),
            blue.stroke_width(2),
        ))
        .map_err(err)?
        .label("resident memory (MiB)")
        .legend(move |(x, y)| PathElement::new(vec![(x - 8, y), (x + 8, y)], blue));
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(err)
}

fn ramp_panel(r: &super::report::RampEvidence, area: &Area<'_>) -> Result<(), String> {
    let k = r.steps.len() as f64;
    let tmax = r.steps.iter().map(|s| s.throughput).fold(1.0, f64::max) * 1.1;
    let pmax = r.steps.iter().filter_map(|s| s.p99_ms).fold(1.0, f64::max) * 1.1;
    let labels: Vec<usize> = r.steps.iter().map(|s| s.connections).collect();
    let mut chart = ChartBuilder::on(area)
        .caption(
            match &r.knee {
                Some(knee) => format!(
                    "Saturation ramp: knee at {} connections ({})",
                    knee.at_connections,
                    knee.kind.describe()
                ),
                None => "Saturation ramp: no knee".to_string(),
            },
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(64)
        .right_y_label_area_size(64)
        .build_cartesian_2d(-0.5..k - 0.5, 0.0..tmax)
        .map_err(err)?
        .set_secondary_coord(-0.5..k - 0.5, 0.0..pmax);
    let fmt = move |x: &f64| {
        let i = x.round();
        if (x - i).abs() < 0.01 && i >= 0.0 {
            labels
                .get(i as usize)
                .map_or(String::new(), |c| c.to_string())
        } else {
            String::new()
        }
    };
    chart
        .configure_mesh()
        .x_desc("connections")
        .y_desc("throughput (req/s)")
        .x_labels(r.steps.len() * 2 + 1)
        .x_label_formatter(&fmt)
        .draw()
        .map_err(err)?;
    chart
        .configure_secondary_axes()
        .y_desc("p99 latency (ms)")
        .draw()
        .map_err(err)?;
    let green = RGBColor(46, 125, 50);
    let red = RGBColor(198, 40, 40);
    let tp: Vec<(f64, f64)> = r
        .steps
        .iter()
        .enumerate()
        .map(|(i, s)| (i as f64, s.throughput))
        .collect();
    chart
        .draw_series(LineSeries::new(tp.iter().copied(), green.stroke_width(2)))
        .map_err(err)?
        .label("throughput (req/s)")
        .legend(move |(x, y)| PathElement::new(vec![(x - 8, y), (x + 8, y)], green));
    chart
        .draw_series(tp.iter().map(|p| Circle::new(*p, 4, green.filled())))
        .map_err(err)?;
    let p99: Vec<(f64, f64)> = r
        .steps
        .iter()
        .enumerate()
        .filter_map(|(i, s)| s.p99_ms.map(|p| (i as f64, p)))
        .collect();
    chart
        .draw_secondary_series(LineSeries::new(p99, red.stroke_width(2)))
        .map_err(err)?
        .label("p99 latency (ms)")
        .legend(move |(x, y)| PathElement::new(vec![(x - 8, y), (x + 8, y)], red));
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(err)
}

/// A self-contained HTML page: the SVG and the text report.
pub fn html(report: &Report) -> Result<String, String> {
    let svg = svg(report)?;
    let escape = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
    };
    Ok(format!(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <title>Diagnosis: {t}</title>\n<style>body {{ font-family: sans-serif; margin: 2em; }} \
         pre {{ background: #f5f5f5; padding: 1em; overflow-x: auto; }}</style>\n</head>\n<body>\n\
         <h1>Diagnosis: {t}</h1>\n{svg}\n<pre>{text}</pre>\n</body>\n</html>\n",
        t = escape(&report.target),
        text = escape(&report.to_text()),
    ))
}
