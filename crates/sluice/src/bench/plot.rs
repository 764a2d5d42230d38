//! `--plot FILE.svg`: throughput and latency percentiles over the run, one point per second.

use std::path::Path;

use anyhow::Context;
use plotters::prelude::*;

use super::stats::Sample;

/// A latency line: its name, colour and figure of a sample.
type Line = (&'static str, RGBColor, fn(&Sample) -> f64);

/// Draws `series` into an SVG file at `path`: MB/s on top, latency percentiles below.
pub fn draw(
    path: &Path,
    title: &str,
    latency_label: &str,
    series: &[Sample],
) -> anyhow::Result<()> {
    let root = SVGBackend::new(path, (960, 720)).into_drawing_area();
    let err = |e: DrawingAreaErrorKind<std::io::Error>| {
        anyhow::anyhow!("drawing {}: {e}", path.display())
    };
    root.fill(&WHITE).map_err(err)?;
    let root = root.titled(title, ("sans-serif", 22)).map_err(err)?;
    let (top, bottom) = root.split_vertically(340);
    let t_max = series.iter().map(|s| s.t_s).fold(1.0, f64::max);
    let mb_max = series.iter().map(|s| s.mb_per_sec).fold(1.0, f64::max) * 1.1;
    let mut chart = ChartBuilder::on(&top)
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..t_max, 0.0..mb_max)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("seconds")
        .y_desc("MB/s")
        .draw()
        .map_err(err)?;
    chart
        .draw_series(LineSeries::new(
            series.iter().map(|s| (s.t_s, s.mb_per_sec)),
            BLUE.stroke_width(2),
        ))
        .map_err(err)?
        .label("throughput (MB/s)")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], BLUE.stroke_width(2)));
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;

    let lat_max = series.iter().map(|s| s.latency_ms.max).fold(1.0, f64::max) * 1.1;
    let mut chart = ChartBuilder::on(&bottom)
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..t_max, 0.0..lat_max)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("seconds")
        .y_desc(format!("{latency_label} (ms)"))
        .draw()
        .map_err(err)?;
    let lines: [Line; 5] = [
        ("p50", GREEN, |s| s.latency_ms.p50),
        ("p95", CYAN, |s| s.latency_ms.p95),
        ("p99", MAGENTA, |s| s.latency_ms.p99),
        ("p99.9", RED, |s| s.latency_ms.p999),
        ("max", BLACK, |s| s.latency_ms.max),
    ];
    for (name, color, f) in lines {
        chart
            .draw_series(LineSeries::new(
                series.iter().map(|s| (s.t_s, f(s))),
                color.stroke_width(2),
            ))
            .map_err(err)?
            .label(name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;
    root.present()
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::stats::Latency;

    #[test]
    fn draws_an_svg() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run.svg");
        let series: Vec<Sample> = (1..=5)
            .map(|i| Sample {
                t_s: f64::from(i),
                records: 100 * i as u64,
                window_records: 100,
                records_per_sec: 100.0,
                mb_per_sec: 0.1 * f64::from(i),
                latency_ms: Latency {
                    avg: 1.0,
                    p50: 1.0,
                    p95: 2.0,
                    p99: 3.0,
                    p999: 4.0,
                    max: 5.0,
                },
            })
            .collect();
        draw(&path, "produce", "latency", &series).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..100.min(svg.len())]);
        assert!(svg.contains("MB/s"));
        assert!(svg.contains("p99.9"));
        assert!(svg.contains("<polyline"));
    }
}
