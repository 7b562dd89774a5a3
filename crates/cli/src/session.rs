//! What every run command shares around its work: the live figures ([`Live`] and its
//! once-a-second [`Ticker`]), the `--ui` page, and at the end the report folder (`--report`).
//!
//! A command starts a [`Session`] before its clock starts, hands `session.live()` to the parts
//! that run, and calls [`Session::finish`] with its figures mapped onto report rows. The session
//! owns the metadata that makes a report reproducible (command line, version, commit, host,
//! start and end time). It does not measure anything itself, nor print the command's own summary.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use plumbline_core::secret::redact_url;
use plumbline_measure::report::Host;
use plumbline_measure::{Live, Ticker};
use plumbline_report::merge::Part;
use plumbline_report::{CapacityCharts, Meta, Run, RunDoc};
use plumbline_ui::UiServer;

use crate::args::ReportArgs;

/// The command's figures, as the report wants them.
pub struct Outcome {
    pub runs: Vec<Run>,
    /// The plan or preset with every value resolved.
    pub resolved: serde_json::Value,
    pub seeds: Vec<u64>,
    /// The command's own report, unabridged.
    pub detail: serde_json::Value,
}

pub struct Session {
    kind: &'static str,
    live: Arc<Live>,
    ticker: Option<Ticker>,
    ui: Option<UiServer>,
    started_at: String,
    report: Option<PathBuf>,
}

impl Session {
    /// Starts the ticker and, with `--ui`, the live page (failing at once if it cannot bind).
    /// `default_report` is where the report goes when `--report` is not given.
    pub fn start(
        kind: &'static str,
        args: &ReportArgs,
        default_report: Option<PathBuf>,
    ) -> Result<Self> {
        Self::with_live(kind, args, default_report, Arc::new(Live::new()))
    }

    /// As [`Session::start`], following a [`Live`] the command's engine already keeps.
    pub fn with_live(
        kind: &'static str,
        args: &ReportArgs,
        default_report: Option<PathBuf>,
        live: Arc<Live>,
    ) -> Result<Self> {
        let ui = match &args.ui {
            Some(addr) => {
                warn_if_exposed(
                    "--ui",
                    addr,
                    "the live page, /metrics and /snapshot.json have no authentication: anyone \
                     who reaches it sees the run",
                );
                let server = plumbline_ui::serve(addr, live.clone()).context("--ui")?;
                crate::logs::result(format_args!(
                    "live page: http://{}/ (Prometheus: /metrics)",
                    server.addr()
                ));
                Some(server)
            }
            None => None,
        };
        Ok(Self {
            kind,
            ticker: Some(Ticker::start(live.clone())),
            live,
            ui,
            started_at: plumbline_report::now_rfc3339(),
            report: args.report.clone().or(default_report),
        })
    }

    pub fn live(&self) -> &Arc<Live> {
        &self.live
    }

    /// Stops the ticker and the page, and writes the report folder if one was asked for.
    /// Returns the folder written.
    pub fn finish(self, outcome: Outcome) -> Result<Option<PathBuf>> {
        self.finish_with(outcome, None)
    }

    /// As [`Session::finish`], with a capacity search's own charts.
    pub fn finish_capacity(
        self,
        outcome: Outcome,
        charts: CapacityCharts,
    ) -> Result<Option<PathBuf>> {
        self.finish_with(outcome, Some(charts))
    }

    fn finish_with(
        mut self,
        outcome: Outcome,
        capacity: Option<CapacityCharts>,
    ) -> Result<Option<PathBuf>> {
        // The last (partial) second is ticked as the ticker stops, so the timeline is complete.
        drop(self.ticker.take());
        drop(self.ui.take());
        let Some(dir) = self.report.take() else {
            return Ok(None);
        };
        let (timeline, timeline_dropped) = self.live.timeline();
        let doc = RunDoc {
            format: plumbline_report::FORMAT.into(),
            meta: Meta {
                kind: self.kind.into(),
                command: command_line(),
                resolved: redacted(outcome.resolved),
                seeds: outcome.seeds,
                version: env!("CARGO_PKG_VERSION").into(),
                git_commit: env!("PLUMBLINE_GIT_COMMIT").into(),
                host: Host::current(),
                started_at: self.started_at.clone(),
                ended_at: plumbline_report::now_rfc3339(),
            },
            // Labels name what was typed (a URL, as given): shown without its password.
            runs: outcome
                .runs
                .into_iter()
                .map(|run| Run {
                    label: redact_url(&run.label),
                    group: redact_url(&run.group),
                    ..run
                })
                .collect(),
            timeline,
            timeline_dropped,
            detail: redacted(outcome.detail),
            capacity,
        };
        plumbline_report::write(&dir, &doc)
            .with_context(|| format!("writing the report folder {}", dir.display()))?;
        crate::logs::result(format_args!("report: {}", dir.join("index.html").display()));
        Ok(Some(dir))
    }
}

/// Says at start that a listener is open to the network (not loopback) and what that lets
/// anyone who reaches it do.
pub fn warn_if_exposed(flag: &str, addr: &str, exposes: &str) {
    if !plumbline_transport::tcp::is_loopback(addr) {
        tracing::warn!("{flag} {addr} is not a loopback address: {exposes}");
    }
}

/// `value` with every string in it redacted: commands put what was typed (a URL, as given)
/// into their resolved plan and their own report.
fn redacted(value: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match value {
        Value::String(text) => Value::String(redact_url(&text)),
        Value::Array(items) => Value::Array(items.into_iter().map(redacted).collect()),
        Value::Object(fields) => Value::Object(
            fields
                .into_iter()
                .map(|(key, value)| (key, redacted(value)))
                .collect(),
        ),
        other => other,
    }
}

/// The command line an experiment file stood for, once `plumbline run FILE` parsed it.
static STOOD_FOR: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();

/// Records that this run is `line` (`plumbline bench --workers=1 …`), which `plumbline run FILE
/// FLAGS…` stood for, so its report reproduces it without the file.
pub fn stood_for(line: &[std::ffi::OsString]) {
    let _ = STOOD_FOR.set(
        line.iter()
            .map(|a| redact_url(&a.to_string_lossy()))
            .collect(),
    );
}

/// The command line as typed (or the one an experiment file stood for), less any URL's
/// password: what a report records to reproduce the run.
pub fn command_line() -> Vec<String> {
    match STOOD_FOR.get() {
        Some(line) => line.clone(),
        None => std::env::args().map(|arg| redact_url(&arg)).collect(),
    }
}

/// `plumbline-reports/<kind>-<UTC time>` under the working folder: a fresh folder per run.
pub fn timestamped(kind: &str) -> PathBuf {
    let stamp: String = plumbline_report::now_rfc3339()
        .chars()
        .take(19)
        .filter(|c| c.is_ascii_digit() || *c == 'T')
        .map(|c| if c == 'T' { '-' } else { c })
        .collect();
    let base = Path::new("plumbline-reports").join(format!("{kind}-{stamp}"));
    // Two runs in one second get their own folders too.
    let mut dir = base.clone();
    let mut n = 2;
    while dir.exists() {
        dir = PathBuf::from(format!("{}-{n}", base.display()));
        n += 1;
    }
    dir
}

/// `plumbline report DIR`: re-renders a folder (or a copy of it) from its run.json, or renders
/// a run record file (`bench --json`) into `--out`.
pub fn rerender(dir: &Path, out: Option<&Path>) -> Result<()> {
    let doc = RunDoc::load(dir)?;
    let target = match out {
        Some(out) => out,
        None if dir.is_file() => bail!(
            "{} is a file: name the folder to render it into with --out DIR",
            dir.display()
        ),
        None => dir,
    };
    let written = plumbline_report::write(target, &doc)
        .with_context(|| format!("rendering into {}", target.display()))?;
    println!(
        "rendered {} run(s), plots: {}; open {}",
        doc.runs.len(),
        if written.plots.is_empty() {
            "none".to_string()
        } else {
            written.plots.join(", ")
        },
        written.dir.join("index.html").display()
    );
    Ok(())
}

/// `plumbline merge`: several hosts' reports as one folder. A part is named by its host, or
/// by its folder where hosts repeat (several parts of one experiment on one machine).
pub fn merge(args: &crate::args::MergeArgs) -> Result<()> {
    let docs = args
        .reports
        .iter()
        .map(|path| RunDoc::load(path).map_err(anyhow::Error::from))
        .collect::<Result<Vec<_>>>()?;
    let hosts: Vec<Option<String>> = docs.iter().map(|d| d.meta.host.hostname.clone()).collect();
    let unique = hosts
        .iter()
        .all(|h| h.is_some() && hosts.iter().filter(|other| *other == h).count() == 1);
    let parts: Vec<Part> = docs
        .into_iter()
        .zip(&args.reports)
        .zip(hosts)
        .enumerate()
        .map(|(i, ((doc, path), host))| {
            let folder = if path.is_file() {
                path.parent()
            } else {
                Some(path.as_path())
            };
            let folder = folder
                .and_then(|f| f.file_name())
                .map_or(format!("part {}", i + 1), |f| {
                    f.to_string_lossy().into_owned()
                });
            let name = match host {
                Some(host) if unique => host,
                _ => format!("{folder} #{}", i + 1),
            };
            Part { name, doc }
        })
        .collect();
    let merged = plumbline_report::merge::merge(&parts, command_line())?;
    let written = plumbline_report::write(&args.out, &merged)
        .with_context(|| format!("writing {}", args.out.display()))?;
    println!(
        "{:<40} {:>9} {:>7} {:>10} {:>10} {:>10}",
        "run", "items", "lost", "duplicates", "p50", "p99"
    );
    for run in &merged.runs {
        let (p50, p99) = run
            .latency_s
            .as_ref()
            .map_or(("-".into(), "-".into()), |l| {
                (
                    plumbline_measure::report::secs(l.p50),
                    plumbline_measure::report::secs(l.p99),
                )
            });
        println!(
            "{:<40} {:>9} {:>7} {:>10} {:>10} {:>10}",
            run.label, run.items, run.lost, run.duplicates, p50, p99
        );
    }
    println!(
        "merged {} reports ({}); open {}",
        parts.len(),
        parts
            .iter()
            .map(|p| p.name.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        written.dir.join("index.html").display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::redacted;

    #[test]
    fn every_string_of_a_document_loses_its_url_passwords() {
        let doc = serde_json::json!({
            "from": "redis://:pw@h:1/s",
            "runs": [{"group": "send to nats://u:pw@h:2/x", "items": 3}],
            "listen": null,
        });
        let shown = redacted(doc).to_string();
        assert!(!shown.contains("pw"), "{shown}");
        assert!(shown.contains("redis://:***@h:1/s") && shown.contains(r#""items":3"#));
    }
}
