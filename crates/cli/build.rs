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
    let commit = match git(&["rev-parse", "--short=12", "HEAD"]) {
        Some(hash) => {
            let dirty = git(&["status", "--porcelain", "--untracked-files=no"])
                .is_some_and(|s| !s.is_empty());
            if dirty {
                format!("{hash}-dirty")
            } else {
                hash
            }
        }
        None => "unknown".into(),
    };
    println!("cargo:rustc-env=PLUMBLINE_GIT_COMMIT={commit}");
    // Rebuild this crate's metadata when HEAD moves or the index changes (a commit or a stage).
    if let Some(dir) = git(&["rev-parse", "--git-dir"]) {
        for path in ["HEAD", "index"] {
            println!("cargo:rerun-if-changed={dir}/{path}");
        }
        if let Some(head) = git(&["symbolic-ref", "-q", "HEAD"]) {
            println!("cargo:rerun-if-changed={dir}/{head}");
        }
    }
}
