//! The `plumbline` binary: parses the command line (args.rs), builds a validated plan (plan.rs)
//! and hands it to the subcommand. Exit codes: 0 success, 1 error or failed check, 2 usage error
//! (clap), 130 interrupted by Ctrl-C.

mod args;
mod bench;
mod gen;
mod inspect;
mod plan;
mod progress;

use std::process::ExitCode;

use clap::Parser;
use plumbline_worker::Shutdown;

use crate::args::{Cli, Command};
use crate::bench::Verdict;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let shutdown = Shutdown::new();
    let on_signal = shutdown.clone();
    // First Ctrl-C: stop producing, drain, report what ran. Second: leave at once.
    let installed = ctrlc::set_handler(move || {
        if on_signal.requested() {
            std::process::exit(130);
        }
        eprintln!("\ninterrupted: finishing in-flight items (Ctrl-C again to quit now)");
        on_signal.request();
    });
    if let Err(e) = installed {
        eprintln!("warning: Ctrl-C will stop at once, without a report: {e}");
    }
    let result = match &cli.command {
        Command::Bench(args) => bench::run(args, &shutdown),
        Command::Gen(args) => gen::run(args, &shutdown),
        Command::Inspect(args) => inspect::run(args).map(|()| Verdict::Passed),
    };
    match result {
        Ok(Verdict::Passed) => ExitCode::SUCCESS,
        Ok(Verdict::Interrupted) => ExitCode::from(130),
        Ok(Verdict::Failed(failures)) => {
            for failure in failures {
                eprintln!("error: {failure}");
            }
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
