//! A real phone: baresip (the Debian package, 1.0.0 on Debian 12), headless. Its microphone is
//! a WAV file (`aufile`; it sends RTP for the whole call, as every phone does, and hangs up at
//! the end of the file), what it hears is dumped to WAV files by `sndfile` (the decoded audio,
//! per call), its SIP trace goes to its log (`-s`), and the test drives it over `ctrl_tcp`
//! (netstring JSON commands; events such as `CALL_ESTABLISHED`/`CALL_CLOSED` come back on the
//! same connection). Killed on drop; its log is printed when the test panics.

use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tempfile::TempDir;

use crate::ports::free_port;

pub const MODULES: &str = "/usr/lib/baresip/modules";

/// Whether baresip and the modules used here are installed.
pub fn available() -> bool {
    crate::process::which("baresip").is_some()
        && ["g711.so", "aufile.so", "sndfile.so", "ctrl_tcp.so", "menu.so"]
            .iter()
            .all(|m| Path::new(MODULES).join(m).is_file())
}

/// How a phone is set up.
pub struct PhoneConfig<'a> {
    pub number: &'a str,
    pub password: &'a str,
    /// Where it sends everything (its registrar or the proxy in front of it).
    pub outbound: SocketAddr,
    /// Its microphone: 8 kHz 16-bit mono PCM.
    pub microphone: &'a [i16],
    /// Answers incoming calls at once.
    pub auto_answer: bool,
    /// Registers and calls over TLS (`outbound` is then the server's TLS address).
    pub tls: bool,
}

/// A running baresip.
pub struct Baresip {
    child: Child,
    ctrl: TcpStream,
    buf: Vec<u8>,
    dir: TempDir,
    /// Events seen so far (JSON objects with `"event": true`).
    events: Vec<serde_json::Value>,
}

/// Writes 8 kHz 16-bit mono PCM as a WAV file.
pub fn write_wav(path: &Path, samples: &[i16]) -> anyhow::Result<()> {
    let data_len = u32::try_from(samples.len() * 2)?;
    let mut out = Vec::with_capacity(44 + samples.len() * 2);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data_len).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes()); // PCM
    out.extend_from_slice(&1u16.to_le_bytes()); // mono
    out.extend_from_slice(&8000u32.to_le_bytes());
    out.extend_from_slice(&16_000u32.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&16u16.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data_len.to_le_bytes());
    for s in samples {
        out.extend_from_slice(&s.to_le_bytes());
    }
    fs::write(path, out).with_context(|| format!("write {}", path.display()))
}

fn netstring(json: &serde_json::Value) -> Vec<u8> {
    let body = json.to_string();
    format!("{}:{body},", body.len()).into_bytes()
}

impl Baresip {
    /// Starts baresip; a start that fails on a port taken meanwhile (baresip also binds its
    /// SIP port + 1 for TLS, which nobody reserved) is retried on other ports.
    pub fn start(cfg: &PhoneConfig<'_>) -> anyhow::Result<Baresip> {
        let mut last = None;
        for _ in 0..3 {
            match Baresip::try_start(cfg) {
                Ok(b) => return Ok(b),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("baresip did not start")))
    }

    fn try_start(cfg: &PhoneConfig<'_>) -> anyhow::Result<Baresip> {
        let dir = tempfile::Builder::new().prefix("ivm-baresip-").tempdir()?;
        let d = dir.path().display();
        write_wav(&dir.path().join("microphone.wav"), cfg.microphone)?;
        // The control port first: the SIP port's TLS neighbour (+1) is then never it.
        let ctrl_port = free_port();
        let sip_port = free_port();
        fs::write(
            dir.path().join("config"),
            format!(
                "sip_listen\t127.0.0.1:{sip_port}\naudio_source\taufile,{d}/microphone.wav\n\
                 audio_alert\taufile,{d}/microphone.wav\nmodule_path\t{MODULES}\nmodule\tg711.so\n\
                 module\taufile.so\nmodule\tsndfile.so\nsnd_path\t{d}\nmodule\tmenu.so\nmodule\tctrl_tcp.so\n\
                 ctrl_tcp_listen\t127.0.0.1:{ctrl_port}\nmodule_tmp\taccount.so\n"
            ),
        )?;
        let answer = if cfg.auto_answer { ";answermode=auto" } else { "" };
        let transport = if cfg.tls { ";transport=tls" } else { "" };
        fs::write(
            dir.path().join("accounts"),
            format!(
                "<sip:{}@ivm.local{transport}>;auth_pass={};outbound=\"sip:{}{transport}\";regint=600{answer}\n",
                cfg.number, cfg.password, cfg.outbound
            ),
        )?;
        let log = fs::File::create(dir.path().join("baresip.log"))?;
        let mut child = Command::new("baresip")
            .arg("-s")
            .arg("-f")
            .arg(dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("start baresip")?;
        let said = |dir: &TempDir| fs::read_to_string(dir.path().join("baresip.log")).unwrap_or_default();
        let deadline = Instant::now() + Duration::from_secs(10);
        let ctrl = loop {
            let log = said(&dir);
            if log.contains("Address already in use") || log.contains("module ctrl_tcp.so:") {
                let _ = child.kill();
                let _ = child.wait();
                bail!("baresip could not bind its ports:\n{log}");
            }
            match TcpStream::connect(("127.0.0.1", ctrl_port)) {
                Ok(s) if log.contains("baresip is ready") => break s,
                Ok(_) => std::thread::sleep(Duration::from_millis(50)),
                Err(e) if Instant::now() >= deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    bail!("baresip control port: {e}\n{log}")
                }
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        };
        ctrl.set_read_timeout(Some(Duration::from_millis(100)))?;
        Ok(Baresip {
            child,
            ctrl,
            buf: Vec::new(),
            dir,
            events: Vec::new(),
        })
    }

    /// Runs a command (`dial`, `hangup`, …); the response's `data`.
    pub fn command(&mut self, command: &str, params: &str) -> anyhow::Result<String> {
        let token = format!("t{}", self.events.len());
        let cmd = serde_json::json!({"command": command, "params": params, "token": token});
        self.ctrl.write_all(&netstring(&cmd))?;
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            for msg in self.read_messages()? {
                if msg.get("response").is_some() && msg.get("token").and_then(|t| t.as_str()) == Some(&token) {
                    if msg.get("ok").and_then(|o| o.as_bool()) != Some(true) {
                        bail!("baresip refused {command} {params}: {msg}");
                    }
                    return Ok(msg.get("data").and_then(|d| d.as_str()).unwrap_or_default().to_owned());
                }
            }
            if Instant::now() >= deadline {
                bail!("baresip did not answer {command}");
            }
        }
    }

    /// Waits for an event of `kind` after the first `after` events; returns it and its index.
    pub fn wait_event(
        &mut self,
        kind: &str,
        after: usize,
        limit: Duration,
    ) -> anyhow::Result<(usize, serde_json::Value)> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some((i, e)) = self
                .events
                .iter()
                .enumerate()
                .skip(after)
                .find(|(_, e)| e.get("type").and_then(|t| t.as_str()) == Some(kind))
            {
                return Ok((i, e.clone()));
            }
            if Instant::now() >= deadline {
                bail!(
                    "no {kind} event within {limit:?}; events: {:?}\nlog:\n{}",
                    self.events,
                    self.log()
                );
            }
            self.read_messages()?;
        }
    }

    /// How many events have been seen.
    pub fn events_seen(&mut self) -> anyhow::Result<usize> {
        self.read_messages()?;
        Ok(self.events.len())
    }

    /// Reads what is there (up to 100 ms); events are kept, other messages returned.
    fn read_messages(&mut self) -> anyhow::Result<Vec<serde_json::Value>> {
        let mut chunk = [0u8; 8192];
        match self.ctrl.read(&mut chunk) {
            Ok(0) => bail!("baresip closed its control connection\n{}", self.log()),
            Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(e) => return Err(e.into()),
        }
        let mut out = Vec::new();
        while let Some(colon) = self.buf.iter().position(|&b| b == b':') {
            let len: usize = std::str::from_utf8(&self.buf[..colon])?.parse()?;
            let end = colon + 1 + len;
            if self.buf.len() < end + 1 {
                break;
            }
            let msg: serde_json::Value = serde_json::from_slice(&self.buf[colon + 1..end])?;
            self.buf.drain(..=end);
            if msg.get("event").is_some() {
                self.events.push(msg);
            } else {
                out.push(msg);
            }
        }
        Ok(out)
    }

    /// The decoded audio of every call so far, oldest first (8 kHz samples).
    pub fn heard(&self) -> anyhow::Result<Vec<Vec<i16>>> {
        let mut files: Vec<PathBuf> = fs::read_dir(self.dir.path())?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.to_string_lossy().ends_with("-dec.wav"))
            .collect();
        files.sort();
        files
            .iter()
            .map(|f| crate::audio::read_wav(f).map(|w| w.samples))
            .collect()
    }

    /// baresip's output, with its SIP trace.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("baresip.log")).unwrap_or_default()
    }
}

impl Drop for Baresip {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("---- baresip log ----\n{}", self.log());
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
