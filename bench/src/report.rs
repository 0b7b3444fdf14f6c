//! Results: each figure's samples per variant, their median, min and max, the ratio of
//! the subject (assist) to each baseline with PASS/MISS against the targets, as a
//! table for people and as JSON for comparing commits.
//!
//! Ratios are always `subject median ÷ baseline median`. Targets are checked here and
//! printed, never asserted: a miss is information, not a failure.

use serde::Serialize;
use std::fmt::Write as _;

/// Which direction is better for a figure.
#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Better {
    Higher,
    Lower,
}

/// The samples of one variant (one per round), or why it was skipped.
#[derive(Clone, Debug, Serialize)]
pub struct Series {
    pub variant: String,
    pub samples: Vec<f64>,
    pub median: Option<f64>,
    pub min: Option<f64>,
    pub max: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
}

/// `subject ÷ baseline` must be at least (`Higher`) or at most (`Lower`) `ratio`.
#[derive(Clone, Debug, Serialize)]
pub struct Target {
    pub baseline: String,
    pub op: &'static str,
    pub ratio: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct RatioResult {
    pub baseline: String,
    pub ratio: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// `None` when there is no target, or a side was skipped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pass: Option<bool>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Figure {
    pub id: String,
    pub title: String,
    pub unit: String,
    pub better: Better,
    /// The variant the ratios are taken of (assist); baselines are the others.
    pub subject: String,
    pub series: Vec<Series>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<Target>,
    pub ratios: Vec<RatioResult>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

pub fn median(v: &[f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    Some(if n % 2 == 1 { s[n / 2] } else { (s[n / 2 - 1] + s[n / 2]) / 2.0 })
}

/// Nearest-rank percentile (`p` in 0..=100) of unsorted samples.
pub fn percentile(v: &[f64], p: f64) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * s.len() as f64).ceil().max(1.0) as usize;
    Some(s[rank.min(s.len()) - 1])
}

impl Series {
    pub fn new(variant: &str, samples: Vec<f64>) -> Self {
        let min = samples.iter().copied().reduce(f64::min);
        let max = samples.iter().copied().reduce(f64::max);
        Self { variant: variant.to_owned(), median: median(&samples), min, max, samples, skipped: None }
    }

    pub fn skipped(variant: &str, why: &str) -> Self {
        Self { skipped: Some(why.to_owned()), ..Self::new(variant, Vec::new()) }
    }
}

impl Figure {
    pub fn new(id: &str, title: &str, unit: &str, better: Better, subject: &str) -> Self {
        Self {
            id: id.to_owned(),
            title: title.to_owned(),
            unit: unit.to_owned(),
            better,
            subject: subject.to_owned(),
            series: Vec::new(),
            targets: Vec::new(),
            ratios: Vec::new(),
            notes: Vec::new(),
        }
    }

    pub fn target(mut self, baseline: &str, ratio: f64) -> Self {
        let op = if self.better == Better::Higher { ">=" } else { "<=" };
        self.targets.push(Target { baseline: baseline.to_owned(), op, ratio });
        self
    }

    pub fn note(&mut self, note: impl Into<String>) {
        self.notes.push(note.into());
    }

    /// Adds a series; samples that are empty without a reason count as skipped.
    pub fn push(&mut self, series: Series) {
        self.series.push(series);
    }

    fn median_of(&self, variant: &str) -> Option<f64> {
        self.series.iter().find(|s| s.variant == variant).and_then(|s| s.median)
    }

    /// Computes the ratios against every baseline; call once the series are in.
    pub fn finish(mut self) -> Self {
        let subject = self.median_of(&self.subject);
        self.ratios = self
            .series
            .iter()
            .filter(|s| s.variant != self.subject)
            .map(|base| {
                let ratio = match (subject, base.median) {
                    (Some(a), Some(b)) if b != 0.0 => Some(a / b),
                    _ => None,
                };
                let target = self.targets.iter().find(|t| t.baseline == base.variant);
                let pass = target
                    .and_then(|t| ratio.map(|r| if t.op == ">=" { r >= t.ratio } else { r <= t.ratio }));
                RatioResult {
                    baseline: base.variant.clone(),
                    ratio,
                    target: target.map(|t| format!("{} {}", t.op, t.ratio)),
                    pass,
                }
            })
            .collect();
        self
    }
}

fn num(v: Option<f64>) -> String {
    match v {
        None => "-".into(),
        Some(x) if x.abs() >= 1000.0 => format!("{x:.0}"),
        Some(x) if x.abs() >= 100.0 => format!("{x:.1}"),
        Some(x) if x.abs() >= 1.0 => format!("{x:.2}"),
        Some(x) => format!("{x:.3}"),
    }
}

/// The table: per figure, one row per variant; baselines carry the ratio and the target.
pub fn table(figures: &[Figure]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<28} {:>11} {:>11} {:>11}   {:<26} target",
        "variant", "median", "min", "max", "ratio (subject/this)"
    );
    for f in figures {
        let better = if f.better == Better::Higher { "higher is better" } else { "lower is better" };
        let _ = writeln!(out, "\n{} [{}; {better}]", f.title, f.unit);
        for s in &f.series {
            let label =
                if s.variant == f.subject { format!("{} (subject)", s.variant) } else { s.variant.clone() };
            if let Some(why) = &s.skipped {
                let _ = writeln!(out, "  {label:<26} skipped: {why}");
                continue;
            }
            let (ratio, target) = match f.ratios.iter().find(|r| r.baseline == s.variant) {
                Some(r) => {
                    let verdict = match r.pass {
                        Some(true) => " PASS",
                        Some(false) => " MISS",
                        None => "",
                    };
                    (num(r.ratio), format!("{}{verdict}", r.target.clone().unwrap_or_default()))
                }
                None => (String::new(), String::new()),
            };
            let _ = writeln!(
                out,
                "  {label:<26} {:>11} {:>11} {:>11}   {ratio:<26} {target}",
                num(s.median),
                num(s.min),
                num(s.max)
            );
        }
        for n in &f.notes {
            let _ = writeln!(out, "  note: {n}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_percentile_and_ratios() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), Some(50.0));
        assert_eq!(percentile(&v, 99.0), Some(99.0));
        let mut f = Figure::new("x", "x", "MiB/s", Better::Higher, "a").target("b", 1.5);
        f.push(Series::new("a", vec![300.0]));
        f.push(Series::new("b", vec![100.0]));
        f.push(Series::skipped("c", "no sshd"));
        let f = f.finish();
        assert_eq!(f.ratios[0].ratio, Some(3.0));
        assert_eq!(f.ratios[0].pass, Some(true));
        assert_eq!(f.ratios[1].ratio, None);
        assert!(table(&[f]).contains("PASS"));
    }
}
