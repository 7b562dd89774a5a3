//! A strict reader of Prometheus text exposition 0.0.4, shared by the ui crate's tests and the
//! end-to-end test of `/metrics` (crates/cli/tests/ui.rs includes this file by path).

use std::collections::{BTreeMap, HashMap, HashSet};

/// A strict reader of the text exposition 0.0.4, for what `prometheus` writes: every sample
/// belongs to a family whose HELP and TYPE came once, before it; families are contiguous;
/// counters end in `_total`; values parse as f64; no series repeats.
pub fn parse_exposition(text: &str) -> BTreeMap<String, f64> {
    fn name_ok(n: &str) -> bool {
        let mut cs = n.chars();
        cs.next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
            && cs.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    }
    let mut help = HashSet::new();
    let mut types: HashMap<String, String> = HashMap::new();
    let mut closed = HashSet::new();
    let mut current: Option<String> = None;
    let mut samples = BTreeMap::new();
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
        let (series, value) = l.rsplit_once(' ').expect("name value");
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("bad value in {l:?}")),
        };
        let (name, labels) = match series.split_once('{') {
            None => (series, ""),
            Some((n, rest)) => (n, rest.strip_suffix('}').expect("closing brace")),
        };
        assert!(name_ok(name), "bad metric name {name:?}");
        // Label pairs, with the three escapes undone to check they are the only ones used.
        let mut rest = labels;
        while !rest.is_empty() {
            let (label, after) = rest.split_once("=\"").expect("label=\"");
            assert!(
                name_ok(label) && !label.starts_with("__"),
                "label {label:?}"
            );
            let mut chars = after.char_indices();
            let end = loop {
                match chars.next().expect("closing quote") {
                    (_, '\\') => match chars.next().expect("escape") {
                        (_, '\\' | '"' | 'n') => {}
                        (_, c) => panic!("bad escape \\{c} in {l:?}"),
                    },
                    (i, '"') => break i,
                    (_, c) => assert!(c != '\n'),
                }
            };
            rest = &after[end + 1..];
            rest = rest.strip_prefix(',').unwrap_or(rest);
        }
        assert_eq!(current.as_deref(), Some(name), "{name} outside its family");
        assert!(help.contains(name), "{name} has no HELP");
        let kind = types
            .get(name)
            .unwrap_or_else(|| panic!("{name} has no TYPE"));
        if kind == "counter" {
            assert!(name.ends_with("_total"), "counter {name} without _total");
        }
        assert!(
            samples.insert(series.to_owned(), value).is_none(),
            "{series} twice"
        );
    }
    samples
}
