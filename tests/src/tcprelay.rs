//! A TCP relay for fault injection between a hub replica and etcd: it forwards each accepted
//! connection to `upstream`, and in [`TcpMode::Blackhole`] it stops moving bytes in both
//! directions (existing connections stall, new ones are accepted and never connected onward),
//! as a network partition does: no reset, no error, just silence. Back in [`TcpMode::Pass`] the
//! held bytes flow again (as TCP retransmits them after a partition heals). Threads and std
//! sockets; it stops accepting when dropped.

use std::io::{Read as _, Write as _};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// What the relay does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcpMode {
    /// Forward.
    Pass,
    /// Hold every byte (a partition).
    Blackhole,
}

/// A running TCP relay.
pub struct TcpRelay {
    addr: SocketAddr,
    blackhole: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
}

const POLL: Duration = Duration::from_millis(20);

impl TcpRelay {
    /// Listen on a free loopback port and forward to `upstream`.
    pub fn start(upstream: SocketAddr) -> std::io::Result<TcpRelay> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let blackhole = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let (bh, st) = (blackhole.clone(), stop.clone());
        std::thread::spawn(move || {
            while !st.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((client, _)) => {
                        let (bh, st) = (bh.clone(), st.clone());
                        std::thread::spawn(move || connect(client, upstream, &bh, &st));
                    }
                    Err(_) => std::thread::sleep(POLL),
                }
            }
        });
        Ok(TcpRelay {
            addr,
            blackhole,
            stop,
        })
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Switch modes.
    pub fn set_mode(&self, mode: TcpMode) {
        self.blackhole
            .store(mode == TcpMode::Blackhole, Ordering::SeqCst);
    }
}

impl Drop for TcpRelay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Wait while blackholed; false when the relay stops.
fn wait_open(blackhole: &AtomicBool, stop: &AtomicBool) -> bool {
    while blackhole.load(Ordering::SeqCst) {
        if stop.load(Ordering::SeqCst) {
            return false;
        }
        std::thread::sleep(POLL);
    }
    !stop.load(Ordering::SeqCst)
}

fn connect(client: TcpStream, upstream: SocketAddr, bh: &Arc<AtomicBool>, st: &Arc<AtomicBool>) {
    // A connection made during a partition reaches nothing until it heals.
    if !wait_open(bh, st) {
        return;
    }
    let Ok(server) = TcpStream::connect(upstream) else {
        let _ = client.shutdown(Shutdown::Both);
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (Ok(c2), Ok(s2)) = (client.try_clone(), server.try_clone()) else {
        return;
    };
    let (bh2, st2) = (bh.clone(), st.clone());
    std::thread::spawn(move || pump(c2, s2, &bh2, &st2));
    pump(server, client, bh, st);
}

/// Copy `from` to `to`, holding each chunk while blackholed.
fn pump(mut from: TcpStream, mut to: TcpStream, bh: &AtomicBool, st: &AtomicBool) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if !wait_open(bh, st) || to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}
