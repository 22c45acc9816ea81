//! Running SIPp scenarios against the server.
//!
//! Every run gets its own temp directory (injection CSV, error log, message
//! trace, statistics), free local ports (`-p` signalling, `-mp` media,
//! `-cp` control: SIPp binds all three, and a busy port fails every call),
//! `-m` calls, `-timeout 20s -timeout_error` (without `-timeout_error` SIPp
//! waits for hung calls forever) and a hard process time limit on top.
//! SIPp exits with 0 when every call succeeded, 1 when some failed, 97/99
//! on internal exit, 255 (-1) on fatal errors and timeouts.

use std::collections::HashMap;
use std::fs;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tempfile::TempDir;

use crate::paths;
use crate::ports::{free_port, free_udp_port_block};
use crate::process;

/// SIPp's own global timeout (`-timeout`).
pub const SIPP_TIMEOUT: Duration = Duration::from_secs(20);

/// The `sipp` executable: `$SIPP`, else `sipp` on `$PATH`; an error that
/// says how to install it otherwise (the SIPp tests must fail, not skip).
pub fn sipp_binary() -> anyhow::Result<PathBuf> {
    if let Some(p) = std::env::var_os("SIPP").filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    process::which("sipp").context(
        "`sipp` is not on PATH: the SIPp end-to-end tests need it. Install it with \
         `sudo apt-get install -y sip-tester` (./test.sh does this), or set SIPP=/path/to/sipp",
    )
}

/// A SIPp run to make. Build with [`Sipp::new`], then [`Sipp::run`].
#[derive(Clone, Debug)]
pub struct Sipp {
    scenario: PathBuf,
    rows: Vec<Vec<String>>,
    calls: u32,
    rate: Option<u32>,
    tcp: bool,
    trace_msg: bool,
    args: Vec<String>,
    limit: Duration,
    timeout: Duration,
    local_ip: String,
    local_port: Option<u16>,
    keys: Vec<(String, String)>,
}

/// A SIPp run started with [`Sipp::spawn`]: SIPp runs in the background
/// until [`SippRun::wait`]; killed (SIGKILL) if dropped unwaited.
pub struct SippRun {
    child: Option<Child>,
    scenario: String,
    command: String,
    started: Instant,
    limit: Duration,
    stdout: Option<std::thread::JoinHandle<String>>,
    stderr: Option<std::thread::JoinHandle<String>>,
    errors: PathBuf,
    messages: PathBuf,
    stats: PathBuf,
    /// The SIP port SIPp listens on (`-p`).
    pub port: u16,
    workdir: Option<TempDir>,
}

/// What a SIPp run produced.
#[derive(Debug)]
pub struct SippOutcome {
    pub scenario: String,
    /// SIPp's exit code; `None` if it was killed on the hard time limit.
    pub exit_code: Option<i32>,
    pub command: String,
    pub stdout: String,
    pub stderr: String,
    /// `-trace_err` log: unexpected messages, failed checks, timeouts.
    pub errors: String,
    /// `-trace_msg` log (every message sent and received), if enabled.
    pub messages: String,
    /// Last line of the `-trace_stat` statistics file, by column name.
    pub stats: HashMap<String, String>,
    /// The run's directory, kept while the outcome lives.
    pub workdir: TempDir,
}

impl Sipp {
    /// A run of `scenario`: a file name in `sipp-scenarios/` or a path.
    /// Defaults: 1 call, UDP, message trace on.
    pub fn new(scenario: &str) -> Sipp {
        let direct = PathBuf::from(scenario);
        let scenario = if direct.components().count() > 1 || direct.is_absolute() {
            direct
        } else {
            paths::scenario_dir().join(scenario)
        };
        Sipp {
            scenario,
            rows: Vec::new(),
            calls: 1,
            rate: None,
            tcp: false,
            trace_msg: true,
            args: Vec::new(),
            limit: SIPP_TIMEOUT + Duration::from_secs(20),
            timeout: SIPP_TIMEOUT,
            local_ip: "127.0.0.1".into(),
            local_port: None,
            keys: Vec::new(),
        }
    }

    /// Injection file rows `NUMBER;PASSWORD` (`[field0]`, `[field1]`),
    /// used in order (SEQUENTIAL).
    pub fn users(mut self, users: &[(&str, &str)]) -> Sipp {
        self.rows = users.iter().map(|(u, p)| vec![u.to_string(), p.to_string()]).collect();
        self
    }

    /// Injection file rows with any number of fields (`[field0]`, `[field1]`,
    /// ...), used in order (SEQUENTIAL).
    pub fn rows<R: AsRef<[S]>, S: AsRef<str>>(mut self, rows: &[R]) -> Sipp {
        self.rows = rows
            .iter()
            .map(|r| r.as_ref().iter().map(|f| f.as_ref().to_string()).collect())
            .collect();
        self
    }

    /// The local address for SIP and media (`-i` and `-mi`); 127.0.0.1 by
    /// default.
    pub fn local_ip(mut self, ip: &str) -> Sipp {
        self.local_ip = ip.to_string();
        self
    }

    /// The local SIP port (`-p`); a free one by default.
    pub fn local_port(mut self, port: u16) -> Sipp {
        self.local_port = Some(port);
        self
    }

    /// A generic keyword (`-key NAME VALUE`, `[NAME]` in the scenario).
    pub fn key(mut self, name: &str, value: impl ToString) -> Sipp {
        self.keys.push((name.to_string(), value.to_string()));
        self
    }

    /// SIPp's global timeout (`-timeout`, with `-timeout_error`); the hard
    /// process time limit is this plus 20 s.
    pub fn timeout(mut self, timeout: Duration) -> Sipp {
        self.timeout = timeout;
        self.limit = timeout + Duration::from_secs(20);
        self
    }

    /// Number of calls (`-m`).
    pub fn calls(mut self, n: u32) -> Sipp {
        self.calls = n;
        self
    }

    /// Call rate per second (`-r`).
    pub fn rate(mut self, per_second: u32) -> Sipp {
        self.rate = Some(per_second);
        self
    }

    /// TCP, one connection (`-t t1`).
    pub fn tcp(mut self) -> Sipp {
        self.tcp = true;
        self
    }

    /// Whether to log every message (`-trace_msg`); on by default.
    pub fn trace_messages(mut self, on: bool) -> Sipp {
        self.trace_msg = on;
        self
    }

    /// Extra SIPp arguments.
    pub fn arg(mut self, arg: &str) -> Sipp {
        self.args.push(arg.to_string());
        self
    }

    pub fn args(mut self, args: &[&str]) -> Sipp {
        self.args.extend(args.iter().map(|a| a.to_string()));
        self
    }

    /// Runs it against `target` and waits (bounded) for SIPp to exit.
    pub fn run(&self, target: SocketAddr) -> anyhow::Result<SippOutcome> {
        self.spawn(target)?.wait()
    }

    /// Starts SIPp against `target` in the background (a UAS scenario
    /// waits for calls on [`SippRun::port`]); [`SippRun::wait`] collects it.
    pub fn spawn(&self, target: SocketAddr) -> anyhow::Result<SippRun> {
        let bin = sipp_binary()?;
        if !self.scenario.is_file() {
            bail!("SIPp scenario {} does not exist", self.scenario.display());
        }
        let workdir = tempfile::Builder::new().prefix("ivm-e2e-sipp-").tempdir()?;
        let dir = workdir.path();
        let errors = dir.join("errors.log");
        let messages = dir.join("messages.log");
        let stats = dir.join("stats.csv");
        let port = self.local_port.unwrap_or_else(free_port);
        let mut cmd = Command::new(&bin);
        cmd.current_dir(dir)
            .arg(target.to_string())
            .arg("-sf")
            .arg(&self.scenario)
            .args(["-i", &self.local_ip, "-mi", &self.local_ip])
            .args(["-p", &port.to_string()])
            .args(["-mp", &free_udp_port_block(4).to_string()])
            .args(["-cp", &free_port().to_string()])
            .args(["-m", &self.calls.to_string()])
            .args(["-timeout", &format!("{}s", self.timeout.as_secs()), "-timeout_error"])
            .arg("-nostdin")
            .arg("-trace_err")
            .arg("-error_file")
            .arg(&errors)
            .arg("-trace_stat")
            .arg("-stf")
            .arg(&stats);
        if self.trace_msg {
            cmd.arg("-trace_msg").arg("-message_file").arg(&messages);
        }
        if !self.rows.is_empty() {
            let csv = dir.join("users.csv");
            let mut text = String::from("SEQUENTIAL\n");
            for row in &self.rows {
                text.push_str(&row.join(";"));
                text.push('\n');
            }
            fs::write(&csv, text)?;
            cmd.arg("-inf").arg(&csv);
        }
        if self.tcp {
            cmd.args(["-t", "t1"]);
        }
        if let Some(r) = self.rate {
            cmd.args(["-r", &r.to_string()]);
        }
        for (k, v) in &self.keys {
            cmd.args(["-key", k, v]);
        }
        cmd.args(&self.args);
        let command = format!("{cmd:?}");
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot start {command}"))?;
        let stdout = child.stdout.take().map(drain);
        let stderr = child.stderr.take().map(drain);
        Ok(SippRun {
            child: Some(child),
            scenario: self
                .scenario
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            command,
            started: Instant::now(),
            limit: self.limit,
            stdout,
            stderr,
            errors,
            messages,
            stats,
            port,
            workdir: Some(workdir),
        })
    }
}

fn drain(mut r: impl std::io::Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = r.read_to_end(&mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    })
}

impl SippRun {
    /// Whether SIPp is still running.
    pub fn is_running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Waits for SIPp to exit (at most the run's hard limit, counted from
    /// the start; killed then) and collects what it produced.
    pub fn wait(mut self) -> anyhow::Result<SippOutcome> {
        let mut child = self.child.take().context("SIPp run already collected")?;
        let left = self.limit.saturating_sub(self.started.elapsed());
        let status = process::wait_bounded(&mut child, left)?;
        if status.is_none() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let stdout = self.stdout.take().and_then(|h| h.join().ok()).unwrap_or_default();
        let stderr = self.stderr.take().and_then(|h| h.join().ok()).unwrap_or_default();
        let read = |p: &PathBuf| {
            fs::read(p)
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default()
        };
        Ok(SippOutcome {
            scenario: self.scenario.clone(),
            exit_code: status.and_then(|s| s.code()),
            command: self.command.clone(),
            stdout,
            stderr,
            errors: read(&self.errors),
            messages: read(&self.messages),
            stats: parse_stats(&read(&self.stats)),
            workdir: self.workdir.take().context("SIPp run already collected")?,
        })
    }
}

impl Drop for SippRun {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Runs `scenario` once against `target` with extra SIPp `args` (e.g.
/// `["-t", "t1"]`), no injection file.
pub fn sipp(target: SocketAddr, scenario: &str, args: &[&str]) -> anyhow::Result<SippOutcome> {
    Sipp::new(scenario).args(args).run(target)
}

/// The last data row of a SIPp `-trace_stat` CSV, keyed by column name.
pub fn parse_stats(csv: &str) -> HashMap<String, String> {
    let mut lines = csv.lines().filter(|l| !l.trim().is_empty());
    let Some(header) = lines.next() else {
        return HashMap::new();
    };
    let Some(last) = lines.next_back() else {
        return HashMap::new();
    };
    header
        .split(';')
        .map(str::to_string)
        .zip(last.split(';').map(str::to_string))
        .filter(|(k, _)| !k.is_empty())
        .collect()
}

impl SippOutcome {
    /// True when SIPp exited with 0 (every call succeeded).
    pub fn success(&self) -> bool {
        self.exit_code == Some(0)
    }

    /// A cumulative counter from the statistics file, e.g. "SuccessfulCall".
    pub fn counter(&self, name: &str) -> Option<u64> {
        self.stats
            .get(&format!("{name}(C)"))
            .and_then(|v| v.trim().parse().ok())
    }

    /// Everything useful to understand a failed run.
    pub fn report(&self) -> String {
        let mut s = format!(
            "SIPp {} exited with {:?} (0 = all calls succeeded; None = killed on time limit)\ncommand: {}\n",
            self.scenario, self.exit_code, self.command
        );
        for c in [
            "SuccessfulCall",
            "FailedCall",
            "Retransmissions",
            "FailedUnexpectedMessage",
            "FailedTimeoutOnRecv",
            "FailedRegexpDoesntMatch",
            "FailedRegexpShouldntMatch",
            "FailedRegexpHdrNotFound",
        ] {
            if let Some(v) = self.counter(c) {
                s.push_str(&format!("  {c}: {v}\n"));
            }
        }
        if !self.errors.trim().is_empty() {
            s.push_str(&format!("---- SIPp error log ----\n{}\n", tail(&self.errors, 120)));
        }
        if !self.stderr.trim().is_empty() {
            s.push_str(&format!("---- SIPp stderr ----\n{}\n", tail(&self.stderr, 40)));
        }
        if !self.messages.trim().is_empty() {
            s.push_str(&format!(
                "---- SIPp message trace (last lines) ----\n{}\n",
                tail(&self.messages, 150)
            ));
        } else if !self.stdout.trim().is_empty() {
            s.push_str(&format!("---- SIPp screen ----\n{}\n", tail(&self.stdout, 60)));
        }
        s
    }

    /// Panics with [`SippOutcome::report`] unless every call succeeded.
    pub fn assert_success(&self) {
        assert!(self.success(), "{}", self.report());
    }

    /// Panics unless SIPp ran and some call failed (exit code 1): for
    /// scenarios that are expected NOT to complete.
    pub fn assert_calls_failed(&self) {
        assert_eq!(
            self.exit_code,
            Some(1),
            "expected SIPp to report failed calls (exit 1)\n{}",
            self.report()
        );
    }
}

/// One message of a `-trace_msg` log.
#[derive(Clone, Debug)]
pub struct TraceEntry {
    /// Seconds since midnight (the log's clock).
    pub time: f64,
    /// True for a message SIPp received, false for one it sent.
    pub received: bool,
    /// The SIP message's first line (`INVITE sip:...`, `SIP/2.0 200 OK`).
    pub first_line: String,
    /// The whole message.
    pub text: String,
}

impl TraceEntry {
    /// The value of the first header `name` (case-insensitive), if any.
    pub fn header(&self, name: &str) -> Option<String> {
        self.text.lines().find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    }
}

/// Splits a SIPp `-trace_msg` log into its messages.
pub fn parse_trace(log: &str) -> Vec<TraceEntry> {
    let mut entries = Vec::new();
    for block in log.split("----------------------------------------------- ").skip(1) {
        let mut lines = block.lines();
        let stamp = lines.next().unwrap_or_default();
        let time = stamp
            .split_whitespace()
            .nth(1)
            .and_then(|t| {
                let mut parts = t.split(':');
                let h: f64 = parts.next()?.parse().ok()?;
                let m: f64 = parts.next()?.parse().ok()?;
                let s: f64 = parts.next()?.parse().ok()?;
                Some(h * 3600.0 + m * 60.0 + s)
            })
            .unwrap_or(0.0);
        let what = lines.next().unwrap_or_default();
        let received = what.contains("received");
        let text: Vec<&str> = lines.skip_while(|l| l.trim().is_empty()).collect();
        entries.push(TraceEntry {
            time,
            received,
            first_line: text.first().map(|l| l.trim().to_string()).unwrap_or_default(),
            text: text.join("\n"),
        });
    }
    entries
}

impl SippOutcome {
    /// The `-trace_msg` log as messages.
    pub fn trace(&self) -> Vec<TraceEntry> {
        parse_trace(&self.messages)
    }

    /// The first message received whose first line starts with `start`.
    pub fn received(&self, start: &str) -> Option<TraceEntry> {
        self.trace()
            .into_iter()
            .find(|e| e.received && e.first_line.starts_with(start))
    }
}

fn tail(s: &str, lines: usize) -> String {
    let all: Vec<&str> = s.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    #[test]
    fn stats_take_the_last_row() {
        let csv = "StartTime;SuccessfulCall(C);FailedCall(C);\nx;1;0;\ny;20;2;\n";
        let s = super::parse_stats(csv);
        assert_eq!(s["SuccessfulCall(C)"], "20");
        assert_eq!(s["FailedCall(C)"], "2");
    }
}
