//! Test hosts in network namespaces (root only): namespaces, a switch (a bridge in its
//! own namespace), point-to-point links, an uplink from the test process to the switch,
//! and processes started inside namespaces. Everything is removed on drop, also when a
//! test panics: processes are killed, namespaces (and with them every veth) deleted.

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

/// Whether the tests run as root (needed for `ip netns`).
pub use crate::require::is_root;

/// Runs `ip` with `args`, panicking with its stderr on failure.
pub fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A short prefix unique to this process and call, for namespace and interface names
/// (interface names are limited to 15 bytes).
pub fn unique_prefix() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "p{}{}",
        std::process::id() % 100_000,
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A set of namespaces owned by one test.
#[derive(Debug)]
pub struct Lab {
    prefix: String,
    namespaces: Vec<String>,
    uplinks: Vec<String>,
    procs: Vec<Child>,
}

impl Lab {
    /// An empty lab with a fresh prefix.
    pub fn new() -> Lab {
        Lab {
            prefix: unique_prefix(),
            namespaces: Vec::new(),
            uplinks: Vec::new(),
            procs: Vec::new(),
        }
    }

    /// The full name of namespace `short`.
    pub fn ns(&self, short: &str) -> String {
        format!("{}{short}", self.prefix)
    }

    /// Creates namespace `short` with loopback up and IPv4 forwarding off. A new
    /// namespace copies `net.ipv4.ip_forward` from the root namespace (with the default
    /// `net.core.devconf_inherit_init_net=0`), which is on wherever docker runs; the
    /// scenarios rely on hosts that drop what they are not the destination of.
    pub fn add_ns(&mut self, short: &str) -> String {
        let name = self.ns(short);
        ip(&["netns", "add", &name]);
        self.namespaces.push(name.clone());
        ip(&["-n", &name, "link", "set", "lo", "up"]);
        self.exec(short, &["sysctl", "-qw", "net.ipv4.ip_forward=0"]);
        name
    }

    /// Creates the switch: namespace `sw` holding bridge `br0`.
    pub fn add_switch(&mut self) {
        let sw = self.add_ns("sw");
        ip(&["-n", &sw, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", &sw, "link", "set", "br0", "up"]);
    }

    /// Plugs host `short` into the switch with address `cidr` (e.g. `10.231.0.1/24`).
    pub fn plug(&mut self, short: &str, cidr: &str) {
        let (host, sw) = (self.ns(short), self.ns("sw"));
        let (a, b) = (
            format!("{}{short}a", self.prefix),
            format!("{}{short}b", self.prefix),
        );
        ip(&["link", "add", &a, "type", "veth", "peer", "name", &b]);
        ip(&["link", "set", &a, "netns", &host]);
        ip(&["link", "set", &b, "netns", &sw]);
        ip(&["-n", &sw, "link", "set", &b, "master", "br0", "up"]);
        ip(&["-n", &host, "addr", "add", cidr, "dev", &a]);
        ip(&["-n", &host, "link", "set", &a, "up"]);
    }

    /// Connects the test process (root namespace) to the switch with address `cidr`.
    pub fn uplink(&mut self, cidr: &str) {
        let sw = self.ns("sw");
        let (a, b) = (format!("{}ua", self.prefix), format!("{}ub", self.prefix));
        ip(&["link", "add", &a, "type", "veth", "peer", "name", &b]);
        self.uplinks.push(a.clone());
        ip(&["link", "set", &b, "netns", &sw]);
        ip(&["-n", &sw, "link", "set", &b, "master", "br0", "up"]);
        ip(&["addr", "add", cidr, "dev", &a]);
        ip(&["link", "set", &a, "up"]);
    }

    /// A point-to-point link between hosts `x` and `y` with addresses `x_cidr`, `y_cidr`.
    pub fn link(&mut self, x: &str, x_cidr: &str, y: &str, y_cidr: &str) {
        let (xa, ya) = (
            format!("{}{x}{y}", self.prefix),
            format!("{}{y}{x}", self.prefix),
        );
        ip(&["link", "add", &xa, "type", "veth", "peer", "name", &ya]);
        ip(&["link", "set", &xa, "netns", &self.ns(x)]);
        ip(&["link", "set", &ya, "netns", &self.ns(y)]);
        ip(&["-n", &self.ns(x), "addr", "add", x_cidr, "dev", &xa]);
        ip(&["-n", &self.ns(y), "addr", "add", y_cidr, "dev", &ya]);
        ip(&["-n", &self.ns(x), "link", "set", &xa, "up"]);
        ip(&["-n", &self.ns(y), "link", "set", &ya, "up"]);
    }

    /// Adds a route in host `short`.
    pub fn route(&self, short: &str, dest: &str, via: &str) {
        ip(&["-n", &self.ns(short), "route", "add", dest, "via", via]);
    }

    /// Starts `program args` inside host `short`; output goes to `log` (appended).
    /// Killed on drop. Returns a handle for [`Lab::kill`].
    pub fn spawn(
        &mut self,
        short: &str,
        program: &str,
        args: &[&str],
        log: &std::path::Path,
    ) -> usize {
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("log file");
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns(short), program])
            .args(args)
            .stdin(Stdio::null())
            .stdout(f.try_clone().expect("log"))
            .stderr(f)
            .spawn()
            .expect("spawn in namespace");
        self.procs.push(child);
        self.procs.len() - 1
    }

    /// Kills process `handle` with SIGKILL (a crash) and reaps it.
    pub fn kill(&mut self, handle: usize) {
        if let Some(p) = self.procs.get_mut(handle) {
            let _ = p.kill();
            let _ = p.wait();
        }
    }

    /// Sends SIGTERM to process `handle` and waits up to `deadline` for it to exit;
    /// returns whether it exited on its own.
    pub fn terminate(&mut self, handle: usize, deadline: std::time::Duration) -> bool {
        let Some(p) = self.procs.get_mut(handle) else {
            return false;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &p.id().to_string()])
            .status();
        let end = std::time::Instant::now() + deadline;
        while std::time::Instant::now() < end {
            if let Ok(Some(_)) = p.try_wait() {
                return true;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let _ = p.kill();
        let _ = p.wait();
        false
    }

    /// Runs `cmd args` inside host `short` to completion, panicking on failure.
    pub fn exec(&self, short: &str, cmd: &[&str]) {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.ns(short)])
            .args(cmd)
            .output()
            .expect("ip netns exec");
        assert!(
            out.status.success(),
            "{cmd:?} in {short}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Silently drops host `short`'s packets to `dest` (a blackhole route).
    pub fn blackhole(&self, short: &str, dest: &str) {
        ip(&["-n", &self.ns(short), "route", "add", "blackhole", dest]);
    }

    /// Removes a blackhole added with [`Lab::blackhole`].
    pub fn unblackhole(&self, short: &str, dest: &str) {
        ip(&["-n", &self.ns(short), "route", "del", "blackhole", dest]);
    }

    /// Whether this kernel has `sch_netem` (tried in a scratch namespace).
    pub fn netem_available(&mut self) -> bool {
        let ns = self.add_ns("nt");
        Command::new("ip")
            .args([
                "netns", "exec", &ns, "tc", "qdisc", "add", "dev", "lo", "root", "netem", "delay",
                "1ms",
            ])
            .output()
            .is_ok_and(|o| o.status.success())
    }

    /// Drops `percent`% of the packets every host receives, with iptables' `statistic`
    /// match (for kernels without `sch_netem`). Needs the `iptables` command.
    pub fn drop_randomly(&self, percent: u32) -> Result<(), String> {
        let p = format!("{:.2}", f64::from(percent) / 100.0);
        for ns in self
            .namespaces
            .iter()
            .filter(|n| !n.ends_with("sw") && !n.ends_with("nt"))
        {
            let out = Command::new("ip")
                .args([
                    "netns",
                    "exec",
                    ns,
                    "iptables",
                    "-A",
                    "INPUT",
                    "-m",
                    "statistic",
                    "--mode",
                    "random",
                    "--probability",
                    &p,
                    "-j",
                    "DROP",
                ])
                .output()
                .map_err(|e| format!("iptables: {e}"))?;
            if !out.status.success() {
                return Err(format!(
                    "iptables in {ns}: {}",
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
        }
        Ok(())
    }

    /// Adds `tc netem` impairment (e.g. `["loss", "10%", "delay", "50ms"]`) to every port
    /// of the switch.
    pub fn impair_switch(&self, netem: &[&str]) {
        let sw = self.ns("sw");
        let out = Command::new("ip")
            .args(["-n", &sw, "-o", "link", "show"])
            .output()
            .expect("ip link");
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let name = line
                .split(':')
                .nth(1)
                .map(|n| n.trim().split('@').next().unwrap_or("").to_string());
            if let Some(name) = name.filter(|n| n.starts_with(&self.prefix)) {
                let mut args = vec![
                    "netns", "exec", &sw, "tc", "qdisc", "add", "dev", &name, "root", "netem",
                ];
                args.extend_from_slice(netem);
                let st = Command::new("ip").args(&args).output().expect("tc");
                assert!(
                    st.status.success(),
                    "tc on {name}: {}",
                    String::from_utf8_lossy(&st.stderr)
                );
            }
        }
    }
}

impl Default for Lab {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for p in &mut self.procs {
            let _ = p.kill();
            let _ = p.wait();
        }
        for ns in self.namespaces.iter().rev() {
            // Anything still running inside (children of the processes above).
            if let Ok(out) = Command::new("ip").args(["netns", "pids", ns]).output() {
                for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                    let _ = Command::new("kill").args(["-9", pid]).status();
                }
            }
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
        for link in &self.uplinks {
            let _ = Command::new("ip").args(["link", "del", link]).status();
        }
    }
}
