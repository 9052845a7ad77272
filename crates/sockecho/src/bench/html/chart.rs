//! The SVG line chart the report page is drawn with: a plot area with ticks, tick labels and
//! axis titles, one path per series (with a dot on each point where the data is sparse), labelled
//! vertical markers, and a legend below the plot.
//!
//! Hand-written rather than drawn with a chart crate: the percentile axis needs ticks of our own
//! choosing on a log scale of 1/(1-p), and every element carries a class and the name of its
//! series (`data-series`) so that tests, in Rust and in a browser, can find what was drawn.

use std::fmt::Write as _;

/// How values map onto an axis.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Scale {
    Linear,
    /// Base-10 logarithm; values at or below zero cannot be placed and are left out.
    Log,
}

/// One axis: its range, its scale, its ticks and its title (with the unit).
#[derive(Debug, Clone)]
pub struct Axis {
    pub title: String,
    pub scale: Scale,
    pub min: f64,
    pub max: f64,
    /// Position and label of each tick.
    pub ticks: Vec<(f64, String)>,
}

impl Axis {
    /// A linear axis from 0 (or below, for negative data) to a round number above `hi`,
    /// with about six ticks at multiples of 1, 2, 2.5 or 5 × 10ⁿ.
    pub fn linear(title: impl Into<String>, lo: f64, hi: f64) -> Axis {
        let lo = lo.min(0.0);
        let hi = if hi > lo { hi } else { lo + 1.0 };
        let step = nice_step((hi - lo) / 6.0);
        let min = (lo / step).floor() * step;
        let max = (hi / step).ceil() * step;
        let mut ticks = Vec::new();
        let mut i = 0.0;
        while min + i * step <= max + step * 1e-9 {
            let v = min + i * step;
            ticks.push((v, number(v)));
            i += 1.0;
        }
        Axis {
            title: title.into(),
            scale: Scale::Linear,
            min,
            max,
            ticks,
        }
    }

    /// A log axis over whole decades around `lo..hi` (both above zero), a tick at each decade
    /// labelled by `label`.
    pub fn log(title: impl Into<String>, lo: f64, hi: f64, label: fn(f64) -> String) -> Axis {
        let lo = if lo > 0.0 { lo } else { 1.0 };
        let hi = if hi > lo { hi } else { lo * 10.0 };
        let first = lo.log10().floor() as i32;
        let mut last = hi.log10().ceil() as i32;
        if last <= first {
            last = first + 1;
        }
        let ticks = (first..=last)
            .map(|e| (10f64.powi(e), label(10f64.powi(e))))
            .collect();
        Axis {
            title: title.into(),
            scale: Scale::Log,
            min: 10f64.powi(first),
            max: 10f64.powi(last),
            ticks,
        }
    }

    /// The percentile axis of HdrHistogram's plots: position 1/(1-p) on a log scale, so 0 %,
    /// 90 %, 99 %, 99.9 % … are evenly spaced, up to the decade that holds `last` (at least
    /// 99.99 %, at most 99.999999 %, past which a curve is cut).
    pub fn percentile(last: f64) -> Axis {
        let decades = (last.max(1.0).log10().ceil() as i32).clamp(4, 8);
        let ticks = (0..=decades)
            .map(|d| (10f64.powi(d), percentile_label(d)))
            .collect();
        Axis {
            title: "percentile".into(),
            scale: Scale::Log,
            min: 1.0,
            max: 10f64.powi(decades),
            ticks,
        }
    }

    /// Where `v` falls, from 0 (the axis's start) to 1 (its end); `None` if it cannot be placed.
    fn fraction(&self, v: f64) -> Option<f64> {
        let f = match self.scale {
            Scale::Linear => (v - self.min) / (self.max - self.min),
            Scale::Log if v > 0.0 => {
                (v.log10() - self.min.log10()) / (self.max.log10() - self.min.log10())
            }
            Scale::Log => return None,
        };
        f.is_finite().then_some(f)
    }
}

/// "0%", "90%", "99%", "99.9%" … for the tick at 10^`decade` on the percentile axis.
fn percentile_label(decade: i32) -> String {
    match decade {
        0 => "0%".into(),
        1 => "90%".into(),
        d => format!("99.{}%", "9".repeat(d as usize - 2)).replace(".%", "%"),
    }
}

/// 1, 2, 2.5 or 5 × 10ⁿ, the smallest at or above `raw`.
fn nice_step(raw: f64) -> f64 {
    if raw <= 0.0 || !raw.is_finite() {
        return 1.0;
    }
    let magnitude = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|&s| s >= raw * (1.0 - 1e-9))
        .unwrap_or(10.0 * magnitude)
}

/// A tick label: `0`, `2.5`, `40`, `15k`, `1.2M`.
pub fn number(v: f64) -> String {
    let a = v.abs();
    let (scaled, suffix) = if a >= 1e9 {
        (v / 1e9, "G")
    } else if a >= 1e6 {
        (v / 1e6, "M")
    } else if a >= 1e4 {
        (v / 1e3, "k")
    } else {
        (v, "")
    };
    let text = format!("{scaled:.3}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    let text = if text == "-0" { "0" } else { text };
    format!("{text}{suffix}")
}

/// A line to draw.
#[derive(Debug, Clone)]
pub struct Series {
    pub name: String,
    /// Points in data units, in drawing order.
    pub points: Vec<(f64, f64)>,
    /// A dot on every point: for data known only at a few points, so the line between them is
    /// not taken for measurements.
    pub dots: bool,
    pub dashed: bool,
    /// Index into the palette.
    pub color: usize,
}

/// A labelled vertical line at an x value.
#[derive(Debug, Clone)]
pub struct Marker {
    pub x: f64,
    pub label: String,
    /// `data-marker` of the line, so tests can tell markers apart (`knee`, `max`).
    pub kind: &'static str,
}

/// A chart ready to be drawn.
#[derive(Debug, Clone)]
pub struct Chart {
    /// `id` of the `<svg>` element.
    pub id: String,
    pub title: String,
    pub width: f64,
    pub height: f64,
    pub x: Axis,
    pub y: Axis,
    pub series: Vec<Series>,
    pub markers: Vec<Marker>,
}

/// Okabe–Ito colours, told apart by colour-blind readers too.
pub const PALETTE: [&str; 7] = [
    "#0072b2", "#d55e00", "#009e73", "#cc79a7", "#e69f00", "#56b4e9", "#000000",
];

const LEFT: f64 = 72.0;
const RIGHT: f64 = 40.0;
const TOP: f64 = 34.0;
const BOTTOM: f64 = 52.0;
const LEGEND_ROW: f64 = 18.0;

impl Chart {
    /// The chart as an `<svg>` element with a viewBox, so it scales with the page.
    pub fn to_svg(&self) -> String {
        let layout = self.legend_layout();
        let rows = layout.last().map_or(0, |l| l.2 + 1);
        let w = self.width;
        // The legend's rows are added below the chart's own height.
        let h = self.height;
        let total_h = h + rows as f64 * LEGEND_ROW + if rows > 0 { 6.0 } else { 0.0 };
        let plot_w = w - LEFT - RIGHT;
        let plot_h = h - TOP - BOTTOM;
        let px = |v: f64| self.x.fraction(v).map(|f| LEFT + f * plot_w);
        let py = |v: f64| self.y.fraction(v).map(|f| TOP + (1.0 - f) * plot_h);
        let mut s = String::new();
        let _ = write!(
            s,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" id=\"{}\" class=\"chart\" viewBox=\"0 0 {w} {total_h}\" \
             role=\"img\" aria-label=\"{}\">",
            escape(&self.id),
            escape(&self.title)
        );
        let _ = write!(
            s,
            "<text class=\"chart-title\" x=\"{}\" y=\"20\" text-anchor=\"middle\">{}</text>",
            LEFT + plot_w / 2.0,
            escape(&self.title)
        );
        let _ = write!(
            s,
            "<rect class=\"plot\" x=\"{LEFT}\" y=\"{TOP}\" width=\"{plot_w}\" height=\"{plot_h}\"/>"
        );
        // Grid lines and tick labels.
        for (v, label) in &self.x.ticks {
            if let Some(x) = px(*v) {
                let _ = write!(
                    s,
                    "<line class=\"grid\" x1=\"{x:.1}\" y1=\"{TOP}\" x2=\"{x:.1}\" y2=\"{}\"/>\
                     <text class=\"tick x-tick\" x=\"{x:.1}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
                    TOP + plot_h,
                    TOP + plot_h + 16.0,
                    escape(label)
                );
            }
        }
        for (v, label) in &self.y.ticks {
            if let Some(y) = py(*v) {
                let _ = write!(
                    s,
                    "<line class=\"grid\" x1=\"{LEFT}\" y1=\"{y:.1}\" x2=\"{}\" y2=\"{y:.1}\"/>\
                     <text class=\"tick y-tick\" x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
                    LEFT + plot_w,
                    LEFT - 6.0,
                    y + 4.0,
                    escape(label)
                );
            }
        }
        let _ = write!(
            s,
            "<text class=\"axis-title x-title\" x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>\
             <text class=\"axis-title y-title\" transform=\"translate(16 {}) rotate(-90)\" \
             text-anchor=\"middle\">{}</text>",
            LEFT + plot_w / 2.0,
            h - 10.0,
            escape(&self.x.title),
            TOP + plot_h / 2.0,
            escape(&self.y.title)
        );
        let clip = format!("{}-clip", self.id);
        let _ = write!(
            s,
            "<clipPath id=\"{}\"><rect x=\"{LEFT}\" y=\"{}\" width=\"{plot_w}\" height=\"{}\"/></clipPath>\
             <g clip-path=\"url(#{})\">",
            escape(&clip),
            TOP - 4.0,
            plot_h + 8.0,
            escape(&clip)
        );
        for m in &self.markers {
            if let Some(x) = px(m.x) {
                let _ = write!(
                    s,
                    "<line class=\"marker\" data-marker=\"{}\" x1=\"{x:.1}\" y1=\"{TOP}\" x2=\"{x:.1}\" y2=\"{}\"/>",
                    m.kind,
                    TOP + plot_h
                );
            }
        }
        for series in &self.series {
            let color = PALETTE[series.color % PALETTE.len()];
            let placed: Vec<(f64, f64)> = series
                .points
                .iter()
                .filter_map(|&(x, y)| Some((px(x)?, py(y)?)))
                .collect();
            if placed.is_empty() {
                continue;
            }
            let mut d = String::new();
            for (i, (x, y)) in placed.iter().enumerate() {
                let _ = write!(d, "{}{x:.1},{y:.1}", if i == 0 { "M" } else { " L" });
            }
            let _ = write!(
                s,
                "<path class=\"series\" data-series=\"{}\" d=\"{d}\" stroke=\"{color}\"{}/>",
                escape(&series.name),
                if series.dashed {
                    " stroke-dasharray=\"6 4\""
                } else {
                    ""
                }
            );
            if series.dots {
                for (x, y) in &placed {
                    let _ = write!(
                        s,
                        "<circle class=\"dot\" data-series=\"{}\" cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"3\" fill=\"{color}\"/>",
                        escape(&series.name)
                    );
                }
            }
        }
        s.push_str("</g>");
        // Marker labels outside the clip, so they are never cut.
        for m in &self.markers {
            if let Some(x) = px(m.x) {
                let anchor = if x > LEFT + plot_w * 0.6 {
                    "end"
                } else {
                    "start"
                };
                let dx = if anchor == "end" { -4.0 } else { 4.0 };
                let _ = write!(
                    s,
                    "<text class=\"marker-label\" data-marker=\"{}\" x=\"{:.1}\" y=\"{}\" text-anchor=\"{anchor}\">{}</text>",
                    m.kind,
                    x + dx,
                    TOP + 14.0,
                    escape(&m.label)
                );
            }
        }
        self.legend(&mut s, &layout);
        s.push_str("</svg>");
        s
    }

    /// Where each legend entry goes, below the axis title, in rows as wide as the chart:
    /// (series, x, row). Outside the plot, so it never hides a curve or a marker.
    fn legend_layout(&self) -> Vec<(&Series, f64, usize)> {
        let mut placed = Vec::new();
        let (mut x, mut row) = (LEFT, 0);
        for series in self.series.iter().filter(|x| !x.name.is_empty()) {
            // Sample line, gap, then the name at about 6.6 px per character of 11 px text.
            let width = 34.0 + series.name.chars().count() as f64 * 6.6 + 18.0;
            if x > LEFT && x + width > self.width - RIGHT {
                x = LEFT;
                row += 1;
            }
            placed.push((series, x, row));
            x += width;
        }
        placed
    }

    fn legend(&self, s: &mut String, layout: &[(&Series, f64, usize)]) {
        if layout.is_empty() {
            return;
        }
        s.push_str("<g class=\"legend\">");
        for (series, x, row) in layout {
            let y = self.height + 4.0 + *row as f64 * LEGEND_ROW;
            let color = PALETTE[series.color % PALETTE.len()];
            let _ = write!(
                s,
                "<line class=\"legend-line\" x1=\"{x:.1}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" stroke=\"{color}\"{}/>\
                 <text class=\"legend-entry\" data-series=\"{}\" x=\"{:.1}\" y=\"{y:.1}\">{}</text>",
                y - 4.0,
                x + 28.0,
                y - 4.0,
                if series.dashed {
                    " stroke-dasharray=\"6 4\""
                } else {
                    ""
                },
                escape(&series.name),
                x + 34.0,
                escape(&series.name)
            );
        }
        s.push_str("</g>");
    }
}

/// Text made safe for HTML and SVG, in element content and in quoted attributes alike.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_and_labels() {
        let a = Axis::linear("rate (msg/s)", 0.0, 123_000.0);
        assert_eq!(a.min, 0.0);
        assert_eq!(a.max, 125_000.0);
        let labels: Vec<&str> = a.ticks.iter().map(|t| t.1.as_str()).collect();
        assert_eq!(labels, ["0", "25k", "50k", "75k", "100k", "125k"]);
        let p = Axis::percentile(3_000.0);
        let labels: Vec<&str> = p.ticks.iter().map(|t| t.1.as_str()).collect();
        assert_eq!(labels, ["0%", "90%", "99%", "99.9%", "99.99%"]);
        assert_eq!(Axis::percentile(5e5).ticks.len(), 7);
        assert_eq!(Axis::percentile(5e9).ticks.len(), 9);
        let l = Axis::log("latency (µs)", 42.0, 5_000.0, number);
        assert_eq!((l.min, l.max), (10.0, 10_000.0));
        assert_eq!(l.ticks[3].1, "10k");
        assert_eq!(number(2.5), "2.5");
        assert_eq!(number(1_500_000.0), "1.5M");
        assert_eq!(number(0.1 + 0.2), "0.3");
    }

    #[test]
    fn svg_has_series_ticks_titles_and_escapes_names() {
        let chart = Chart {
            id: "c".into(),
            title: "t".into(),
            width: 600.0,
            height: 300.0,
            x: Axis::percentile(100.0),
            y: Axis::linear("latency (µs)", 0.0, 100.0),
            series: vec![Series {
                name: "a<b>&\"c\"".into(),
                points: vec![(1.0, 10.0), (10.0, 20.0), (0.0, 5.0), (100.0, 90.0)],
                dots: true,
                dashed: false,
                color: 0,
            }],
            markers: vec![Marker {
                x: 10.0,
                label: "knee <here>".into(),
                kind: "knee",
            }],
        };
        let svg = chart.to_svg();
        assert!(
            svg.contains("data-series=\"a&lt;b&gt;&amp;&quot;c&quot;\""),
            "{svg}"
        );
        assert!(!svg.contains("a<b>"), "{svg}");
        assert!(svg.contains(">latency (µs)</text>"), "{svg}");
        assert!(svg.contains(">percentile</text>"), "{svg}");
        assert!(svg.contains(">99.99%</text>"), "{svg}");
        assert!(svg.contains(">knee &lt;here&gt;</text>"), "{svg}");
        // x = 0 cannot sit on a log axis: three of the four points are drawn.
        assert_eq!(svg.matches("<circle class=\"dot\"").count(), 3, "{svg}");
        let path = svg
            .split(" d=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        assert_eq!(path.matches('L').count(), 2, "{path}");
        assert_eq!(escape("'&'"), "&#39;&amp;&#39;");
    }
}
