//! The binary's log output: installs the `tracing` subscriber every crate's events go to
//! (stderr, with a time and a level), and the filter `-v`/`-q`/RUST_LOG choose. The `log`
//! bridge carries the records of clients that log through the `log` crate (librdkafka's, via
//! rdkafka). Lines are written around the progress bar ([`suspend_for`]), never over it.
//! Besides logs, only [`result`] lines; the top-level `error:`/`breached:` lines are main.rs's.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;

use indicatif::ProgressBar;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

/// Prints one of the lines that say where a command's results are (`listening on ADDR`,
/// `report: PATH`, `wrote PATH`, `live page: URL`) on stderr, plain and under `--quiet` too:
/// they are its output, like the `error:` line, not log lines (a starter may read them).
pub fn result(line: impl std::fmt::Display) {
    let text = format!("{line}\n");
    // Nothing to do if stderr is gone; the run's outcome does not depend on this line.
    let _ = suspend_for(|| std::io::stderr().lock().write_all(text.as_bytes()));
}

/// How much the global `-v`/`-q` flags ask to see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verbosity {
    /// `-q`: warnings and errors only (and [`result`] lines); no progress bar.
    Quiet,
    /// Neither flag: plumbline's info lines, the dependencies' warnings.
    Normal,
    /// `-v`: plumbline's debug lines, the dependencies' info.
    Verbose,
    /// `-vv` and more: everything, at trace.
    Trace,
}

impl Verbosity {
    /// From the flags as counted on the command line (`-q` wins over `-v`).
    pub fn from_flags(quiet: bool, verbose: u8) -> Self {
        match (quiet, verbose) {
            (true, _) => Self::Quiet,
            (false, 0) => Self::Normal,
            (false, 1) => Self::Verbose,
            (false, _) => Self::Trace,
        }
    }

    /// The filter directives for this verbosity when RUST_LOG is not set. `plumbline` covers
    /// every `plumbline_*` crate too: EnvFilter matches a directive's target as a prefix.
    pub fn directives(self) -> String {
        match self {
            Self::Quiet => "warn".to_string(),
            Self::Normal => "warn,plumbline=info".to_string(),
            Self::Verbose => "info,plumbline=debug".to_string(),
            Self::Trace => "trace".to_string(),
        }
    }
}

/// Installs the subscriber for this process: RUST_LOG's directives when it is set (it wins
/// over `-v`/`-q`), else `verbosity`'s. Targets are shown only when asked for more than the
/// default (`-v` or RUST_LOG), where which crate said it matters.
pub fn init(verbosity: Verbosity) {
    let from_env = std::env::var("RUST_LOG")
        .ok()
        .filter(|v| !v.trim().is_empty());
    let directives = from_env.clone().unwrap_or_else(|| verbosity.directives());
    // A bad RUST_LOG directive is skipped (and said), not fatal: logs must never stop a run.
    let filter = EnvFilter::builder().parse_lossy(&directives);
    let detailed = from_env.is_some() || matches!(verbosity, Verbosity::Verbose | Verbosity::Trace);
    let installed = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(AroundBar)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(detailed)
        .try_init();
    if let Err(e) = installed {
        // Only a second init in one process gets here; the first subscriber stays.
        eprintln!("warning: logging was already set up: {e}");
    }
}

/// The progress bar being drawn, if any: log lines suspend it while they are written.
static BAR: Mutex<Option<ProgressBar>> = Mutex::new(None);

/// Makes `bar` the one log lines are written around until [`clear_bar`].
pub fn set_bar(bar: &ProgressBar) {
    *BAR.lock().unwrap_or_else(|p| p.into_inner()) = Some(bar.clone());
}

/// Log lines go straight to stderr again.
pub fn clear_bar() {
    *BAR.lock().unwrap_or_else(|p| p.into_inner()) = None;
}

/// Runs `write` with the current bar (if any) cleared from the terminal, redrawn after.
fn suspend_for<T>(write: impl FnOnce() -> T) -> T {
    let bar = BAR.lock().unwrap_or_else(|p| p.into_inner()).clone();
    match bar {
        Some(bar) => bar.suspend(write),
        None => write(),
    }
}

/// Stderr, written around the progress bar.
struct AroundBar;

impl<'a> MakeWriter<'a> for AroundBar {
    type Writer = AroundBar;

    fn make_writer(&'a self) -> Self::Writer {
        AroundBar
    }
}

impl Write for AroundBar {
    /// The fmt layer writes each event whole, in one call: one suspension per line.
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        suspend_for(|| std::io::stderr().lock().write_all(buf))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quiet_wins_and_verbose_counts() {
        assert_eq!(Verbosity::from_flags(true, 2), Verbosity::Quiet);
        assert_eq!(Verbosity::from_flags(false, 0), Verbosity::Normal);
        assert_eq!(Verbosity::from_flags(false, 1), Verbosity::Verbose);
        assert_eq!(Verbosity::from_flags(false, 3), Verbosity::Trace);
    }

    #[test]
    fn every_verbosity_parses_as_a_filter() {
        for v in [
            Verbosity::Quiet,
            Verbosity::Normal,
            Verbosity::Verbose,
            Verbosity::Trace,
        ] {
            EnvFilter::builder()
                .parse(v.directives())
                .unwrap_or_else(|e| panic!("{v:?}: {e}"));
        }
    }
}
