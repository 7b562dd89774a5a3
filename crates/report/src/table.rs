//! `runs.csv` and the HTML tables of `index.html`: the [`Run`] rows laid out, nothing derived.

use std::fmt::Write as _;

use plumbline_measure::report::secs;

use crate::doc::{Meta, Run};

/// The CSV header; one row per run follows.
const COLUMNS: &str =
    "label,group,workers,items,wall_s,ideal_s,overhead_pct,speedup,ideal_speedup,\
items_per_s,lost,duplicates,latency_p50_s,latency_p99_s,latency_max_s,per_worker";

fn opt(v: Option<f64>) -> String {
    v.map_or(String::new(), |v| format!("{v}"))
}

/// A CSV field, quoted when it holds a comma, quote or line break (RFC 4180).
pub fn field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}

pub fn csv(runs: &[Run]) -> String {
    let mut out = format!("{COLUMNS}\n");
    for r in runs {
        let l = r.latency_s.as_ref();
        let per_worker: Vec<String> = r.per_worker.iter().map(u64::to_string).collect();
        let _ = writeln!(
            out,
            "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
            field(&r.label),
            field(&r.group),
            r.workers,
            r.items,
            r.wall_s,
            opt(r.ideal_s),
            opt(r.overhead_pct),
            opt(r.speedup),
            opt(r.ideal_speedup),
            r.items_per_s,
            r.lost,
            r.duplicates,
            opt(l.map(|l| l.p50)),
            opt(l.map(|l| l.p99)),
            opt(l.map(|l| l.max)),
            per_worker.join("|"),
        );
    }
    out
}

/// Escapes text for HTML content and attribute values.
pub fn esc(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

pub fn runs_html(runs: &[Run]) -> String {
    let mut out = String::from(
        "<table><thead><tr><th>#</th><th>run</th><th>workers</th><th>items</th><th>ideal</th>\
         <th>wall</th><th>overhead</th><th>speedup</th><th>allowed by keys</th><th>items/s</th>\
         <th>p50</th><th>p99</th><th>lost</th><th>dup</th><th>per worker</th></tr></thead><tbody>",
    );
    for (i, r) in runs.iter().enumerate() {
        let l = r.latency_s.as_ref();
        let dash = || "–".to_string();
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
             <td>{}</td><td>{}</td><td>{:.1}</td><td>{}</td><td>{}</td><td{}>{}</td><td{}>{}</td>\
             <td>{}</td></tr>",
            i + 1,
            esc(&r.label),
            r.workers,
            r.items,
            r.ideal_s.map_or_else(dash, secs),
            secs(r.wall_s),
            r.overhead_pct.map_or_else(dash, |o| format!("{o:+.2} %")),
            r.speedup.map_or_else(dash, |s| format!("{s:.2}×")),
            r.ideal_speedup.map_or_else(dash, |s| format!("{s:.2}×")),
            r.items_per_s,
            l.map_or_else(dash, |l| secs(l.p50)),
            l.map_or_else(dash, |l| secs(l.p99)),
            if r.lost > 0 { " class=bad" } else { "" },
            r.lost,
            if r.duplicates > 0 { " class=bad" } else { "" },
            r.duplicates,
            esc(&r
                .per_worker
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(" / ")),
        );
    }
    out.push_str("</tbody></table>");
    out
}

pub fn meta_html(meta: &Meta) -> String {
    let host = &meta.host;
    let memory = host.memory_bytes.map_or("unknown".into(), |b| {
        format!("{:.1} GiB", b as f64 / (1u64 << 30) as f64)
    });
    let rows = [
        ("command", meta.command.join(" ")),
        ("kind", meta.kind.clone()),
        (
            "plumbline",
            format!("{} (commit {})", meta.version, meta.git_commit),
        ),
        (
            "seeds",
            meta.seeds
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(", "),
        ),
        (
            "host",
            format!(
                "{}: {} cores, {memory}, {} {} ({})",
                host.hostname.as_deref().unwrap_or("unknown"),
                host.cores,
                host.os,
                host.kernel.as_deref().unwrap_or("unknown kernel"),
                host.arch
            ),
        ),
        ("started", meta.started_at.clone()),
        ("ended", meta.ended_at.clone()),
    ];
    let mut out = String::from("<table class=meta>");
    for (name, value) in rows {
        let _ = write!(
            out,
            "<tr><th>{name}</th><td><code>{}</code></td></tr>",
            esc(&value)
        );
    }
    out.push_str("</table>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_with_commas_and_quotes_are_quoted() {
        assert_eq!(field("a,b"), "\"a,b\"");
        assert_eq!(field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(field("plain"), "plain");
    }

    #[test]
    fn html_is_escaped() {
        assert_eq!(esc("<a href=\"x\">&"), "&lt;a href=&quot;x&quot;&gt;&amp;");
    }
}
