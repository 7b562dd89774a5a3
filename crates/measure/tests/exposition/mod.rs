//! A strict reader of Prometheus text exposition 0.0.4, and the two PromQL steps a user takes to
//! aggregate a histogram across workers (`sum by (le)`, then `histogram_quantile`). Shared by
//! path: the writer's tests here, the ui server's (crates/ui/tests/server.rs) and the
//! end-to-end tests' (crates/cli/tests/common/mod.rs: every scrape of a cluster initializer's
//! `--metrics` goes through it, and crates/cli/tests/ui.rs reads live pages' with it).
#![allow(dead_code)] // each includer uses its own part

use std::collections::{BTreeMap, HashMap, HashSet};

/// A metric or label name as the text format allows it.
fn name_ok(n: &str) -> bool {
    let mut cs = n.chars();
    cs.next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && cs.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// A sample value: a float in Go's spelling (`+Inf`, `-Inf`, `NaN`) or Rust's for the rest.
fn value(text: &str, line: &str) -> f64 {
    match text {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        v => v
            .parse()
            .unwrap_or_else(|_| panic!("bad value in {line:?}")),
    }
}

/// A series' labels, escapes undone; only `\\`, `\"` and `\n` are escapes, no label repeats.
pub fn labels(series: &str) -> (String, Vec<(String, String)>) {
    let (name, mut rest) = match series.split_once('{') {
        None => return (series.to_owned(), Vec::new()),
        Some((n, rest)) => (n, rest.strip_suffix('}').expect("closing brace")),
    };
    let mut out: Vec<(String, String)> = Vec::new();
    while !rest.is_empty() {
        let (label, after) = rest.split_once("=\"").expect("label=\"");
        assert!(
            name_ok(label) && !label.starts_with("__"),
            "label {label:?}"
        );
        assert!(
            out.iter().all(|(l, _)| l != label),
            "label {label} twice in {series}"
        );
        let mut text = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next().expect("closing quote") {
                (_, '\\') => match chars.next().expect("escape") {
                    (_, '\\') => text.push('\\'),
                    (_, '"') => text.push('"'),
                    (_, 'n') => text.push('\n'),
                    (_, c) => panic!("bad escape \\{c} in {series:?}"),
                },
                (i, '"') => break i,
                (_, c) => {
                    assert!(c != '\n', "a raw line feed in {series:?}");
                    text.push(c);
                }
            }
        };
        out.push((label.to_owned(), text));
        rest = &after[end + 1..];
        if !rest.is_empty() {
            rest = rest.strip_prefix(',').expect("a comma between labels");
        }
    }
    (name.to_owned(), out)
}

/// A histogram's series: its labels without `le`, as text (`worker="roo"`).
fn histogram_key(labels: &[(String, String)]) -> String {
    let rest: Vec<String> = labels
        .iter()
        .filter(|(l, _)| l != "le")
        .map(|(l, v)| format!("{l}={v:?}"))
        .collect();
    rest.join(",")
}

/// Reads the text exposition 0.0.4 strictly and returns every sample by its series as written.
/// Every sample belongs to a family whose HELP and TYPE came once, before it; families are
/// contiguous; counters end in `_total`; a histogram's samples are its `_bucket`, `_sum` and
/// `_count`, each series' buckets ascending in `le`, cumulative, ending in `+Inf` equal to its
/// `_count`; values parse as f64; no series repeats (its labels in any order); no blank line.
pub fn parse_exposition(text: &str) -> BTreeMap<String, f64> {
    let mut help = HashSet::new();
    let mut types: HashMap<String, String> = HashMap::new();
    let mut closed = HashSet::new();
    let mut current: Option<String> = None;
    let mut samples = BTreeMap::new();
    let mut seen = HashSet::new();
    // Per histogram series: its buckets in order, its _count, whether it has a _sum.
    let mut buckets: BTreeMap<(String, String), Vec<(f64, f64)>> = BTreeMap::new();
    let mut counts: BTreeMap<(String, String), f64> = BTreeMap::new();
    let mut sums: HashSet<(String, String)> = HashSet::new();
    assert!(text.ends_with('\n'), "the exposition ends with a line feed");
    for l in text.lines() {
        if let Some(rest) = l.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            let (kw, name) = (parts.next().unwrap(), parts.next().expect("a name"));
            let arg = parts.next().expect("HELP text or TYPE");
            assert!(name_ok(name), "bad family name {name:?}");
            assert!(!closed.contains(name), "family {name} reopened");
            if current.as_deref() != Some(name) {
                if let Some(c) = current.replace(name.to_owned()) {
                    closed.insert(c);
                }
            }
            match kw {
                "HELP" => assert!(help.insert(name.to_owned()), "HELP {name} twice"),
                "TYPE" => {
                    assert!(
                        ["counter", "gauge", "summary", "histogram", "untyped"].contains(&arg),
                        "type {arg}"
                    );
                    assert!(
                        types.insert(name.to_owned(), arg.to_owned()).is_none(),
                        "TYPE {name} twice"
                    );
                }
                _ => panic!("unexpected comment {l:?}"),
            }
            continue;
        }
        assert!(!l.is_empty(), "no blank lines are written");
        let (series, v) = l.rsplit_once(' ').expect("name value");
        let v = value(v, l);
        let (name, labels) = labels(series);
        assert!(name_ok(&name), "bad metric name {name:?}");
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| {
                let base = name.strip_suffix(suffix)?;
                (types.get(base).map(String::as_str) == Some("histogram")).then_some(base)
            })
            .unwrap_or(&name)
            .to_owned();
        assert_eq!(
            current.as_deref(),
            Some(&family[..]),
            "{name} outside its family"
        );
        assert!(help.contains(&family), "{name} has no HELP");
        let kind = types
            .get(&family)
            .unwrap_or_else(|| panic!("{name} has no TYPE"));
        match kind.as_str() {
            "counter" => {
                assert!(name.ends_with("_total"), "counter {name} without _total");
                assert!(v >= 0.0, "counter {series} below zero");
            }
            "histogram" => {
                assert_ne!(name, family, "histogram {family} has a bare sample");
                let key = (family.clone(), histogram_key(&labels));
                if name.ends_with("_bucket") {
                    let le = labels
                        .iter()
                        .find(|(l, _)| l == "le")
                        .unwrap_or_else(|| panic!("{series} has no le"));
                    buckets.entry(key).or_default().push((value(&le.1, l), v));
                } else if name.ends_with("_count") {
                    assert!(counts.insert(key, v).is_none());
                } else {
                    assert!(sums.insert(key));
                }
            }
            _ => {}
        }
        let mut sorted = labels.clone();
        sorted.sort();
        assert!(seen.insert((name, sorted)), "{series} twice");
        samples.insert(series.to_owned(), v);
    }
    for (key, series) in &buckets {
        assert!(
            series.windows(2).all(|w| w[0].0 < w[1].0),
            "{key:?}: le not ascending"
        );
        assert!(
            series.windows(2).all(|w| w[0].1 <= w[1].1),
            "{key:?}: buckets not cumulative"
        );
        let (le, last) = *series.last().unwrap();
        assert_eq!(le, f64::INFINITY, "{key:?}: the last bucket is not +Inf");
        assert_eq!(Some(&last), counts.get(key), "{key:?}: +Inf is not _count");
        assert!(sums.contains(key), "{key:?} has no _sum");
    }
    for key in counts.keys().chain(sums.iter()) {
        assert!(buckets.contains_key(key), "{key:?} has no buckets");
    }
    samples
}

/// PromQL's `sum by (le) (FAMILY_bucket{…})` over the series `keep` accepts (given their
/// labels without `le`): the summed cumulative count at each `le`, ascending.
pub fn sum_by_le(
    samples: &BTreeMap<String, f64>,
    family: &str,
    keep: impl Fn(&[(String, String)]) -> bool,
) -> Vec<(f64, f64)> {
    let mut sum: BTreeMap<String, (f64, f64)> = BTreeMap::new();
    let bucket = format!("{family}_bucket");
    for (series, &v) in samples {
        let (name, labels) = labels(series);
        if name != bucket {
            continue;
        }
        let (le, rest): (Vec<_>, Vec<_>) = labels.into_iter().partition(|(l, _)| l == "le");
        if keep(&rest) {
            let le = &le[0].1;
            sum.entry(le.clone()).or_insert((value(le, series), 0.0)).1 += v;
        }
    }
    let mut out: Vec<(f64, f64)> = sum.into_values().collect();
    out.sort_by(|a, b| a.0.total_cmp(&b.0));
    out
}

/// PromQL's `histogram_quantile(q, …)` of cumulative buckets (ascending `le`, the last `+Inf`):
/// the bucket where the rank `q × count` falls, and linear interpolation inside it from its
/// lower bound (0 for the first); a rank in `+Inf` is the highest finite bound. `None` when the
/// histogram is empty, as Prometheus answers NaN.
pub fn histogram_quantile(q: f64, buckets: &[(f64, f64)]) -> Option<f64> {
    let &(le, total) = buckets.last()?;
    assert_eq!(le, f64::INFINITY, "the last bucket is +Inf");
    if total == 0.0 {
        return None;
    }
    let rank = q * total;
    let i = buckets.iter().position(|&(_, count)| count >= rank)?;
    if i == buckets.len() - 1 {
        return Some(buckets[buckets.len() - 2].0);
    }
    let (start, below) = if i == 0 { (0.0, 0.0) } else { buckets[i - 1] };
    let (end, count) = buckets[i];
    Some(start + (end - start) * (rank - below) / (count - below))
}
