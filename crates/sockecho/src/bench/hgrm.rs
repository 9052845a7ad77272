//! HdrHistogram's percentile distribution text (`.hgrm`, `--save-hgrm`): the table Java's
//! `outputPercentileDistribution` prints and HdrHistogram's plotter (plotFiles.html) and
//! similar tools read — a header line, one line per step of the percentile ladder with the
//! value, the percentile, the count up to it and `1/(1-percentile)`, and the mean, deviation,
//! maximum, count and bucket geometry as footer comments.
//!
//! Values are written in milliseconds, the unit the plotter labels its axis with (histograms
//! hold nanoseconds).

use std::io::{self, Write};

use hdrhistogram::Histogram;

/// Nanoseconds per millisecond, the scaling of every value written.
const NS_PER_MS: f64 = 1e6;

/// Ladder steps per halving of the distance to 100 %, as HdrHistogram's tools default to.
const TICKS_PER_HALF_DISTANCE: u32 = 5;

/// Writes the percentile distribution of `h` (nanoseconds) in milliseconds.
pub fn write(out: &mut impl Write, h: &Histogram<u64>) -> io::Result<()> {
    writeln!(
        out,
        "{:>12} {:>14} {:>10} {:>14}\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    )?;
    let mut total = 0u64;
    if !h.is_empty() {
        for step in h.iter_quantiles(TICKS_PER_HALF_DISTANCE) {
            total += step.count_since_last_iteration();
            let value = step.value_iterated_to() as f64 / NS_PER_MS;
            let q = step.quantile_iterated_to();
            if q < 1.0 {
                writeln!(
                    out,
                    "{value:12.3} {q:2.12} {total:10} {:14.2}",
                    1.0 / (1.0 - q)
                )?;
            } else {
                writeln!(out, "{value:12.3} {q:2.12} {total:10}")?;
            }
        }
    }
    let (mean, stdev, max) = if h.is_empty() {
        (0.0, 0.0, 0.0)
    } else {
        (
            h.mean() / NS_PER_MS,
            h.stdev() / NS_PER_MS,
            h.max() as f64 / NS_PER_MS,
        )
    };
    // The sub-bucket count HdrHistogram derives from the precision: the power of two that
    // holds two units of the last significant digit.
    let sub_buckets = (2 * 10u64.pow(u32::from(h.sigfig()))).next_power_of_two();
    writeln!(
        out,
        "#[Mean    = {mean:12.3}, StdDeviation   = {stdev:12.3}]"
    )?;
    writeln!(
        out,
        "#[Max     = {max:12.3}, Total count    = {:12}]",
        h.len()
    )?;
    writeln!(
        out,
        "#[Buckets = {:12}, SubBuckets     = {sub_buckets:12}]",
        h.buckets()
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::recorder::new_histogram;

    #[test]
    fn the_distribution_as_hdrhistogram_prints_it() {
        let mut h = new_histogram();
        for i in 1..=1_000u64 {
            h.record(i * 1_000).unwrap();
        }
        let mut out = Vec::new();
        write(&mut out, &h).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "       Value     Percentile TotalCount 1/(1-Percentile)"
        );
        assert_eq!(lines[1], "");
        assert_eq!(
            lines[2],
            "       0.001 0.000000000000          1           1.00"
        );
        // The ladder ends at 100 % with every sample, without the last column.
        let last = lines[lines.len() - 4];
        assert_eq!(last, "       1.000 1.000000000000       1000");
        let counts: Vec<u64> = lines[2..lines.len() - 3]
            .iter()
            .map(|l| l.split_whitespace().nth(2).unwrap().parse().unwrap())
            .collect();
        assert!(counts.windows(2).all(|w| w[0] <= w[1]), "{text}");
        assert!(
            lines[lines.len() - 3].starts_with("#[Mean    =        0.50"),
            "{text}"
        );
        assert_eq!(
            lines[lines.len() - 2],
            "#[Max     =        1.000, Total count    =         1000]"
        );
        assert!(lines[lines.len() - 1].ends_with("SubBuckets     =         2048]"));
    }

    #[test]
    fn an_empty_histogram_has_header_and_footer() {
        let mut out = Vec::new();
        write(&mut out, &new_histogram()).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text.lines().count(), 5, "{text}");
        assert!(text.contains("Total count    =            0]"));
    }
}
