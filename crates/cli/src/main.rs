//! The `plumbline` binary: parses the command line (args.rs; an experiment file's through
//! experiment.rs), builds a validated plan (plan.rs) and hands it to the subcommand. Exit codes
//! ([`BREACHED`] and the README's table): 0 success, 1 error or failed check, 2 usage error
//! (clap, or an experiment file refused), 99 a `--threshold` breached or `compare` found a run
//! worse, 130 interrupted by Ctrl-C. Every error line it prints goes through [`redact_url`], so
//! a password typed in a URL is never echoed back. The `error:` and `breached:` lines that end
//! a run are printed plain (not log lines), one per problem; all else on stderr goes through
//! `tracing` (logs.rs).

mod args;
mod bench;
mod bench_pipeline;
mod brokers;
mod capacity;
mod clock;
mod elastic;
mod experiment;
mod gen;
mod inspect;
mod logs;
mod pipeline;
mod plan;
mod progress;
mod receive;
mod send;
mod session;
mod stream;
mod worker;

use std::ffi::OsString;
use std::process::ExitCode;

use clap::Parser;
use plumbline_core::secret::redact_url;
use plumbline_core::shutdown::SignalThread;
use plumbline_worker::Shutdown;

use crate::args::{Cli, Command};
use crate::bench::Verdict;

/// The exit code of a run that completed and broke a limit it was held to (k6's).
const BREACHED: u8 = 99;

fn main() -> ExitCode {
    let (argv, pony) = without_pony_flags(std::env::args_os());
    let mut cli = Cli::parse_from(&argv);
    if let Command::Run(run) = &cli.command {
        cli = match experiment::parse(run, &argv) {
            Ok(cli) => cli,
            Err(code) => return ExitCode::from(code),
        };
    }
    logs::init(logs::Verbosity::from_flags(cli.quiet, cli.verbose));
    if !pony.is_empty() {
        tracing::info!("ignoring Pony runtime flags {}", pony.join(" "));
    }
    if std::env::args().any(|arg| redact_url(&arg) != arg) {
        tracing::warn!(
            "a password in a URL on the command line shows in the process list to anyone on \
             this host; give it with --password env:VAR or --password file:PATH"
        );
    }
    let shutdown = Shutdown::new();
    let on_signal = shutdown.clone();
    // First Ctrl-C (or SIGTERM, as `kill` and Kubernetes stop a process): stop producing,
    // drain, report what ran. Second: leave at once.
    let installed = SignalThread::start(move |n, _signal| {
        if n > 1 {
            std::process::exit(130);
        }
        tracing::warn!("interrupted: finishing in-flight items (Ctrl-C again to quit now)");
        on_signal.request();
    });
    if let Err(e) = installed {
        tracing::warn!("Ctrl-C will stop at once, without a report: {e}");
    }
    let result = match &cli.command {
        Command::Bench(args) => bench::run(args, &shutdown),
        Command::Capacity(args) => capacity::run(args, &shutdown),
        Command::Elastic(args) => elastic::run(args, &shutdown),
        Command::Gen(args) => gen::run(args, &shutdown),
        Command::Inspect(args) => inspect::run(args).map(|()| Verdict::Passed),
        Command::Send(args) => send::run(args, &shutdown),
        Command::Receive(args) => receive::run(args, &shutdown),
        Command::Worker(args) => worker::run(args, &shutdown),
        Command::Shutdown(args) => worker::shutdown(args),
        Command::Shrink(args) => worker::shrink(args),
        Command::Pipeline(command) => pipeline::run(command, &shutdown),
        Command::Stream(args) => stream::run(args, &shutdown),
        Command::StreamCompute => plumbline_engine::stream::serve_compute(
            std::io::stdin().lock(),
            std::io::stdout().lock(),
        )
        .map(|()| Verdict::Passed),
        Command::Report(args) => {
            session::rerender(&args.dir, args.out.as_deref()).map(|()| Verdict::Passed)
        }
        Command::Compare(args) => compare(args),
        Command::Clock(args) => clock::serve(args, &shutdown).map(|()| Verdict::Passed),
        Command::Merge(args) => session::merge(args).map(|()| Verdict::Passed),
        Command::Completions(args) => {
            let mut command = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(
                args.shell,
                &mut command,
                "plumbline",
                &mut std::io::stdout(),
            );
            Ok(Verdict::Passed)
        }
        Command::Man(args) => man(args),
        Command::Run(_) => Err(anyhow::anyhow!("an experiment file names another command")),
    };
    match result {
        Ok(Verdict::Passed) => ExitCode::SUCCESS,
        Ok(Verdict::Interrupted) => ExitCode::from(130),
        Ok(Verdict::Breached(breaches)) => {
            for breach in breaches {
                eprintln!("breached: {}", redact_url(&breach));
            }
            ExitCode::from(BREACHED)
        }
        Ok(Verdict::Failed(failures)) => {
            for failure in failures {
                eprintln!("error: {}", redact_url(&failure));
            }
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("error: {}", redact_url(&describe(&e)));
            ExitCode::FAILURE
        }
    }
}

/// `plumbline man [--out DIR]`: the man page from the same clap definitions as `--help`.
fn man(args: &args::ManArgs) -> anyhow::Result<Verdict> {
    use anyhow::Context;
    let command = <Cli as clap::CommandFactory>::command();
    match &args.out {
        Some(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            clap_mangen::generate_to(command, dir)
                .with_context(|| format!("writing the man pages into {}", dir.display()))?;
            println!("wrote the man pages into {}", dir.display());
        }
        None => clap_mangen::Man::new(command)
            .render(&mut std::io::stdout())
            .context("writing the man page")?,
    }
    Ok(Verdict::Passed)
}

/// `plumbline compare BASE NEW`: the table, then a failure per breached threshold.
fn compare(args: &args::CompareArgs) -> anyhow::Result<Verdict> {
    let base = plumbline_report::RunDoc::load(&args.base)?;
    let new = plumbline_report::RunDoc::load(&args.new)?;
    plumbline_report::compare::comparable(&base, &new).map_err(|why| {
        anyhow::anyhow!(
            "{} and {} do not compare: {why}",
            args.base.display(),
            args.new.display()
        )
    })?;
    let comparison = plumbline_report::compare(
        &base,
        &new,
        plumbline_report::Thresholds {
            max_overhead_increase_pp: args.max_overhead_increase,
            max_p99_increase_pct: args.max_p99_increase,
            max_capacity_drop_pct: args.max_capacity_drop,
        },
    );
    print!("{}", comparison.table());
    if comparison.passed() {
        println!(
            "no run got worse than allowed (overhead +{} pp, p99 +{} %, capacity −{} %)",
            args.max_overhead_increase, args.max_p99_increase, args.max_capacity_drop
        );
    }
    let worse = comparison.failures();
    Ok(match worse.is_empty() {
        true => Verdict::Passed,
        false => Verdict::Breached(worse),
    })
}

/// Drops the Pony runtime flags the seeds' commands carry (`--ponythreads=1`, `--ponynoblock`,
/// …): they tune Wallaroo's runtime, and plumbline has none. Returns the rest, and the ones it
/// dropped (for main to say, once logging is set up).
fn without_pony_flags(args: impl Iterator<Item = OsString>) -> (Vec<OsString>, Vec<String>) {
    let mut kept = Vec::new();
    let mut ignored = Vec::new();
    let mut args = args.peekable();
    while let Some(arg) = args.next() {
        let text = arg.to_string_lossy();
        if !text.starts_with("--pony") {
            kept.push(arg);
            continue;
        }
        ignored.push(text.to_string());
        // `--ponythreads 1` form: its value goes too.
        let takes_value =
            !text.contains('=') && !text.ends_with("noblock") && !text.ends_with("pin");
        if takes_value
            && args
                .peek()
                .is_some_and(|v| v.to_string_lossy().parse::<u64>().is_ok())
        {
            ignored.push(args.next().expect("peeked").to_string_lossy().to_string());
        }
    }
    (kept, ignored)
}

/// An error and its causes on one line, skipping a cause whose text an outer message already
/// quotes (library errors name their cause in their own message).
fn describe(error: &anyhow::Error) -> String {
    let mut text = error.to_string();
    for cause in error.chain().skip(1) {
        let cause = cause.to_string();
        if !text.contains(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
    }
    text
}
