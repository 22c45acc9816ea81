//! Free loopback ports.
//!
//! Ports are probed in 20000..32000, below Linux's default ephemeral range
//! (32768..60999), so a port handed out here is not taken a moment later by
//! some socket that binds port 0. A port is never handed out twice by one
//! test process, so tests running in parallel threads do not collide; the
//! start of the scan depends on the process id and the clock, so test
//! binaries running one after another (or side by side) start apart.

use std::collections::HashSet;
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, UdpSocket};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};

const FIRST: u32 = 20_000;
const COUNT: u32 = 12_000;

static CURSOR: AtomicU32 = AtomicU32::new(u32::MAX);
static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

fn next_candidate() -> u16 {
    if CURSOR.load(Ordering::Relaxed) == u32::MAX {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let seed = std::process::id().wrapping_mul(7919).wrapping_add(nanos / 1000);
        let _ = CURSOR.compare_exchange(u32::MAX, seed % COUNT, Ordering::Relaxed, Ordering::Relaxed);
    }
    let n = CURSOR.fetch_add(1, Ordering::Relaxed);
    // FIRST + COUNT < 65536
    u16::try_from(FIRST + n % COUNT).unwrap_or(20_000)
}

fn claim(ports: &[u16]) -> bool {
    let mut guard = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
    let set = guard.get_or_insert_with(HashSet::new);
    if ports.iter().any(|p| set.contains(p)) {
        return false;
    }
    set.extend(ports.iter().copied());
    true
}

fn udp_free(port: u16) -> bool {
    UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port)).is_ok()
}

fn tcp_free(port: u16) -> bool {
    TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port)).is_ok()
}

/// A port on 127.0.0.1 that is free for both UDP and TCP right now.
pub fn free_port() -> u16 {
    for _ in 0..COUNT {
        let port = next_candidate();
        // Hold both sockets while checking so the pair is free at one moment.
        let udp = UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port));
        let tcp = TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port));
        if udp.is_ok() && tcp.is_ok() && claim(&[port]) {
            return port;
        }
    }
    panic!("no free loopback port (UDP+TCP) in {FIRST}..{}", FIRST + COUNT)
}

/// The first of `len` consecutive ports on 127.0.0.1 free for UDP and TCP
/// (SIPp's media ports: `-mp P` binds P and P+2).
pub fn free_udp_port_block(len: u16) -> u16 {
    for _ in 0..COUNT {
        let base = next_candidate();
        if u32::from(base) + u32::from(len) >= FIRST + COUNT {
            continue;
        }
        let ports: Vec<u16> = (base..base + len).collect();
        if ports.iter().all(|&p| udp_free(p) && tcp_free(p)) && claim(&ports) {
            return base;
        }
    }
    panic!("no block of {len} free loopback ports in {FIRST}..{}", FIRST + COUNT)
}
