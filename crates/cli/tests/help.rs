//! What a user reads before running anything: `--help` with examples and the exit codes,
//! shell completions and the man page, all from the one clap definition.

mod common;

use common::{plumbline, stdout};

#[test]
fn help_lists_the_exit_codes_and_each_command_has_examples() {
    let out = plumbline(&["--help"]);
    assert!(out.status.success());
    let text = stdout(&out);
    for code in ["0 ", "1 ", "2 ", "99 ", "130 "] {
        assert!(
            text.lines().any(|l| l.trim_start().starts_with(code)),
            "exit code {code}in: {text}"
        );
    }
    for command in [
        "bench",
        "capacity",
        "elastic",
        "send",
        "receive",
        "gen",
        "inspect",
        "shutdown",
        "shrink",
        "stream",
        "report",
        "completions",
        "man",
        "run",
    ] {
        let out = plumbline(&[command, "--help"]);
        assert!(out.status.success(), "{command}");
        assert!(
            stdout(&out).contains("Examples"),
            "`plumbline {command} --help` has no examples"
        );
    }
}

#[test]
fn completions_name_every_command_for_each_shell() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let out = plumbline(&["completions", shell]);
        assert!(out.status.success(), "{shell}");
        let script = stdout(&out);
        for command in ["bench", "elastic", "capacity", "threshold"] {
            assert!(
                script.contains(command),
                "{shell} completion lacks {command}"
            );
        }
    }
    assert_eq!(plumbline(&["completions", "tcsh"]).status.code(), Some(2));
}

#[test]
fn the_man_page_is_roff_with_every_command_and_one_page_each_with_out() {
    let out = plumbline(&["man"]);
    assert!(out.status.success());
    let page = stdout(&out);
    assert!(page.contains(".TH plumbline 1"), "{page}");
    assert!(page.contains("plumbline\\-elastic") || page.contains("elastic"));
    let dir = common::scratch("man");
    let out = plumbline(&["man", "--out", dir.to_str().unwrap()]);
    assert!(out.status.success());
    for name in [
        "plumbline.1",
        "plumbline-bench.1",
        "plumbline-pipeline-worker.1",
    ] {
        let text = std::fs::read_to_string(dir.join(name)).unwrap();
        assert!(text.contains(".SH NAME"), "{name}");
    }
}
