//! Records the git commit the binary was built from (`PLUMBLINE_GIT_COMMIT`), for the
//! reproducibility metadata of every report. Outside a git checkout it says "unknown".

use std::process::Command;

fn main() {
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    // Only the commit: whether the tree had edits is not tracked, since this script reruns when
    // HEAD moves, not on every edit anywhere in the workspace.
    let commit = git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=PLUMBLINE_GIT_COMMIT={commit}");
    // Rebuild this crate's metadata when HEAD moves (a commit, a checkout).
    if let Some(dir) = git(&["rev-parse", "--git-dir"]) {
        println!("cargo:rerun-if-changed={dir}/HEAD");
        if let Some(head) = git(&["symbolic-ref", "-q", "HEAD"]) {
            println!("cargo:rerun-if-changed={dir}/{head}");
        }
    }
}
