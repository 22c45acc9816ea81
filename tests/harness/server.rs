//! Starting and driving a real `ivm-sipd`.

use std::fs::{self, File, OpenOptions};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rusqlite::{Connection, OpenFlags};
use tempfile::TempDir;

use crate::paths;
use crate::ports::free_port;
use crate::process::{self, Finished};
use crate::sip::{SipResponse, UdpClient};

/// How long the server may take to answer its first OPTIONS.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the server may take to exit after SIGTERM.
pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);
/// Time limit for one admin subcommand.
pub const ADMIN_TIMEOUT: Duration = Duration::from_secs(30);

/// The base config every test server gets; the `extra` TOML given to
/// [`Server::start`] is merged over it key by key. The registrar runs with its
/// shipped defaults (MD5 digest), which SIPp and stock phones can answer.
///
/// RTP ports are kept out of the range [`crate::ports::free_port`] hands out (20000–31999), so a
/// server allocating media ports cannot take a port a test has just picked for a peer (a
/// baresip control socket, a Kamailio listener) before the peer binds it.
pub const BASE_CONFIG: &str = r#"
[sip]
realm = "ivm.local"

[media]
rtp_ports = "40000-49999"
"#;

/// One row of the `registrations` table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Registration {
    pub aor: String,
    pub contact: String,
    pub expires_at: i64,
}

/// A running `ivm-sipd` on `127.0.0.1:<free port>` with its own temporary
/// config and data directory. Killed (SIGTERM, then SIGKILL) on drop; if
/// the test is panicking, the server's log is printed first.
pub struct Server {
    pub addr: SocketAddr,
    /// Where it takes SIP over TLS (self-signed certificate in its data directory).
    pub tls: SocketAddr,
    /// `None` only while dropping (kept on panic).
    dir: Option<TempDir>,
    dir_path: PathBuf,
    config: PathBuf,
    data_dir: PathBuf,
    log: PathBuf,
    child: Option<Child>,
    binary: PathBuf,
}

/// Merges TOML `extra` over `base` (tables recursively, other values
/// replaced).
pub fn merge_toml(base: &str, extra: &str) -> anyhow::Result<String> {
    fn merge(into: &mut toml::Table, from: toml::Table) {
        for (k, v) in from {
            match (into.get_mut(&k), v) {
                (Some(toml::Value::Table(a)), toml::Value::Table(b)) => merge(a, b),
                (_, v) => {
                    into.insert(k, v);
                }
            }
        }
    }
    let mut base: toml::Table = base.parse().context("base config is not TOML")?;
    let extra: toml::Table = extra.parse().context("extra config is not TOML")?;
    merge(&mut base, extra);
    toml::to_string(&base).context("serialising config")
}

impl Server {
    /// Starts a server with [`BASE_CONFIG`] merged with `extra_toml` (may
    /// be empty) and waits until it answers OPTIONS over UDP.
    pub fn start(extra_toml: &str) -> anyhow::Result<Server> {
        Server::start_on(IpAddr::V4(Ipv4Addr::LOCALHOST), extra_toml)
    }

    /// Like [`Server::start`], listening on `ip` (`::1` for IPv6; media follows the listen
    /// address).
    pub fn start_on(ip: IpAddr, extra_toml: &str) -> anyhow::Result<Server> {
        let binary = paths::require_server_binary()?;
        let dir = tempfile::Builder::new()
            .prefix("ivm-e2e-")
            .tempdir()
            .context("temp dir")?;
        let config = dir.path().join("ivm-sipd.toml");
        let data_dir = dir.path().join("data");
        fs::create_dir_all(&data_dir)?;
        // Each server's built-in SMSC and TLS listener on ports of their own (tests run in
        // parallel).
        let tls = SocketAddr::new(ip, free_port());
        let smsc = format!(
            "[smsc]\nlisten = \"127.0.0.1:{}\"\n[sip]\ntls_listen = \"{tls}\"\n",
            free_port()
        );
        fs::write(&config, merge_toml(&merge_toml(BASE_CONFIG, &smsc)?, extra_toml)?)?;
        let port = free_port();
        let mut server = Server {
            addr: SocketAddr::new(ip, port),
            tls,
            log: dir.path().join("ivm-sipd.log"),
            dir_path: dir.path().to_path_buf(),
            dir: Some(dir),
            config,
            data_dir,
            child: None,
            binary,
        };
        server.spawn()?;
        Ok(server)
    }

    /// Starts a server and adds `subscribers` (number, password) through
    /// the admin CLI.
    pub fn start_with_subscribers(extra_toml: &str, subscribers: &[(&str, &str)]) -> anyhow::Result<Server> {
        let server = Server::start(extra_toml)?;
        for (number, password) in subscribers {
            server.add_subscriber(number, password)?;
        }
        Ok(server)
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .context("open server log")?;
        let log2 = log.try_clone()?;
        let mut cmd = Command::new(&self.binary);
        cmd.arg("run")
            .arg("--config")
            .arg(&self.config)
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--listen")
            .arg(self.addr.to_string())
            .current_dir(self.dir_path.as_path())
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log2));
        if std::env::var_os("RUST_LOG").is_none() {
            cmd.env("RUST_LOG", "info");
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot start {}", self.binary.display()))?;
        self.child = Some(child);
        self.wait_ready()
    }

    fn wait_ready(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        let client = UdpClient::new(self.addr)?;
        loop {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                self.child = None;
                bail!(
                    "ivm-sipd exited during startup ({status}); config:\n{}\nlog:\n{}",
                    fs::read_to_string(&self.config).unwrap_or_default(),
                    self.log()
                );
            }
            if Instant::now() >= deadline {
                let _ = self.kill();
                bail!(
                    "ivm-sipd did not answer OPTIONS on udp:{} within {STARTUP_TIMEOUT:?}; log:\n{}",
                    self.addr,
                    self.log()
                );
            }
            if client.send(&client.options().to_bytes()).is_ok()
                && client
                    .collect_until(Duration::from_millis(200), Some(Duration::ZERO))
                    .is_ok_and(|r| !r.is_empty())
            {
                return Ok(());
            }
        }
    }

    /// The temporary directory (config, `data/`, log).
    pub fn dir(&self) -> &Path {
        self.dir_path.as_path()
    }

    pub fn config_path(&self) -> &Path {
        &self.config
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// `<data_dir>/ivm.sqlite`.
    pub fn db_path(&self) -> PathBuf {
        self.data_dir.join("ivm.sqlite")
    }

    /// The server's stderr/stdout so far (all runs).
    pub fn log(&self) -> String {
        fs::read(&self.log)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// The last `lines` lines of the log.
    pub fn log_tail(&self, lines: usize) -> String {
        let log = self.log();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// The exit status if the process has exited (it is reaped then).
    pub fn exit_status(&mut self) -> Option<ExitStatus> {
        self.child.as_mut().and_then(|c| c.try_wait().ok().flatten())
    }

    /// SIGTERM, then wait up to [`SHUTDOWN_TIMEOUT`]; SIGKILL and an error
    /// if it does not exit in time.
    pub fn stop(&mut self) -> anyhow::Result<ExitStatus> {
        let Some(mut child) = self.child.take() else {
            bail!("server is not running")
        };
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        process::signal(child.id(), libc::SIGTERM);
        match process::wait_bounded(&mut child, SHUTDOWN_TIMEOUT)? {
            Some(status) => Ok(status),
            None => {
                let _ = child.kill();
                let _ = child.wait();
                bail!("ivm-sipd did not exit within {SHUTDOWN_TIMEOUT:?} of SIGTERM; killed it")
            }
        }
    }

    fn kill(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take()
            && child.try_wait()?.is_none()
        {
            process::signal(child.id(), libc::SIGTERM);
            if process::wait_bounded(&mut child, Duration::from_secs(3))?.is_none() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        Ok(())
    }

    /// Stops the server (SIGTERM) and starts it again on the same port,
    /// config and data directory. Returns how the first run exited.
    pub fn restart(&mut self) -> anyhow::Result<ExitStatus> {
        let status = self.stop()?;
        self.spawn()?;
        Ok(status)
    }

    /// Starts the server again after it died or was stopped.
    pub fn start_again(&mut self) -> anyhow::Result<()> {
        if self.is_running() {
            bail!("server is still running");
        }
        self.child = None;
        self.spawn()
    }

    /// Runs `ivm-sipd <args> --config F --data-dir D` and returns what it
    /// did (whatever the exit status).
    pub fn admin(&self, args: &[&str]) -> anyhow::Result<Finished> {
        let mut cmd = Command::new(&self.binary);
        cmd.args(args)
            .arg("--config")
            .arg(&self.config)
            .arg("--data-dir")
            .arg(&self.data_dir)
            .current_dir(self.dir_path.as_path());
        if std::env::var_os("RUST_LOG").is_none() {
            cmd.env("RUST_LOG", "warn");
        }
        let out = process::run_bounded(&mut cmd, ADMIN_TIMEOUT)?;
        if out.status.is_none() {
            bail!("`ivm-sipd {}` did not finish within {ADMIN_TIMEOUT:?}", args.join(" "));
        }
        Ok(out)
    }

    /// Like [`Server::admin`], but an error unless it exits with 0;
    /// returns stdout.
    pub fn admin_ok(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = self.admin(args)?;
        if !out.success() {
            bail!(
                "`ivm-sipd {}` failed ({:?})\nstdout:\n{}\nstderr:\n{}",
                args.join(" "),
                out.status,
                out.stdout,
                out.stderr
            );
        }
        Ok(out.stdout)
    }

    /// `ivm-sipd subscriber add NUMBER --password PW`.
    pub fn add_subscriber(&self, number: &str, password: &str) -> anyhow::Result<()> {
        self.admin_ok(&["subscriber", "add", number, "--password", password])
            .map(|_| ())
    }

    /// Writes `rows` (number, password) as a CSV with the documented header
    /// into the temp dir and runs `ivm-sipd subscriber import` on it.
    pub fn import_subscribers(&self, rows: &[(&str, &str)]) -> anyhow::Result<String> {
        let csv = self
            .dir_path
            .as_path()
            .join(format!("import-{}.csv", crate::sip::unique("")));
        let mut text = String::from("number,password,name,msisdn,pin\n");
        for (n, p) in rows {
            text.push_str(&format!("{n},{p},,,\n"));
        }
        fs::write(&csv, text)?;
        let path = csv.to_string_lossy().into_owned();
        self.admin_ok(&["subscriber", "import", &path])
    }

    /// The SQLite store, opened read-only (busy timeout 5 s).
    pub fn db(&self) -> anyhow::Result<Connection> {
        let path = self.db_path();
        let conn = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .with_context(|| format!("open {} read-only", path.display()))?;
        conn.busy_timeout(Duration::from_secs(5))?;
        Ok(conn)
    }

    /// Rows of `registrations` for `aor` (the subscriber number).
    pub fn registrations(&self, aor: &str) -> anyhow::Result<Vec<Registration>> {
        let conn = self.db()?;
        let mut stmt =
            conn.prepare("SELECT aor, contact, expires_at FROM registrations WHERE aor = ?1 ORDER BY contact")?;
        let rows = stmt
            .query_map([aor], |r| {
                Ok(Registration {
                    aor: r.get(0)?,
                    contact: r.get(1)?,
                    expires_at: r.get(2)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// Waits (up to 3 s) until `aor` has exactly `n` registration rows and
    /// returns them; the error lists what the table holds.
    pub fn wait_registrations(&self, aor: &str, n: usize) -> anyhow::Result<Vec<Registration>> {
        let mut last = Vec::new();
        let got = crate::wait_for(Duration::from_secs(3), "registration rows", || {
            last = self.registrations(aor)?;
            Ok((last.len() == n).then(|| last.clone()))
        });
        got.with_context(|| format!("expected {n} registration row(s) for {aor}, the table has {last:#?}"))
    }

    /// Numbers in the `subscribers` table.
    pub fn subscriber_numbers(&self) -> anyhow::Result<Vec<String>> {
        let conn = self.db()?;
        let mut stmt = conn.prepare("SELECT number FROM subscribers ORDER BY number")?;
        let rows = stmt.query_map([], |r| r.get(0))?.collect::<Result<Vec<String>, _>>()?;
        Ok(rows)
    }

    /// A fresh UDP client talking to this server.
    pub fn udp_client(&self) -> anyhow::Result<UdpClient> {
        UdpClient::new(self.addr)
    }

    /// OPTIONS over UDP; the final response.
    pub fn options(&self) -> anyhow::Result<SipResponse> {
        let c = self.udp_client()?;
        c.transact(&c.options(), Duration::from_secs(2))
    }

    /// Writes a file into the server's temp dir and returns its path.
    pub fn write_file(&self, name: &str, contents: &str) -> anyhow::Result<PathBuf> {
        let path = self.dir_path.as_path().join(name);
        let mut f = File::create(&path)?;
        std::io::Write::write_all(&mut f, contents.as_bytes())?;
        Ok(path)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "---- ivm-sipd log ({}) ----\n{}\n---- end of ivm-sipd log ----",
                self.log.display(),
                self.log_tail(200)
            );
        }
        let _ = self.kill();
        if (std::thread::panicking() || std::env::var_os("IVM_E2E_KEEP").is_some())
            && let Some(dir) = self.dir.take()
        {
            eprintln!(
                "kept the server's directory (config, data, log): {}",
                dir.keep().display()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::merge_toml;

    #[test]
    fn extra_config_merges_key_by_key() {
        let merged = merge_toml(
            super::BASE_CONFIG,
            "[registrar]\nmin_expires = 30\n[sip]\nrealm = \"x\"\n",
        )
        .expect("merge");
        let t: toml::Table = merged.parse().expect("toml");
        assert_eq!(t["sip"]["realm"].as_str(), Some("x"));
        assert_eq!(t["registrar"]["min_expires"].as_integer(), Some(30));
        assert!(
            t["registrar"].get("auth_algorithms").is_none(),
            "the shipped default is what is tested"
        );
    }
}
