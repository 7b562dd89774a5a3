//! Experiment files (`plumbline run FILE [FLAGS…]`): one TOML file standing for a whole
//! command line, as OpenMessaging Benchmark's workload files stand for a benchmark.
//!
//! It sits before clap: the file names its command (`command = "capacity"`), each other key is
//! one of that command's long flags (kebab-case or snake_case) and each value that flag's
//! value(s). The file becomes the arguments it stands for, the user's own flags go after them,
//! and the same clap command that reads a typed command line parses the lot, so names, types,
//! defaults and every check stay clap's. A flag the user types replaces the file's value of
//! it, whole (clap would append to a repeated or several-valued flag instead). Relative paths
//! in the file resolve against its folder. It checks nothing about a value itself.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::path::Path;

use anyhow::{bail, Context, Result};
use clap::{Arg, ArgAction, ValueHint};

use plumbline_core::secret::redact_url;

use crate::args::{Cli, RunArgs};

/// The key naming the command (`"bench"`, `"pipeline distributor"`).
const COMMAND: &str = "command";
/// A key for the reader, as presets have: what the experiment is for.
const DESCRIPTION: &str = "description";

/// The command line `run` stands for: `argv` (the program, any global flags, `run FILE
/// FLAGS…`) with `run FILE` replaced by the file's command and flags. Gives the exit code
/// instead when it ends here: `run`'s help printed, or the file or the line refused (saying
/// what was wrong).
pub fn parse(run: &RunArgs, argv: &[OsString]) -> std::result::Result<Cli, u8> {
    let mut root = <Cli as clap::CommandFactory>::command();
    root.build();
    let Some(path) = &run.file else {
        let run_help = root
            .find_subcommand_mut("run")
            .map(|run| run.print_long_help());
        return Err(if matches!(run_help, Some(Ok(()))) {
            0
        } else {
            USAGE
        });
    };
    // `run FILE --help`: the help of FILE's command.
    let help = run.help.then(|| OsString::from("--help"));
    let flags: Vec<OsString> = run.flags.iter().cloned().chain(help).collect();
    let line = read(path).and_then(|table| {
        let dir = path.parent().unwrap_or(Path::new(""));
        expand(&root, table, dir, &path.display().to_string(), &flags)
    });
    let line = match line {
        Ok(line) => line,
        Err(e) => {
            eprintln!("error: {}", redact_url(&crate::describe(&e)));
            return Err(USAGE);
        }
    };
    // Global flags given before `run` stay before the command.
    let at = argv.iter().position(|a| a == "run").unwrap_or(argv.len());
    let full: Vec<OsString> = argv[..at].iter().cloned().chain(line).collect();
    crate::session::stood_for(&full);
    <Cli as clap::Parser>::try_parse_from(&full).map_err(|e| {
        let _ = e.print();
        if e.use_stderr() {
            let words: Vec<_> = full[1..].iter().map(|a| a.to_string_lossy()).collect();
            eprintln!(
                "note: `plumbline run {}` stands for `plumbline {}`",
                path.display(),
                redact_url(&words.join(" "))
            );
        }
        e.exit_code().try_into().unwrap_or(USAGE)
    })
}

/// clap's exit code for a command line it cannot read: a file it cannot read is one too.
const USAGE: u8 = 2;

/// The file as a TOML table; a malformed one is refused naming the file and the line.
fn read(path: &Path) -> Result<toml::Table> {
    let text = crate::plan::read_bounded(path, "experiment file")?;
    text.parse::<toml::Table>().map_err(|e| {
        let message = e.message().trim().replace('\n', "; ");
        let line = e
            .span()
            .map(|span| text[..span.start].matches('\n').count() + 1);
        match line {
            Some(line) => {
                anyhow::anyhow!("{}:{line}: not valid TOML: {message}", path.display())
            }
            None => anyhow::anyhow!("{}: not valid TOML: {message}", path.display()),
        }
    })
}

/// The arguments after the program name that `table` (read from `file`, in `dir`) and the
/// user's `flags` stand for: the command's words, the file's flags the user did not give, then
/// the user's. `root` is built (`Command::build`), so every command sees its global flags.
fn expand(
    root: &clap::Command,
    mut table: toml::Table,
    dir: &Path,
    file: &str,
    flags: &[OsString],
) -> Result<Vec<OsString>> {
    let words = match table.remove(COMMAND) {
        Some(toml::Value::String(words)) => words,
        Some(other) => bail!(
            "{file}: `{COMMAND}` is a {}; give the command as a string (command = \"bench\")",
            other.type_str()
        ),
        None => bail!(
            "{file} names no command: add e.g. command = \"bench\" (or capacity, elastic, send, \
             receive, stream, worker, \"pipeline distributor\", …)"
        ),
    };
    let words: Vec<&str> = words.split_whitespace().collect();
    let command = find_command(root, &words, file)?;
    let name = format!("plumbline {}", words.join(" "));
    match table.remove(DESCRIPTION) {
        None | Some(toml::Value::String(_)) => {}
        Some(other) => bail!(
            "{file}: `{DESCRIPTION}` is a {}, not a string",
            other.type_str()
        ),
    }
    let given = given_ids(command, flags);
    let mut line: Vec<OsString> = words.iter().map(OsString::from).collect();
    let mut seen = std::collections::BTreeMap::new();
    for (key, value) in table {
        let arg = find_arg(command, &key).ok_or_else(|| unknown_key(command, &key, file, &name))?;
        if let Some(other) = seen.insert(arg.get_id().to_string(), key.clone()) {
            bail!(
                "{file}: keys `{other}` and `{key}` both name --{} of `{name}`: keep one",
                arg.get_long().unwrap_or_default()
            );
        }
        if given.contains(arg.get_id().as_str()) {
            continue;
        }
        let tokens =
            tokens(arg, &value, dir).with_context(|| format!("{file}: key `{key}` of `{name}`"))?;
        line.extend(tokens.into_iter().map(OsString::from));
    }
    line.extend(flags.iter().cloned());
    Ok(line)
}

/// The (sub)command `words` name: a command that runs, not a group (`pipeline`) nor `run`.
fn find_command<'a>(
    root: &'a clap::Command,
    words: &[&str],
    file: &str,
) -> Result<&'a clap::Command> {
    let mut command = root;
    for word in words {
        command = match command.find_subcommand(word) {
            Some(sub) if !NOT_RUN.contains(&sub.get_name()) => sub,
            _ => bail!(
                "{file}: no command `{}`: use one of {}",
                words.join(" "),
                names(command.get_subcommands().map(clap::Command::get_name))
            ),
        };
    }
    if command.has_subcommands() || words.is_empty() {
        bail!(
            "{file}: `{COMMAND}` must name one command: one of {}",
            names(command.get_subcommands().map(|sub| {
                match words.is_empty() {
                    true => sub.get_name().to_string(),
                    false => format!("{} {}", words.join(" "), sub.get_name()),
                }
            }))
        );
    }
    Ok(command)
}

/// Commands a file cannot name: `run` itself, and clap's `help`.
const NOT_RUN: [&str; 2] = ["run", "help"];

fn names<S: AsRef<str>>(names: impl Iterator<Item = S>) -> String {
    names
        .filter(|n| !NOT_RUN.contains(&n.as_ref()))
        .map(|n| n.as_ref().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The flag `key` names: its long name or an alias, as written, kebab-case or snake_case (a
/// flag with a long name only: positional arguments and help are no keys).
fn find_arg<'a>(command: &'a clap::Command, key: &str) -> Option<&'a Arg> {
    let spellings = [
        key.to_string(),
        key.replace('_', "-"),
        key.replace('-', "_"),
    ];
    spellings.iter().find_map(|spelling| {
        command.get_arguments().find(|arg| {
            let names_it = arg.get_long() == Some(spelling.as_str())
                || arg
                    .get_all_aliases()
                    .is_some_and(|aliases| aliases.contains(&spelling.as_str()));
            names_it
                && arg.get_long().is_some()
                && !matches!(
                    arg.get_action(),
                    ArgAction::Help
                        | ArgAction::HelpShort
                        | ArgAction::HelpLong
                        | ArgAction::Version
                )
        })
    })
}

/// A key that is no flag of the command, with the closest flag's name if one is close.
fn unknown_key(command: &clap::Command, key: &str, file: &str, name: &str) -> anyhow::Error {
    let wanted = key.replace('_', "-");
    let closest = command
        .get_arguments()
        .filter_map(Arg::get_long)
        .map(|long| (strsim::jaro_winkler(&wanted, long), long))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0));
    let hint = match closest {
        Some((_, long)) => format!("; did you mean `{long}`?"),
        None => String::new(),
    };
    anyhow::anyhow!(
        "{file}: unknown key `{key}`: no flag --{wanted} of `{name}`{hint} (`{name} --help` lists \
         them)"
    )
}

/// The ids of the arguments the user's `flags` set (`--name`, `--name=V`, an alias, `-q`).
fn given_ids(command: &clap::Command, flags: &[OsString]) -> BTreeSet<String> {
    let mut ids = BTreeSet::new();
    for flag in flags {
        let flag = flag.to_string_lossy();
        if flag == "--" {
            break;
        }
        let found = if let Some(long) = flag.strip_prefix("--") {
            let long = long.split('=').next().unwrap_or(long);
            find_arg(command, long)
        } else if let Some(short) = flag.strip_prefix('-').and_then(|s| s.chars().next()) {
            command.get_arguments().find(|arg| {
                arg.get_short() == Some(short)
                    || arg
                        .get_all_short_aliases()
                        .is_some_and(|s| s.contains(&short))
            })
        } else {
            None
        };
        if let Some(arg) = found {
            ids.insert(arg.get_id().to_string());
        }
    }
    ids
}

/// The arguments one key's `value` stands for, as clap reads `arg`: a switch from a boolean,
/// a count from a number, a value from a scalar, several from an array.
fn tokens(arg: &Arg, value: &toml::Value, dir: &Path) -> Result<Vec<String>> {
    let flag = format!("--{}", arg.get_long().expect("found by its long name"));
    let switch = |on: bool| match value {
        toml::Value::Boolean(b) => Ok(if *b == on { vec![flag.clone()] } else { vec![] }),
        other => bail!(
            "{flag} is a switch: give true or false, not a {}",
            other.type_str()
        ),
    };
    match arg.get_action() {
        ArgAction::SetTrue => switch(true),
        ArgAction::SetFalse => switch(false),
        ArgAction::Count => match value {
            toml::Value::Integer(n @ 0..=255) => Ok(vec![flag; *n as usize]),
            toml::Value::Boolean(b) => Ok(vec![flag; usize::from(*b)]),
            other => bail!("{flag} counts: give a number from 0 to 255, not {other}"),
        },
        action => {
            let values: Vec<String> = match value {
                toml::Value::Array(items) => items.iter().map(scalar).collect::<Result<_>>()?,
                one => vec![scalar(one)?],
            };
            let values: Vec<String> = values.iter().map(|v| resolve(arg, v, dir)).collect();
            let several = arg.get_num_args().is_some_and(|n| n.max_values() > 1);
            match (value.is_array(), action, arg.get_value_delimiter()) {
                (false, _, _) | (true, ArgAction::Append, _) => {
                    Ok(values.iter().map(|v| format!("{flag}={v}")).collect())
                }
                (true, _, Some(delimiter)) => Ok(vec![format!(
                    "{flag}={}",
                    values.join(&delimiter.to_string())
                )]),
                (true, _, None) if several => Ok(std::iter::once(flag).chain(values).collect()),
                (true, _, None) => bail!("{flag} takes one value, not an array"),
            }
        }
    }
}

/// A scalar TOML value as a flag's text.
fn scalar(value: &toml::Value) -> Result<String> {
    Ok(match value {
        toml::Value::String(s) => s.clone(),
        toml::Value::Integer(i) => i.to_string(),
        toml::Value::Float(f) => f.to_string(),
        toml::Value::Boolean(b) => b.to_string(),
        toml::Value::Datetime(d) => d.to_string(),
        other => bail!(
            "a flag's value is a string, number or boolean, not a {}",
            other.type_str()
        ),
    })
}

/// `value` of `arg` with a relative path made relative to the file's folder: a path flag's
/// (each of a delimited list), and `--preset`'s unless it names a built-in preset.
fn resolve(arg: &Arg, value: &str, dir: &Path) -> String {
    let is_path = match arg.get_id().as_str() {
        "preset" => !crate::plan::built_in(value),
        _ => matches!(
            arg.get_value_hint(),
            ValueHint::AnyPath | ValueHint::FilePath | ValueHint::DirPath
        ),
    };
    let one = |part: &str| match Path::new(part) {
        path if is_path && part != "-" && path.is_relative() => {
            dir.join(path).to_string_lossy().into_owned()
        }
        _ => part.to_string(),
    };
    match arg.get_value_delimiter() {
        Some(d) => value
            .split(d)
            .map(one)
            .collect::<Vec<_>>()
            .join(&d.to_string()),
        None => one(value),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root() -> clap::Command {
        let mut root = <Cli as clap::CommandFactory>::command();
        root.build();
        root
    }

    /// The line `text` (from /exp/x.toml) and `flags` expand to, as strings.
    fn line(text: &str, flags: &[&str]) -> Result<Vec<String>> {
        let flags: Vec<OsString> = flags.iter().map(OsString::from).collect();
        let table = text.parse::<toml::Table>().unwrap();
        let line = expand(&root(), table, Path::new("/exp"), "/exp/x.toml", &flags)?;
        Ok(line
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect())
    }

    fn refusal(text: &str) -> String {
        format!("{:#}", line(text, &[]).unwrap_err())
    }

    #[test]
    fn scalars_switches_and_arrays_become_the_flags_clap_reads() {
        let got = line(
            "command = \"bench\"\ndescription = \"d\"\nworkers = [1, 2]\ndelay = \"20ms\"\n\
             quiet = true\nno-report = false\nthreshold = [\"p99<20ms\", \"overhead<1%\"]",
            &[],
        )
        .unwrap();
        assert_eq!(
            got,
            [
                "bench",
                "--delay=20ms",
                "--quiet",
                "--threshold=p99<20ms",
                "--threshold=overhead<1%",
                "--workers=1",
                "--workers=2",
            ]
        );
    }

    #[test]
    fn snake_case_aliases_and_subcommands_name_their_flags() {
        let got = line(
            "command = \"send\"\nmax_mbps = 15\nn_cycles = 6\nbatch_size = 20",
            &[],
        )
        .unwrap();
        assert_eq!(
            got,
            ["send", "--batch-size=20", "--max-mbps=15", "--cycles=6"]
        );
        let got = line(
            "command = \"pipeline distributor\"\ntask = [\"a:5\", \"b:5:a\"]",
            &[],
        );
        assert_eq!(
            got.unwrap(),
            ["pipeline", "distributor", "--task=a:5", "--task=b:5:a"]
        );
        let got = line(
            "command = \"worker\"\ndelay_ms = 5\nworker-name = \"w1\"",
            &[],
        );
        assert_eq!(got.unwrap(), ["worker", "--delay_ms=5", "--name=w1"]);
    }

    #[test]
    fn a_flag_on_the_command_line_replaces_the_files_value_whole() {
        let text = "command = \"bench\"\nworkers = [1, 2]\nthreshold = [\"p99<1s\"]\nquiet = true";
        let got = line(text, &["--workers", "4", "--threshold=wall<9s", "-q"]).unwrap();
        assert_eq!(
            got,
            ["bench", "--workers", "4", "--threshold=wall<9s", "-q"]
        );
    }

    #[test]
    fn relative_paths_resolve_against_the_files_folder() {
        let got = line(
            "command = \"send\"\nfile = [\"a.bin\", \"/abs/b.bin\"]\njson = \"out/s.json\"",
            &[],
        )
        .unwrap();
        assert_eq!(
            got,
            [
                "send",
                "--file=/exp/a.bin",
                "--file=/abs/b.bin",
                "--json=/exp/out/s.json"
            ]
        );
        // Each of a delimited list; not a value that is no path.
        let got = line(
            "command = \"send\"\nfile = \"a.bin,b.bin\"\nkeys = \"k\"",
            &[],
        );
        assert_eq!(
            got.unwrap(),
            ["send", "--file=/exp/a.bin,/exp/b.bin", "--keys=k"]
        );
        let got = line("command = \"bench\"\npreset = \"alphabet\"", &[]).unwrap();
        assert_eq!(got, ["bench", "--preset=alphabet"]);
        let got = line("command = \"bench\"\npreset = \"mine.toml\"", &[]).unwrap();
        assert_eq!(got, ["bench", "--preset=/exp/mine.toml"]);
    }

    #[test]
    fn an_unknown_key_is_refused_naming_it_the_file_the_command_and_a_close_flag() {
        let e = refusal("command = \"bench\"\nwokers = [1]");
        assert!(e.contains("`wokers`"), "{e}");
        assert!(e.contains("/exp/x.toml"), "{e}");
        assert!(e.contains("plumbline bench"), "{e}");
        assert!(e.contains("did you mean `workers`"), "{e}");
        let e = refusal("command = \"capacity\"\nzzzz = 1");
        assert!(e.contains("`zzzz`") && !e.contains("did you mean"), "{e}");
        let e = refusal("command = \"bench\"\nhelp = true");
        assert!(e.contains("unknown key `help`"), "{e}");
        let e = refusal("command = \"send\"\nmax_mbps = 1\nmax-mbps = 2");
        assert!(
            e.contains("`max-mbps` and `max_mbps` both name --max-mbps"),
            "{e}"
        );
    }

    #[test]
    fn values_of_the_wrong_shape_are_refused_naming_the_key() {
        let e = refusal("command = \"bench\"\nquiet = \"yes\"");
        assert!(e.contains("`quiet`") && e.contains("true or false"), "{e}");
        let e = refusal("command = \"bench\"\nkeys = [\"uniform\", \"zipf:1\"]");
        assert!(e.contains("`keys`") && e.contains("one value"), "{e}");
        let e = refusal("command = \"bench\"\nworkers = [[1]]");
        assert!(e.contains("`workers`") && e.contains("not a array"), "{e}");
        let e = refusal("command = \"bench\"\n[workers]\nx = 1");
        assert!(e.contains("`workers`") && e.contains("table"), "{e}");
    }

    #[test]
    fn the_command_must_name_one_runnable_command() {
        assert!(refusal("workers = 1").contains("names no command"));
        assert!(refusal("command = 3").contains("as a string"));
        let e = refusal("command = \"pipeline\"");
        assert!(e.contains("pipeline distributor"), "{e}");
        let e = refusal("command = \"run\"");
        assert!(e.contains("no command `run`"), "{e}");
        let e = refusal("command = \"help\"");
        assert!(e.contains("no command `help`"), "{e}");
        let e = refusal("command = \"benchh\"");
        assert!(e.contains("capacity"), "{e}");
    }

    #[test]
    fn a_malformed_file_is_refused_naming_the_file_and_the_line() {
        let dir = std::env::temp_dir().join(format!("plumbline-exp-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("bad.toml");
        std::fs::write(&path, "command = \"bench\"\n\nworkers = [1,\nquiet = \n").unwrap();
        let e = format!("{:#}", read(&path).unwrap_err());
        assert!(e.starts_with(&format!("{}:", path.display())), "{e}");
        assert!(e.contains(":4: not valid TOML"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
