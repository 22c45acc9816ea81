//! A second real phone: linphonec (the Debian package `linphone-cli`, 5.1 on Debian 12),
//! driven over its stdin like a user at its prompt. Its sound card is replaced by WAV files
//! (`soundcard use files`: `play` is the microphone, `record` what it hears, decoded), its
//! account is a `linphonerc` written here (a password, which linphonec turns into `ha1` on
//! its first save), and its home is a temporary directory (it keeps a database there).
//!
//! linphonec puts in its SDP the address of its default route, not the one it talks to the
//! server from: on a machine with a network it would offer a non-loopback address. So the
//! tests run it (and the server) in a network namespace of their own that holds only `lo`
//! ([`own_network`]), as the issue asked (`unshare -n`).

use std::fs;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tempfile::TempDir;

use crate::ports::free_port;

/// Whether linphonec is installed.
pub fn available() -> bool {
    crate::process::which("linphonec").is_some()
}

/// Moves the calling thread (and every process it starts from now on) into a new network
/// namespace with only the loopback interface, up. Needs root (CAP_SYS_ADMIN); the error
/// says why it could not.
pub fn own_network() -> anyhow::Result<()> {
    // SAFETY: unshare(2) with CLONE_NEWNET only changes the calling thread's namespace; it
    // is allowed in a multi-threaded process.
    let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
    if rc != 0 {
        bail!("unshare(CLONE_NEWNET): {}", std::io::Error::last_os_error());
    }
    let status = Command::new("ip")
        .args(["link", "set", "lo", "up"])
        .status()
        .context("run `ip link set lo up` (iproute2)")?;
    if !status.success() {
        bail!("`ip link set lo up` failed: {status}");
    }
    Ok(())
}

/// How a phone is set up.
pub struct LinphoneConfig<'a> {
    pub number: &'a str,
    pub password: &'a str,
    /// Its registrar and outbound proxy.
    pub server: SocketAddr,
    /// Its microphone: 8 kHz 16-bit mono PCM.
    pub microphone: &'a [i16],
    /// Answers incoming calls at once.
    pub auto_answer: bool,
}

/// A running linphonec.
pub struct Linphone {
    child: Child,
    stdin: ChildStdin,
    dir: TempDir,
}

impl Linphone {
    pub fn start(cfg: &LinphoneConfig<'_>) -> anyhow::Result<Linphone> {
        let dir = tempfile::Builder::new().prefix("ivm-linphone-").tempdir()?;
        let home = dir.path().join("home");
        fs::create_dir_all(home.join(".local/share/linphone"))?;
        crate::baresip::write_wav(&dir.path().join("microphone.wav"), cfg.microphone)?;
        let (sip_port, rtp_port) = (free_port(), free_port());
        let server = cfg.server;
        let (number, password) = (cfg.number, cfg.password);
        fs::write(
            dir.path().join("linphonerc"),
            format!(
                "[sip]\nsip_port={sip_port}\nsip_tcp_port=0\nsip_tls_port=0\n\
                 [rtp]\naudio_rtp_port={rtp_port}\n[sound]\nechocancellation=0\n\
                 [net]\nauto_net_state_mon=0\n\
                 [proxy_0]\nreg_proxy=<sip:{server}>\nreg_route=<sip:{server};lr>\n\
                 reg_identity=sip:{number}@ivm.local\nreg_expires=600\nreg_sendregister=1\npublish=0\n\
                 [auth_info_0]\nusername={number}\npasswd={password}\nrealm=ivm.local\ndomain=ivm.local\n"
            ),
        )?;
        let out = fs::File::create(dir.path().join("linphonec.out"))?;
        let mut child = Command::new("linphonec")
            .arg("-c")
            .arg(dir.path().join("linphonerc"))
            .arg("-d")
            .arg("5")
            .arg("-l")
            .arg(dir.path().join("linphonec.log"))
            .env("HOME", &home)
            .stdin(Stdio::piped())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .context("start linphonec")?;
        let stdin = child.stdin.take().context("linphonec's stdin")?;
        let mut phone = Linphone { child, stdin, dir };
        phone.command("soundcard use files")?;
        let mic = phone.dir.path().join("microphone.wav");
        phone.command(&format!("play {}", mic.display()))?;
        let heard = phone.heard_path();
        phone.command(&format!("record {}", heard.display()))?;
        if cfg.auto_answer {
            phone.command("autoanswer enable")?;
        }
        Ok(phone)
    }

    /// Types one line at its prompt.
    pub fn command(&mut self, line: &str) -> anyhow::Result<()> {
        writeln!(self.stdin, "{line}")
            .and_then(|()| self.stdin.flush())
            .with_context(|| format!("linphonec: `{line}`"))
    }

    /// What it printed at its prompt so far.
    pub fn output(&self) -> String {
        fs::read_to_string(self.dir.path().join("linphonec.out")).unwrap_or_default()
    }

    /// Waits until its prompt output contains `text`.
    pub fn wait_output(&self, text: &str, limit: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + limit;
        while !self.output().contains(text) {
            if Instant::now() >= deadline {
                bail!(
                    "linphonec did not say {text:?} within {limit:?}; it said:\n{}",
                    self.output()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    fn heard_path(&self) -> PathBuf {
        self.dir.path().join("heard.wav")
    }

    /// What it heard in its calls (decoded PCM), once the call has ended.
    pub fn heard(&self) -> anyhow::Result<Vec<i16>> {
        read_pcm(&self.heard_path())
    }

    /// Its log (SIP trace included), for a failing test.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("linphonec.log")).unwrap_or_default()
    }
}

/// The 16-bit samples of a WAV file as linphonec writes it (it may leave the sizes in the
/// header unfinished, so the data chunk is read to the end of the file).
fn read_pcm(path: &Path) -> anyhow::Result<Vec<i16>> {
    let bytes = fs::read(path).with_context(|| format!("read {}", path.display()))?;
    let at = bytes
        .windows(4)
        .position(|w| w == b"data")
        .with_context(|| format!("{}: no data chunk", path.display()))?;
    let pcm = bytes.get(at + 8..).unwrap_or_default();
    Ok(pcm.chunks_exact(2).map(|b| i16::from_le_bytes([b[0], b[1]])).collect())
}

impl Drop for Linphone {
    fn drop(&mut self) {
        let _ = self.command("quit");
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
