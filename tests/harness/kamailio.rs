//! A real Kamailio (the Debian package) in front of the server, running the shipped
//! `deploy/kamailio/ivm.cfg` unchanged: on a free loopback port, foreground, logging to a
//! file, with a dispatcher list naming the IVM nodes. Stopped (SIGTERM to the process group,
//! then SIGKILL) on drop; its log is printed when the test panics.

use std::fs::{self, File};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tempfile::TempDir;

use crate::paths;
use crate::ports::free_port;
use crate::sip::UdpClient;

/// Where Debian 12 puts Kamailio's modules.
pub const MODULES: &str = "/usr/lib/x86_64-linux-gnu/kamailio/modules";

/// A running Kamailio.
pub struct Kamailio {
    pub addr: SocketAddr,
    child: Child,
    log: PathBuf,
    _dir: TempDir,
}

/// Whether the binary and the modules the shipped config loads are installed.
pub fn available() -> bool {
    crate::process::which("kamailio").is_some() && Path::new(MODULES).join("dispatcher.so").is_file()
}

/// The shipped configuration.
pub fn config_path() -> PathBuf {
    paths::repo_root().join("deploy").join("kamailio").join("ivm.cfg")
}

impl Kamailio {
    /// Starts Kamailio on `127.0.0.1:<free port>` (UDP and TCP) dispatching to `nodes`, and
    /// waits until it relays an OPTIONS (so the nodes are reachable through it).
    pub fn start(nodes: &[SocketAddr]) -> anyhow::Result<Kamailio> {
        let dir = tempfile::Builder::new().prefix("ivm-kamailio-").tempdir()?;
        let list = dir.path().join("dispatcher.list");
        let lines: String = nodes.iter().map(|n| format!("1 sip:{n}\n")).collect();
        fs::write(&list, lines)?;
        let port = free_port();
        let addr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port));
        let log = dir.path().join("kamailio.log");
        let out = File::create(&log)?;
        let child = Command::new("kamailio")
            .arg("-f")
            .arg(config_path())
            .arg("-L")
            .arg(MODULES)
            .arg("-A")
            .arg(format!("DISPATCHER_LIST=\"{}\"", list.display()))
            .arg("-l")
            .arg(format!("udp:{addr}"))
            .arg("-l")
            .arg(format!("tcp:{addr}"))
            .args(["-DD", "-E", "-m", "64", "-M", "8"])
            .arg("-w")
            .arg(dir.path())
            .arg("-P")
            .arg(dir.path().join("kamailio.pid"))
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            // Its own process group, so its worker processes go with it.
            .process_group(0)
            .spawn()
            .context("start kamailio")?;
        let mut k = Kamailio {
            addr,
            child,
            log,
            _dir: dir,
        };
        k.wait_ready()?;
        Ok(k)
    }

    fn wait_ready(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let client = UdpClient::new(self.addr)?;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                bail!("kamailio exited during startup ({status}):\n{}", self.log());
            }
            if Instant::now() >= deadline {
                bail!("kamailio did not relay an OPTIONS within 10 s:\n{}", self.log());
            }
            if client.send(&client.options().to_bytes()).is_ok()
                && client
                    .collect_until(Duration::from_millis(300), Some(Duration::ZERO))
                    .is_ok_and(|r| r.iter().any(|r| r.status == 200))
            {
                return Ok(());
            }
        }
    }

    /// What Kamailio logged so far.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Kamailio {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("---- kamailio log ----\n{}", self.log());
        }
        let group = -(self.child.id() as i32);
        let _ = crate::process::signal_group(group, libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = crate::process::signal_group(group, libc::SIGKILL);
        let _ = self.child.wait();
    }
}
