//! Running a child process with a time limit.

use std::io::Read;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::Context;

/// What a bounded run produced.
#[derive(Debug)]
pub struct Finished {
    /// `None` when the process was killed because it ran out of time.
    pub status: Option<ExitStatus>,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl Finished {
    /// True when the process exited by itself with status 0.
    pub fn success(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }

    /// The exit code; `None` if it was killed (by us on timeout, or a signal).
    pub fn code(&self) -> Option<i32> {
        self.status.and_then(|s| s.code())
    }
}

fn drain(mut r: impl Read + Send + 'static) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = r.read_to_end(&mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    })
}

/// Runs `cmd` (stdin from /dev/null, stdout and stderr captured) and waits
/// at most `limit`; a process still running then is killed (SIGKILL) and
/// reported with `status: None`.
pub fn run_bounded(cmd: &mut Command, limit: Duration) -> anyhow::Result<Finished> {
    let started = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {cmd:?}"))?;
    let out = child.stdout.take().map(drain);
    let err = child.stderr.take().map(drain);
    let status = wait_bounded(&mut child, limit)?;
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let stdout = out.and_then(|h| h.join().ok()).unwrap_or_default();
    let stderr = err.and_then(|h| h.join().ok()).unwrap_or_default();
    Ok(Finished {
        status,
        stdout,
        stderr,
        elapsed: started.elapsed(),
    })
}

/// Waits for `child` for at most `limit`; `Ok(None)` if it is still running.
pub fn wait_bounded(child: &mut Child, limit: Duration) -> anyhow::Result<Option<ExitStatus>> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().context("waiting for child process")? {
            return Ok(Some(status));
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Sends `signal` to process `pid` (no-op for pid 0 or one we cannot reach).
pub fn signal(pid: u32, signal: i32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    if pid <= 0 {
        return false;
    }
    // SAFETY: kill(2) has no memory-safety preconditions; `pid` is a child
    // this process started and still owns (not yet reaped).
    unsafe { libc::kill(pid, signal) == 0 }
}

/// Looks `program` up on `$PATH` like a shell would.
pub fn which(program: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| {
            use std::os::unix::fs::PermissionsExt;
            candidate
                .metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// Sends `signal` to the process group `group` (a negative pid, as kill(2) takes it), which a
/// child started with `process_group(0)` leads.
pub fn signal_group(group: i32, signal: i32) -> bool {
    if group >= -1 {
        return false;
    }
    // SAFETY: kill(2) has no memory-safety preconditions; the group is led by a child this
    // process started and still owns.
    unsafe { libc::kill(group, signal) == 0 }
}
