//! plumbline-report: the report folder a run leaves behind, the comparison of two of them, and
//! the merge of several hosts' ([`merge`]).
//!
//! It sits after the measurement: a command maps its figures onto a [`RunDoc`] (`run.json`) and
//! [`write`] renders the rest from that document alone: `runs.csv`, the plots as SVG and PNG
//! ([`plots`]), each run's latency as HdrHistogram's `.hgrm` percentile distribution and its
//! `.hlog` interval log, and a self-contained `index.html` (styles inline, plots as inline SVG, no network).
//! Because everything is rendered from `run.json`, `plumbline report DIR` re-renders a folder
//! exactly. [`compare`] diffs two documents. Nothing here runs or measures anything.

pub mod capacity;
pub mod compare;
pub mod doc;
mod elastic;
pub mod merge;
pub mod plots;
mod table;

use std::path::{Path, PathBuf};

pub use capacity::{CapacityCharts, TrialLag};
pub use compare::{compare, Comparison, Thresholds};
pub use doc::{now_rfc3339, rows, Meta, Run, RunDoc, FORMAT, MAX_RUN_JSON};
pub use table::field as csv_field;

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("{} does not exist", .0.display())]
    Missing(PathBuf),
    #[error("{} is neither a report folder nor a file", .0.display())]
    NotFileOrFolder(PathBuf),
    #[error("{} has no run.json: is it a plumbline report folder?", .0.display())]
    NoRunJson(PathBuf),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} is not a valid plumbline report: {source}", path.display())]
    Corrupt {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("{} is format {found:?}; this plumbline reads {FORMAT:?}", path.display())]
    Format { path: PathBuf, found: String },
    #[error("{} is not a run record this plumbline reads: {source}", path.display())]
    Record {
        path: PathBuf,
        source: plumbline_measure::record::RecordError,
    },
    #[error("{}: run {run:?}: {source}", path.display())]
    Histogram {
        path: PathBuf,
        run: String,
        source: plumbline_measure::recorder::HdrError,
    },
    #[error("{}: {what} is {value:e}, beyond anything a run measures", path.display())]
    Implausible {
        path: PathBuf,
        what: String,
        value: f64,
    },
    #[error("{} is {size} bytes, more than the {MAX_RUN_JSON}-byte limit of a report", path.display())]
    TooLarge { path: PathBuf, size: u64 },
    #[error("drawing the plots into {}: {message}", dir.display())]
    Plot { dir: PathBuf, message: String },
}

impl ReportError {
    /// The same error about the file at `at`.
    fn at(self, at: &Path) -> Self {
        let path = at.to_path_buf();
        match self {
            ReportError::Corrupt { source, .. } => ReportError::Corrupt { path, source },
            ReportError::Format { found, .. } => ReportError::Format { path, found },
            ReportError::Record { source, .. } => ReportError::Record { path, source },
            ReportError::Implausible { what, value, .. } => {
                ReportError::Implausible { path, what, value }
            }
            ReportError::Histogram { run, source, .. } => {
                ReportError::Histogram { path, run, source }
            }
            other => other,
        }
    }
}

/// The files a report folder holds after [`write`].
#[derive(Debug)]
pub struct Written {
    pub dir: PathBuf,
    /// Plot stems drawn (`scaling`, `latency`, …), each as `.svg` and `.png`.
    pub plots: Vec<&'static str>,
}

/// Writes `run.json`, `runs.csv`, the `.hgrm` and `.hlog` files, every plot and `index.html`
/// into `dir`
/// (created if missing).
pub fn write(dir: &Path, doc: &RunDoc) -> Result<Written, ReportError> {
    let io = |path: PathBuf| move |source| ReportError::Io { path, source };
    std::fs::create_dir_all(dir).map_err(io(dir.to_path_buf()))?;
    let put = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).map_err(io(path))
    };
    put("run.json", &doc.to_json())?;
    put("runs.csv", &table::csv(&doc.runs))?;
    for (name, text) in hdr_files(doc, dir)? {
        put(&name, &text)?;
    }
    let plots = plots::draw_all(doc, dir).map_err(|message| ReportError::Plot {
        dir: dir.to_path_buf(),
        message,
    })?;
    for plot in &plots {
        put(&format!("{}.svg", plot.name), &plot.svg)?;
    }
    put("index.html", &index_html(doc, &plots))?;
    Ok(Written {
        dir: dir.to_path_buf(),
        plots: plots.iter().map(|p| p.name).collect(),
    })
}

/// Each run's latency in HdrHistogram's own formats, which its tools read: the percentile
/// distribution (`latency-N.hgrm`, N its place in `runs.csv`) and the interval log
/// (`latency-N.hlog`, one histogram a second). Runs without latency have neither, runs
/// without intervals no `.hlog`.
fn hdr_files(doc: &RunDoc, dir: &Path) -> Result<Vec<(String, String)>, ReportError> {
    let mut files = Vec::new();
    for (i, run) in doc.runs.iter().enumerate() {
        let Some(latency) = run.latency_s.as_ref().filter(|l| l.count > 0) else {
            continue;
        };
        let bad = |source| ReportError::Histogram {
            path: dir.join("run.json"),
            run: run.label.clone(),
            source,
        };
        files.push((hgrm_name(i), latency.recorder().map_err(bad)?.hgrm()));
        if !run.latency_intervals.is_empty() {
            let log = plumbline_measure::hlog::interval_log(&run.latency_intervals);
            files.push((hlog_name(i), log.map_err(bad)?));
        }
    }
    Ok(files)
}

/// The `.hgrm` file of the run at `index` in `doc.runs`.
pub fn hgrm_name(index: usize) -> String {
    format!("latency-{}.hgrm", index + 1)
}

/// The `.hlog` file of the run at `index` in `doc.runs`.
pub fn hlog_name(index: usize) -> String {
    format!("latency-{}.hlog", index + 1)
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:1100px;\
color:#222;padding:0 1rem}h1{font-size:1.5rem}h2{font-size:1.15rem;margin-top:2rem}\
table{border-collapse:collapse;font-size:.85rem;margin:.5rem 0}td,th{border:1px solid #ddd;\
padding:.25rem .5rem;text-align:right}th{background:#f4f4f4}table.meta td,table.meta th{text-align:left}\
td.bad{background:#fdd;font-weight:bold}figure{margin:1rem 0}figure svg{width:100%;height:auto;\
border:1px solid #eee}figcaption{font-size:.8rem;color:#555}code{font-size:.8rem;word-break:break-all}";

fn index_html(doc: &RunDoc, plots: &[plots::Plot]) -> String {
    let mut figures = String::new();
    for plot in plots {
        figures.push_str(&format!(
            "<figure id=\"plot-{name}\"><h2>{title}</h2>{svg}<figcaption>{name}.png, {name}.svg\
             </figcaption></figure>",
            name = plot.name,
            title = table::esc(plot.title),
            svg = plot.svg,
        ));
    }
    let dropped = if doc.timeline_dropped > 0 {
        format!(
            "<p>The timeline starts {} s into the run (older seconds were dropped).</p>",
            doc.timeline_dropped
        )
    } else {
        String::new()
    };
    format!(
        "<!doctype html><html lang=en><head><meta charset=utf-8><title>plumbline {kind} report</title>\
         <meta name=viewport content=\"width=device-width,initial-scale=1\"><style>{STYLE}</style>\
         </head><body><h1>plumbline {kind} report</h1>{meta}<h2>Runs</h2>{runs}{dropped}{figures}\
         <p><small>Rendered from run.json by plumbline {version}. Re-render with \
         <code>plumbline report DIR</code>.</small></p></body></html>\n",
        kind = table::esc(&doc.meta.kind),
        meta = table::meta_html(&doc.meta),
        runs = table::runs_html(&doc.runs),
        version = table::esc(&doc.meta.version),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doc::tests::doc_with;

    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("plumbline-report-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    fn png_size(path: &Path) -> (u32, u32) {
        let decoder = png::Decoder::new(std::fs::File::open(path).unwrap());
        let reader = decoder.read_info().unwrap();
        let info = reader.info();
        (info.width, info.height)
    }

    fn with_timeline(mut doc: RunDoc) -> RunDoc {
        doc.timeline = (1..=5)
            .map(|t| plumbline_measure::Tick {
                t_s: t as f64,
                target_per_s: Some(100.0),
                in_per_s: 100.0,
                out_per_s: 90.0 + t as f64,
                late: t % 2,
                in_flight: 10 - t,
                p50_s: Some(0.001),
                p99_s: Some(0.002),
            })
            .collect();
        doc
    }

    #[test]
    fn a_folder_holds_every_file_and_pngs_of_the_stated_size() {
        let dir = scratch("files");
        let mut doc = with_timeline(doc_with(&[
            ("one", 0.5, 0.01),
            ("two", 1.5, 0.02),
            ("three", 3.0, 0.03),
        ]));
        let first = doc.runs[0].latency_s.as_ref().unwrap().recorder().unwrap();
        doc.runs[0].latency_intervals =
            vec![plumbline_measure::LatencyInterval::new(1.7e9, 1.0, &first)];
        let written = write(&dir, &doc).unwrap();
        assert_eq!(
            written.plots,
            ["scaling", "overhead", "latency", "balance", "rate", "lag"]
        );
        for plot in &written.plots {
            assert_eq!(png_size(&dir.join(format!("{plot}.png"))), plots::SIZE);
            let svg = std::fs::read_to_string(dir.join(format!("{plot}.svg"))).unwrap();
            assert!(svg.starts_with("<svg"), "{plot}.svg");
        }
        let html = std::fs::read_to_string(dir.join("index.html")).unwrap();
        assert_eq!(html.matches("<figure").count(), 6);
        // Works from file:// with no network: nothing is fetched (SVG's xmlns is a name, not a fetch).
        for fetch in ["src=", "href=\"http", "<link", "url("] {
            assert!(
                !html.contains(fetch),
                "index.html fetches something: {fetch}"
            );
        }
        let csv = std::fs::read_to_string(dir.join("runs.csv")).unwrap();
        assert_eq!(csv.lines().count(), 4);
        // Every run with latency has its percentile distribution, HdrHistogram's text.
        for i in 0..3 {
            let hgrm = std::fs::read_to_string(dir.join(hgrm_name(i))).unwrap();
            assert!(hgrm.trim_start().starts_with("Value"), "{hgrm}");
            assert!(hgrm.contains("#[Max     ="), "{hgrm}");
        }
        assert!(!dir.join(hgrm_name(3)).exists());
        // The interval log, for the run that has intervals only.
        let hlog = std::fs::read_to_string(dir.join(hlog_name(0))).unwrap();
        assert!(hlog.contains("#[BaseTime: 1700000000.000"), "{hlog}");
        assert_eq!(
            hlog.lines().filter(|l| l.starts_with("0.000,")).count(),
            1,
            "{hlog}"
        );
        assert!(!dir.join(hlog_name(1)).exists());
        assert!(csv.lines().nth(2).unwrap().starts_with("two,g,2,100,"));
    }

    #[test]
    fn run_json_round_trips_byte_for_byte() {
        let dir = scratch("round-trip");
        let doc = with_timeline(doc_with(&[("a", 1.0, 0.01), ("b", 2.0, 0.02)]));
        write(&dir, &doc).unwrap();
        let first = std::fs::read(dir.join("run.json")).unwrap();
        let loaded = RunDoc::load(&dir).unwrap();
        assert_eq!(loaded, doc);
        write(&dir, &loaded).unwrap();
        assert_eq!(std::fs::read(dir.join("run.json")).unwrap(), first);
    }

    #[test]
    fn a_single_run_skips_the_charts_it_cannot_draw() {
        let dir = scratch("single");
        let mut doc = doc_with(&[("only", 1.0, 0.01)]);
        doc.runs[0].speedup = None;
        assert_eq!(write(&dir, &doc).unwrap().plots, ["overhead", "latency"]);
    }

    #[test]
    fn a_capacity_search_adds_its_demand_and_per_trial_lag_charts_and_keeps_them() {
        let dir = scratch("capacity");
        let mut doc = doc_with(&[("one", 0.5, 0.01), ("two", 1.5, 0.02)]);
        doc.meta.kind = "capacity".into();
        let point = |load, workers| plumbline_measure::record::Demand {
            curve: "g".into(),
            load,
            workers,
        };
        let trial = |workers, rate: f64, verdict: &str| TrialLag {
            curve: "g".into(),
            workers,
            rate,
            verdict: verdict.into(),
            warmup_s: 1.0,
            lag: (0..40)
                .map(|i| (i as f64 * 0.1, i as f64 * rate / 100.0))
                .collect(),
        };
        doc.capacity = Some(CapacityCharts {
            demand: vec![
                point(50.0, Some(1)),
                point(150.0, Some(2)),
                point(900.0, None),
            ],
            trials: vec![
                trial(1, 100.0, "pass"),
                trial(1, 150.0, "fail"),
                trial(2, 200.0, "pass"),
            ],
        });
        let written = write(&dir, &doc).unwrap();
        assert_eq!(
            &written.plots[written.plots.len() - 2..],
            ["demand", "trials"]
        );
        for plot in ["demand", "trials"] {
            assert_eq!(png_size(&dir.join(format!("{plot}.png"))), plots::SIZE);
        }
        let trials = std::fs::read_to_string(dir.join("trials.svg")).unwrap();
        assert!(trials.contains("150.0/s fail") && trials.contains("2 worker(s)"));
        assert_eq!(RunDoc::load(&dir).unwrap(), doc);
        // A bench's document has neither, and its run.json says nothing of them.
        doc.capacity = None;
        assert!(!write(&dir, &doc).unwrap().plots.contains(&"demand"));
        assert!(!doc.to_json().contains("\"capacity\": "));
    }

    #[test]
    fn loading_names_what_is_wrong() {
        let dir = scratch("bad");
        let e = RunDoc::load(&dir).unwrap_err().to_string();
        assert!(e.ends_with("does not exist"), "{e}");
        let e = RunDoc::load(Path::new("Cargo.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("Cargo.toml is not a valid plumbline report"),
            "{e}"
        );
        std::fs::create_dir_all(&dir).unwrap();
        let e = RunDoc::load(&dir).unwrap_err().to_string();
        assert!(e.contains("has no run.json"), "{e}");
        std::fs::write(
            dir.join("run.json"),
            "{\"format\": \"plumbline-report/1\", \"runs\": [",
        )
        .unwrap();
        let e = RunDoc::load(&dir).unwrap_err().to_string();
        assert!(
            e.contains("run.json is not a valid plumbline report"),
            "{e}"
        );
        let mut doc = doc_with(&[("a", 1.0, 0.01)]);
        doc.format = "something-else/9".into();
        std::fs::write(dir.join("run.json"), doc.to_json()).unwrap();
        let e = RunDoc::load(&dir).unwrap_err().to_string();
        assert!(e.contains("\"something-else/9\""), "{e}");
        doc.format = FORMAT.into();
        doc.runs[0].latency_s.as_mut().unwrap().hdr = "AAAA".into();
        std::fs::write(dir.join("run.json"), doc.to_json()).unwrap();
        let e = RunDoc::load(&dir).unwrap_err().to_string();
        assert!(e.contains("run \"a\"") && e.contains("HdrHistogram"), "{e}");
        // Figures no run measures would give a plot an endless axis: refused by name.
        let mut doc = doc_with(&[("a", 1.0, 0.01)]);
        doc.runs[0].overhead_pct = Some(1e308);
        std::fs::write(dir.join("run.json"), doc.to_json()).unwrap();
        let e = RunDoc::load(&dir).unwrap_err().to_string();
        assert!(e.contains("run \"a\": overhead_pct is 1e308"), "{e}");
        // A sparse file: refused by its size, never read.
        std::fs::File::create(dir.join("run.json"))
            .unwrap()
            .set_len(MAX_RUN_JSON + 1)
            .unwrap();
        let e = RunDoc::load(&dir).unwrap_err().to_string();
        assert!(e.contains("more than the 268435456-byte limit"), "{e}");
    }

    #[test]
    fn a_run_record_file_reads_as_a_report_and_another_schema_is_refused_by_version() {
        let dir = scratch("record");
        std::fs::create_dir_all(&dir).unwrap();
        let record = plumbline_measure::record::Record {
            seed: Some(7),
            ..plumbline_measure::record::Record::new(
                plumbline_measure::record::Command::Bench,
                vec!["plumbline".into(), "bench".into()],
                plumbline_measure::report::Host::current(),
            )
        };
        let mut json = serde_json::to_value(&record).unwrap();
        let file = dir.join("bench.json");
        std::fs::write(&file, json.to_string()).unwrap();
        let doc = RunDoc::load(&file).unwrap();
        assert_eq!(
            (doc.meta.kind.as_str(), doc.meta.seeds.as_slice()),
            ("bench", &[7][..])
        );
        assert_eq!(doc.detail, json, "the record is kept whole");
        json["schema"] = "plumbline.run/2".into();
        std::fs::write(&file, json.to_string()).unwrap();
        let e = RunDoc::load(&file).unwrap_err().to_string();
        assert!(
            e.ends_with("bench.json is not a run record this plumbline reads: schema plumbline.run/2; this plumbline reads plumbline.run/3: run the command again"),
            "{e}"
        );
        // The pipeline table's old `--json` (wall_secs, ideal_secs) had no schema: version 1.
        let old =
            r#"{"plumbline_version": "0.1.0", "preset": "pipeline", "runs": [{"wall_secs": 1.0}]}"#;
        std::fs::write(&file, old).unwrap();
        let e = RunDoc::load(&file).unwrap_err().to_string();
        assert!(e.contains("plumbline.run/1"), "{e}");
    }
}
