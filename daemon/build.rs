//! Records the git revision for `probemesh version`, when the source is a git checkout.

use std::path::Path;
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    Command::new("git")
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

fn main() {
    if let Some(rev) = git(&["rev-parse", "--short=12", "HEAD"]) {
        println!("cargo:rustc-env=PROBEMESH_GIT_REVISION={rev}");
    }
    // Watch where git really keeps HEAD and the current branch's ref: in a linked worktree
    // `../.git` is a file, and a path that does not exist makes cargo rerun this script
    // (and rebuild the crate) on every build.
    let mut refs = vec!["HEAD".to_string(), "packed-refs".to_string()];
    refs.extend(git(&["symbolic-ref", "-q", "HEAD"])); // refs/heads/<branch>
    let mut watched = false;
    for p in &refs {
        if let Some(path) = git(&["rev-parse", "--git-path", p])
            && Path::new(&path).exists()
        {
            println!("cargo:rerun-if-changed={path}");
            watched = true;
        }
    }
    if !watched {
        println!("cargo:rerun-if-changed=build.rs");
    }
}
