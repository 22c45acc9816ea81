//! Real phones: baresip (the Debian package, 1.0.0 on Debian 12) against the real server.
//! baresip gives up on a SHA-256 digest challenge ("Function not implemented") instead of
//! answering the MD5 one after it, so this is what the shipped default must let it do.
//!
//! Needs `baresip` on PATH (`./test.sh` installs the package); skipped with a message where it
//! is not installed. The phone runs headless: a sine as its microphone, a file as its speaker.

use std::fs;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ivm_e2e::{Server, free_port};

const MODULES: &str = "/usr/lib/baresip/modules";

/// Kills the phone when the test ends, however it ends.
struct Phone(Child);

impl Drop for Phone {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn baresip_available() -> bool {
    let found = Command::new("baresip")
        .arg("-h")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    found && Path::new(MODULES).join("g711.so").is_file()
}

/// A baresip configuration in `dir` for `number` at `server`, headless.
fn configure(dir: &Path, number: &str, password: &str, server: std::net::SocketAddr) -> anyhow::Result<()> {
    let d = dir.display();
    fs::write(
        dir.join("config"),
        format!(
            "sip_listen\t127.0.0.1:{port}\naudio_player\taufile,{d}/speaker.wav\naudio_source\tausine,440\n\
             audio_alert\taufile,{d}/alert.wav\nmodule_path\t{MODULES}\nmodule\tg711.so\nmodule\taufile.so\n\
             module\tausine.so\nmodule_tmp\taccount.so\n",
            port = free_port()
        ),
    )?;
    fs::write(
        dir.join("accounts"),
        format!("<sip:{number}@ivm.local>;auth_pass={password};outbound=\"sip:{server}\";regint=600\n"),
    )?;
    Ok(())
}

#[test]
fn baresip_registers_with_the_default_digest_config() {
    if !baresip_available() {
        eprintln!("SKIPPED: baresip is not installed (./test.sh installs the Debian package `baresip`)");
        return;
    }
    let server = Server::start_with_subscribers("", &[("1001", "pw-1001")]).expect("start ivm-sipd");
    let dir = tempfile::tempdir().expect("temp dir");
    configure(dir.path(), "1001", "pw-1001", server.addr).expect("baresip config");
    let log = fs::File::create(dir.path().join("baresip.log")).expect("log file");
    let child = Command::new("baresip")
        .arg("-f")
        .arg(dir.path())
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("start baresip");
    let _phone = Phone(child);
    let deadline = Instant::now() + Duration::from_secs(15);
    let rows = loop {
        let rows = server.registrations("1001").expect("registrations");
        if !rows.is_empty() || Instant::now() >= deadline {
            break rows;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let said = fs::read_to_string(dir.path().join("baresip.log")).unwrap_or_default();
    assert_eq!(rows.len(), 1, "baresip did not register; it said:\n{said}");
    assert!(
        rows[0].contact.starts_with("sip:1001"),
        "the binding is baresip's Contact: {rows:?}"
    );
}
