//! Docker for the container tests (`tests/containers.rs`): a [`DockerRun`] owns every
//! container, network and image one test makes, under names unique to the run and a
//! label, and removes them when dropped, also when the test panics. Runs that crashed
//! before their guard could clean up are swept at the next start (names carry their
//! start time; anything older than [`STALE_AFTER`] goes).
//!
//! Images: [`DockerRun::build_probemesh_image`] runs `deploy/container/build.sh` (the
//! documented build: static binary, then `docker build -f
//! deploy/container/Containerfile`), and [`DockerRun::build_tiny_worker_image`]
//! compiles `src/bin/tiny_worker.rs` statically with `rustc` and puts it in an image of
//! its own, also `FROM scratch`.
//!
//! Containers get `--dns 127.0.0.1`: Docker's embedded DNS still answers container
//! names, and a name it does not know (a killed container's) fails at once inside the
//! container instead of being forwarded to the host's resolver, so no query of the
//! suite leaves the machine.

use crate::binary::workspace_root;
use crate::require;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Label on every object the container tests make.
pub const LABEL: &str = "io.probemesh.test=containers";
/// Prefix of every object name: `pmtest-<unix seconds>-<random>-<what>`.
pub const PREFIX: &str = "pmtest-";
/// Objects of runs started longer ago than this are removed as left-overs.
pub const STALE_AFTER: Duration = Duration::from_secs(3600);
/// Time limit of one ordinary docker command.
const DOCKER_TIMEOUT: Duration = Duration::from_secs(120);
/// Time limit of the image build (a cold static release build on 2 cores).
const BUILD_TIMEOUT: Duration = Duration::from_secs(40 * 60);

/// What a finished docker command printed.
#[derive(Debug, Clone)]
pub struct Output {
    /// Exit code (`None` when killed).
    pub code: Option<i32>,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Output {
    /// Whether it exited 0.
    pub fn ok(&self) -> bool {
        self.code == Some(0)
    }
}

/// Runs `program args` with a time limit; `Err` only when it cannot run or times out.
async fn run_with_limit(
    program: &Path,
    args: &[String],
    limit: Duration,
    cwd: Option<&Path>,
) -> Result<Output, String> {
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if let Some(dir) = cwd {
        cmd.current_dir(dir);
    }
    // A nested cargo build must not see this test crate's own variables (see
    // binary::is_test_crate_var): ring's build script would rebuild at every switch.
    for (k, _) in std::env::vars_os() {
        if crate::binary::is_test_crate_var(&k.to_string_lossy()) {
            cmd.env_remove(k);
        }
    }
    let child = cmd
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", program.display()))?;
    match tokio::time::timeout(limit, child.wait_with_output()).await {
        Ok(Ok(out)) => Ok(Output {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }),
        Ok(Err(e)) => Err(format!("{}: {e}", program.display())),
        Err(_) => Err(format!(
            "`{} {}` did not finish within {limit:?}",
            program.display(),
            args.join(" ")
        )),
    }
}

/// `docker ARGS` (time limit two minutes): its output, whatever the exit code.
pub async fn docker_output(args: &[&str]) -> Result<Output, String> {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    run_with_limit(Path::new("docker"), &args, DOCKER_TIMEOUT, None).await
}

/// `docker ARGS`: its standard output, trimmed; `Err` with stderr on a non-zero exit.
pub async fn docker(args: &[&str]) -> Result<String, String> {
    let out = docker_output(args).await?;
    if out.ok() {
        Ok(out.stdout.trim().to_string())
    } else {
        Err(format!(
            "docker {} failed ({:?}): {}{}",
            args.join(" "),
            out.code,
            out.stderr.trim(),
            out.stdout.trim()
        ))
    }
}

/// Synchronous `docker ARGS` for `Drop`, output discarded; whether it exited 0.
fn docker_sync(args: &[&str]) -> bool {
    std::process::Command::new("docker")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// `true` when the docker client is installed and its daemon answers; otherwise skips
/// or, under `PROBEMESH_REQUIRE_ROOT_TESTS=1`, fails with the reason.
pub async fn available(why: &str) -> bool {
    if !require::tool("docker", why) {
        return false;
    }
    match docker(&["version", "--format", "{{.Server.Version}}"]).await {
        Ok(v) if !v.is_empty() => true,
        Ok(_) => require::skip_or_fail(&format!(
            "the docker daemon did not say its version ({why})"
        )),
        Err(e) => require::skip_or_fail(&format!("the docker daemon is not usable ({why}): {e}")),
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The start time encoded in an object name `pmtest-<secs>-…`, if it is one of ours.
fn started_at(name: &str) -> Option<u64> {
    let rest = name.trim_start_matches('/').strip_prefix(PREFIX)?;
    rest.split('-').next()?.parse().ok()
}

/// Whether an object named `name` belongs to a run older than [`STALE_AFTER`].
fn is_stale(name: &str, now: u64) -> bool {
    started_at(name).is_some_and(|t| now.saturating_sub(t) > STALE_AFTER.as_secs())
}

/// A private network made by [`DockerRun::network`].
#[derive(Debug, Clone)]
pub struct Network {
    /// Its name.
    pub name: String,
    /// The first three octets of its /24, e.g. `10.213.7`.
    pub prefix: String,
}

impl Network {
    /// Address `.host` in this network, e.g. `10.213.7.10`.
    pub fn ip(&self, host: u8) -> String {
        format!("{}.{host}", self.prefix)
    }

    /// The bridge's own address on the machine (`.1`), where a server of the test
    /// process can listen for containers.
    pub fn gateway(&self) -> String {
        self.ip(1)
    }
}

/// The probemesh image and what the build reported.
#[derive(Debug, Clone)]
pub struct BuiltImage {
    /// Image tag.
    pub tag: String,
    /// Image size in bytes (`docker image inspect .Size`).
    pub size: u64,
    /// The static binary the image holds (in the build context, on this machine).
    pub binary: PathBuf,
    /// Its size in bytes.
    pub binary_size: u64,
    /// The build script's report.
    pub report: String,
    /// How long the script took.
    pub took: Duration,
}

/// Everything one container test made; removed on drop.
#[derive(Debug)]
pub struct DockerRun {
    id: String,
    containers: Vec<String>,
    networks: Vec<String>,
    images: Vec<String>,
}

impl DockerRun {
    /// A new run: sweeps left-overs of crashed runs first.
    pub async fn new() -> DockerRun {
        sweep_stale().await;
        let id = format!("{}-{:04x}", unix_now(), rand::random::<u16>());
        DockerRun {
            id,
            containers: Vec::new(),
            networks: Vec::new(),
            images: Vec::new(),
        }
    }

    /// The unique name of object `what` of this run: `pmtest-<secs>-<rand>-<what>`.
    pub fn name(&self, what: &str) -> String {
        format!("{PREFIX}{}-{what}", self.id)
    }

    /// Builds the probemesh image with `deploy/container/build.sh` (the documented
    /// command), tagged for this run.
    pub async fn build_probemesh_image(&mut self) -> Result<BuiltImage, String> {
        let tag = format!("{}:test", self.name("probemesh"));
        let script = workspace_root().join("deploy/container/build.sh");
        let args = ["--tag", &tag, "--label", LABEL].map(String::from);
        let start = Instant::now();
        self.images.push(tag.clone());
        let out = run_with_limit(&script, &args, BUILD_TIMEOUT, Some(&workspace_root())).await?;
        let took = start.elapsed();
        if !out.ok() {
            return Err(format!(
                "deploy/container/build.sh failed ({:?}):\n{}\n{}",
                out.code, out.stdout, out.stderr
            ));
        }
        let size = docker(&["image", "inspect", "--format", "{{.Size}}", &tag])
            .await?
            .parse::<u64>()
            .map_err(|e| format!("image size: {e}"))?;
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map_or_else(|| workspace_root().join("target"), PathBuf::from);
        let binary = target.join("container/context/rootfs/usr/local/bin/probemesh");
        let binary_size = std::fs::metadata(&binary)
            .map_err(|e| format!("{}: {e}", binary.display()))?
            .len();
        Ok(BuiltImage {
            tag,
            size,
            binary,
            binary_size,
            report: format!(
                "{}{}",
                out.stderr
                    .lines()
                    .filter(|l| l.contains("Compiling") || l.contains("Finished"))
                    .map(|l| format!("{}\n", l.trim()))
                    .collect::<String>(),
                out.stdout
            ),
            took,
        })
    }

    /// Compiles `tests/src/bin/tiny_worker.rs` statically with `rustc` and builds a
    /// `FROM scratch` image of it (user 65532, port 8000). Returns the tag.
    pub async fn build_tiny_worker_image(&mut self) -> Result<String, String> {
        let ctx = tempfile::Builder::new()
            .prefix("probemesh-tiny-worker-")
            .tempdir()
            .map_err(|e| e.to_string())?;
        let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
        let source = workspace_root().join("tests/src/bin/tiny_worker.rs");
        let bin = ctx.path().join("tiny-worker");
        let args: Vec<String> = [
            "--edition",
            "2024",
            "-C",
            "opt-level=2",
            "-C",
            "target-feature=+crt-static",
            "-C",
            "strip=symbols",
            "-o",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain([
            bin.to_string_lossy().into_owned(),
            source.to_string_lossy().into_owned(),
        ])
        .collect();
        let out = run_with_limit(Path::new(&rustc), &args, DOCKER_TIMEOUT, None).await?;
        if !out.ok() {
            return Err(format!("rustc tiny_worker.rs failed: {}", out.stderr));
        }
        std::fs::write(
            ctx.path().join("Containerfile"),
            "FROM scratch\nCOPY tiny-worker /tiny-worker\nUSER 65532:65532\nEXPOSE 8000/tcp\nENTRYPOINT [\"/tiny-worker\"]\n",
        )
        .map_err(|e| e.to_string())?;
        let tag = format!("{}:test", self.name("tiny-worker"));
        self.images.push(tag.clone());
        let ctx_dir = ctx.path().to_string_lossy().into_owned();
        docker(&[
            "build",
            "--quiet",
            "--label",
            LABEL,
            "--tag",
            &tag,
            "-f",
            &format!("{ctx_dir}/Containerfile"),
            &ctx_dir,
        ])
        .await?;
        Ok(tag)
    }

    /// A private bridge network with its own /24 in 10.213.0.0/16 (a free one is
    /// searched), named for this run.
    pub async fn network(&mut self, what: &str) -> Result<Network, String> {
        let name = self.name(what);
        let mut last = String::new();
        let first = rand::random::<u8>();
        for i in 0..32u8 {
            let third = first.wrapping_add(i.wrapping_mul(37));
            let prefix = format!("10.213.{third}");
            let subnet = format!("{prefix}.0/24");
            let gateway = format!("{prefix}.1");
            match docker(&[
                "network",
                "create",
                "--driver",
                "bridge",
                "--subnet",
                &subnet,
                "--gateway",
                &gateway,
                "--label",
                LABEL,
                &name,
            ])
            .await
            {
                Ok(_) => {
                    self.networks.push(name.clone());
                    return Ok(Network { name, prefix });
                }
                Err(e) if e.contains("overlap") => last = e,
                Err(e) => return Err(e),
            }
        }
        Err(format!("no free /24 in 10.213.0.0/16: {last}"))
    }

    /// `docker run -d --name NAME --label … --dns 127.0.0.1 OPTS IMAGE ARGS`; the
    /// container is removed (with its anonymous volumes) when the run is dropped.
    pub async fn run(
        &mut self,
        name: &str,
        opts: &[String],
        image: &str,
        args: &[String],
    ) -> Result<String, String> {
        self.containers.push(name.to_string());
        let mut all: Vec<String> = [
            "run",
            "-d",
            "--name",
            name,
            "--label",
            LABEL,
            "--dns",
            "127.0.0.1",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        all.extend(opts.iter().cloned());
        all.push(image.to_string());
        all.extend(args.iter().cloned());
        let refs: Vec<&str> = all.iter().map(String::as_str).collect();
        docker(&refs).await
    }

    /// `docker create --name NAME --label … IMAGE`: a container that is never started
    /// (to inspect or export its filesystem); removed when the run is dropped.
    pub async fn create(&mut self, name: &str, image: &str) -> Result<String, String> {
        self.containers.push(name.to_string());
        docker(&["create", "--name", name, "--label", LABEL, image]).await
    }

    /// `docker exec CONTAINER ARGS`, whatever the exit code.
    pub async fn exec(&self, container: &str, args: &[&str]) -> Result<Output, String> {
        let mut all = vec!["exec", container];
        all.extend_from_slice(args);
        docker_output(&all).await
    }

    /// The container's logs (stdout and stderr), for failure messages.
    pub async fn logs(&self, container: &str) -> String {
        match docker_output(&["logs", "--tail", "200", container]).await {
            Ok(o) => format!("{}{}", o.stdout, o.stderr),
            Err(e) => e,
        }
    }
}

impl Drop for DockerRun {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // The test failed: what each container said helps more than the assertion.
            for c in &self.containers {
                if let Ok(out) = std::process::Command::new("docker")
                    .args(["logs", "--tail", "80", c])
                    .stdin(Stdio::null())
                    .output()
                {
                    eprintln!(
                        "===== docker logs --tail 80 {c} =====\n{}{}",
                        String::from_utf8_lossy(&out.stdout),
                        String::from_utf8_lossy(&out.stderr)
                    );
                }
            }
        }
        for c in &self.containers {
            docker_sync(&["rm", "--force", "--volumes", c]);
        }
        for n in &self.networks {
            docker_sync(&["network", "rm", n]);
        }
        for i in &self.images {
            docker_sync(&["rmi", "--force", i]);
        }
    }
}

/// Removes containers (with their volumes), networks and images of runs older than
/// [`STALE_AFTER`]: the left-overs of a test process that was killed.
pub async fn sweep_stale() {
    let now = unix_now();
    let label = format!("label={LABEL}");
    let lists: [(&[&str], &[&str]); 3] = [
        (
            &["ps", "--all", "--filter", &label, "--format", "{{.Names}}"],
            &["rm", "--force", "--volumes"],
        ),
        (
            &["network", "ls", "--filter", &label, "--format", "{{.Name}}"],
            &["network", "rm"],
        ),
        (
            &[
                "images",
                "--filter",
                &label,
                "--format",
                "{{.Repository}}:{{.Tag}}",
            ],
            &["rmi", "--force"],
        ),
    ];
    for (list, remove) in lists {
        let Ok(names) = docker(list).await else {
            continue;
        };
        for name in names.lines().filter(|n| is_stale(n, now)) {
            let mut args = remove.to_vec();
            args.push(name);
            eprintln!("removing left-over {name} of an earlier container test run");
            let _ = docker(&args).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_our_old_objects_are_stale() {
        let now = 1_800_000_000;
        assert!(is_stale("pmtest-1799990000-ab12-n0", now));
        assert!(is_stale("pmtest-1799990000-ab12-probemesh:test", now));
        assert!(
            !is_stale("pmtest-1799999000-ab12-n0", now),
            "a run of this hour"
        );
        assert!(!is_stale("probemesh:0.1.0", now), "not ours");
        assert!(!is_stale("pmtest-x-n0", now));
    }
}
