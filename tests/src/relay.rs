//! A UDP relay for fault injection between agents and the hub.
//!
//! `Relay::start(listen, upstream)` binds `listen` (use `127.0.0.1:0`) and forwards datagrams
//! both ways between each client address and `upstream`, with one upstream socket per client so
//! the hub sees distinct peers (as with real NATed sites). Its [`Mode`] can be changed at any
//! time: pass, drop a fraction of packets (deterministic from a seed), delay, or blackhole (a
//! partition). It runs on its own thread with std sockets, keeps its resources bounded (a capped
//! client table with idle expiry, a capped delay queue) and stops when dropped.

use std::cmp::Ordering as CmpOrdering;
use std::collections::{BinaryHeap, HashMap};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What the relay does with each datagram (in both directions).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Mode {
    /// Forward everything.
    Pass,
    /// Drop this fraction (0.0..=1.0) of datagrams, chosen by the seeded generator.
    Drop(f64),
    /// Forward every datagram after this delay.
    Delay(Duration),
    /// Drop everything (a partition).
    Blackhole,
}

/// Tuning of a relay.
#[derive(Debug, Clone, Copy)]
pub struct RelayOptions {
    /// Seed of the generator that decides drops.
    pub seed: u64,
    /// Most client addresses tracked at once; datagrams from further clients are dropped.
    pub max_clients: usize,
    /// A client silent (both ways) for this long is forgotten, with its upstream socket.
    pub client_idle: Duration,
    /// Most datagrams held in the delay queue; further delayed datagrams are dropped.
    pub max_delayed: usize,
}

impl Default for RelayOptions {
    fn default() -> Self {
        RelayOptions {
            seed: 0x5eed_0f0a_7905,
            max_clients: 4096,
            client_idle: Duration::from_secs(120),
            max_delayed: 65_536,
        }
    }
}

/// Counters of a relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RelayStats {
    /// Datagrams delivered (either direction).
    pub forwarded: u64,
    /// Datagrams not delivered: dropped by the mode, over a cap, or failed to send.
    pub dropped: u64,
    /// Clients currently tracked.
    pub clients: usize,
}

struct Shared {
    mode: Mutex<Mode>,
    stop: AtomicBool,
    forwarded: AtomicU64,
    forwarded_bytes: AtomicU64,
    dropped: AtomicU64,
    clients: AtomicUsize,
}

/// A running relay; stops (and releases its sockets) when dropped.
pub struct Relay {
    addr: SocketAddr,
    upstream: SocketAddr,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay")
            .field("addr", &self.addr)
            .field("upstream", &self.upstream)
            .field("mode", &self.mode())
            .field("stats", &self.stats())
            .finish()
    }
}

impl Relay {
    /// Start a relay on `listen` towards `upstream` with default options, in [`Mode::Pass`].
    pub fn start(listen: SocketAddr, upstream: SocketAddr) -> io::Result<Relay> {
        Relay::start_with(listen, upstream, RelayOptions::default())
    }

    /// Start a relay with explicit options.
    pub fn start_with(
        listen: SocketAddr,
        upstream: SocketAddr,
        opts: RelayOptions,
    ) -> io::Result<Relay> {
        let sock = UdpSocket::bind(listen)?;
        sock.set_nonblocking(true)?;
        let addr = sock.local_addr()?;
        let shared = Arc::new(Shared {
            mode: Mutex::new(Mode::Pass),
            stop: AtomicBool::new(false),
            forwarded: AtomicU64::new(0),
            forwarded_bytes: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            clients: AtomicUsize::new(0),
        });
        let mut worker = Worker {
            listen: sock,
            upstream,
            opts,
            shared: shared.clone(),
            rng: SplitMix64(opts.seed),
            clients: HashMap::new(),
            delayed: BinaryHeap::new(),
            next_seq: 0,
            last_expiry: Instant::now(),
        };
        let thread = std::thread::Builder::new()
            .name(format!("relay-{addr}"))
            .spawn(move || worker.run())?;
        Ok(Relay {
            addr,
            upstream,
            shared,
            thread: Some(thread),
        })
    }

    /// The address clients send to (give this to agents instead of the hub's).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The address datagrams are forwarded to.
    pub fn upstream(&self) -> SocketAddr {
        self.upstream
    }

    /// Change the mode; applies to the next datagram (already delayed datagrams still arrive).
    pub fn set_mode(&self, mode: Mode) {
        if let Ok(mut m) = self.shared.mode.lock() {
            *m = mode;
        }
    }

    /// The current mode.
    pub fn mode(&self) -> Mode {
        self.shared
            .mode
            .lock()
            .map(|m| *m)
            .unwrap_or(Mode::Blackhole)
    }

    /// Datagrams delivered so far.
    pub fn forwarded(&self) -> u64 {
        self.shared.forwarded.load(Ordering::Relaxed)
    }

    /// UDP payload bytes delivered so far (either direction; IP and UDP headers not counted).
    pub fn forwarded_bytes(&self) -> u64 {
        self.shared.forwarded_bytes.load(Ordering::Relaxed)
    }

    /// Datagrams not delivered so far.
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// All counters.
    pub fn stats(&self) -> RelayStats {
        RelayStats {
            forwarded: self.forwarded(),
            dropped: self.dropped(),
            clients: self.shared.clients.load(Ordering::Relaxed),
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// splitmix64: small, seedable, good enough for drop decisions.
#[derive(Debug, Clone)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dir {
    /// From this client towards upstream.
    Up(SocketAddr),
    /// From upstream back to this client.
    Down(SocketAddr),
}

struct Delayed {
    due: Instant,
    seq: u64,
    dir: Dir,
    data: Vec<u8>,
}

impl PartialEq for Delayed {
    fn eq(&self, o: &Self) -> bool {
        (self.due, self.seq) == (o.due, o.seq)
    }
}
impl Eq for Delayed {}
impl PartialOrd for Delayed {
    fn partial_cmp(&self, o: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(o))
    }
}
impl Ord for Delayed {
    /// Reversed: the earliest due is the heap's maximum.
    fn cmp(&self, o: &Self) -> CmpOrdering {
        (o.due, o.seq).cmp(&(self.due, self.seq))
    }
}

struct Client {
    sock: UdpSocket,
    last: Instant,
}

struct Worker {
    listen: UdpSocket,
    upstream: SocketAddr,
    opts: RelayOptions,
    shared: Arc<Shared>,
    rng: SplitMix64,
    clients: HashMap<SocketAddr, Client>,
    delayed: BinaryHeap<Delayed>,
    next_seq: u64,
    last_expiry: Instant,
}

/// Largest UDP payload.
const BUF: usize = 65_536;
/// Most datagrams read from one socket per loop turn (fairness between sockets).
const BURST: usize = 64;
/// Sleep when there was nothing to do.
const IDLE_SLEEP: Duration = Duration::from_millis(1);

impl Worker {
    fn run(&mut self) {
        let mut buf = vec![0u8; BUF];
        let mut batch: Vec<(Dir, Vec<u8>)> = Vec::new();
        while !self.shared.stop.load(Ordering::Relaxed) {
            let now = Instant::now();
            batch.clear();
            // From clients.
            for _ in 0..BURST {
                match self.listen.recv_from(&mut buf) {
                    Ok((n, from)) => batch.push((Dir::Up(from), buf[..n].to_vec())),
                    Err(_) => break, // WouldBlock, or a transient error: next turn
                }
            }
            // From upstream, per client.
            for (addr, c) in &mut self.clients {
                for _ in 0..BURST {
                    match c.sock.recv(&mut buf) {
                        Ok(n) => {
                            c.last = now;
                            batch.push((Dir::Down(*addr), buf[..n].to_vec()));
                        }
                        Err(_) => break, // WouldBlock, or ECONNREFUSED while upstream is down
                    }
                }
            }
            let busy = !batch.is_empty();
            for (dir, data) in batch.drain(..) {
                self.handle(now, dir, data);
            }
            // Due delayed datagrams.
            while self.delayed.peek().is_some_and(|d| d.due <= now) {
                if let Some(d) = self.delayed.pop() {
                    self.send(d.dir, &d.data);
                }
            }
            if now.duration_since(self.last_expiry) >= Duration::from_secs(1) {
                self.expire(now);
            }
            if !busy {
                let sleep = self
                    .delayed
                    .peek()
                    .map(|d| d.due.saturating_duration_since(now))
                    .unwrap_or(IDLE_SLEEP)
                    .min(IDLE_SLEEP);
                std::thread::sleep(sleep);
            }
        }
    }

    fn expire(&mut self, now: Instant) {
        self.last_expiry = now;
        let idle = self.opts.client_idle;
        self.clients
            .retain(|_, c| now.duration_since(c.last) < idle);
        self.shared
            .clients
            .store(self.clients.len(), Ordering::Relaxed);
    }

    fn drop_one(&self) {
        self.shared.dropped.fetch_add(1, Ordering::Relaxed);
    }

    fn handle(&mut self, now: Instant, dir: Dir, data: Vec<u8>) {
        if let Dir::Up(from) = dir {
            if !self.clients.contains_key(&from) {
                if self.clients.len() >= self.opts.max_clients {
                    self.expire(now);
                }
                if self.clients.len() >= self.opts.max_clients {
                    self.drop_one();
                    return;
                }
                match self.upstream_socket() {
                    Ok(sock) => {
                        self.clients.insert(from, Client { sock, last: now });
                        self.shared
                            .clients
                            .store(self.clients.len(), Ordering::Relaxed);
                    }
                    Err(_) => {
                        self.drop_one();
                        return;
                    }
                }
            }
            if let Some(c) = self.clients.get_mut(&from) {
                c.last = now;
            }
        }
        let mode = self
            .shared
            .mode
            .lock()
            .map(|m| *m)
            .unwrap_or(Mode::Blackhole);
        match mode {
            Mode::Pass => self.send(dir, &data),
            Mode::Drop(fraction) => {
                if self.rng.next_f64() < fraction {
                    self.drop_one();
                } else {
                    self.send(dir, &data);
                }
            }
            Mode::Delay(d) => {
                if self.delayed.len() >= self.opts.max_delayed {
                    self.drop_one();
                } else {
                    self.next_seq += 1;
                    self.delayed.push(Delayed {
                        due: now + d,
                        seq: self.next_seq,
                        dir,
                        data,
                    });
                }
            }
            Mode::Blackhole => self.drop_one(),
        }
    }

    fn upstream_socket(&self) -> io::Result<UdpSocket> {
        let ip: IpAddr = match (self.upstream.ip().is_loopback(), self.upstream.is_ipv4()) {
            (true, true) => Ipv4Addr::LOCALHOST.into(),
            (true, false) => Ipv6Addr::LOCALHOST.into(),
            (false, true) => Ipv4Addr::UNSPECIFIED.into(),
            (false, false) => Ipv6Addr::UNSPECIFIED.into(),
        };
        let s = UdpSocket::bind(SocketAddr::new(ip, 0))?;
        s.connect(self.upstream)?;
        s.set_nonblocking(true)?;
        Ok(s)
    }

    fn send(&self, dir: Dir, data: &[u8]) {
        let r = match dir {
            Dir::Up(from) => match self.clients.get(&from) {
                Some(c) => c.sock.send(data),
                None => Err(io::ErrorKind::NotFound.into()),
            },
            Dir::Down(to) => self.listen.send_to(data, to),
        };
        match r {
            Ok(_) => {
                self.shared.forwarded.fetch_add(1, Ordering::Relaxed);
                self.shared
                    .forwarded_bytes
                    .fetch_add(data.len() as u64, Ordering::Relaxed);
            }
            Err(_) => self.drop_one(),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// A UDP server on loopback that answers each datagram with `"<sender>|<payload>"`, or (as a
    /// sink) just records payloads.
    struct Echo {
        addr: SocketAddr,
        stop: Arc<AtomicBool>,
        got: Arc<Mutex<Vec<Vec<u8>>>>,
        thread: Option<JoinHandle<()>>,
    }

    impl Echo {
        fn start(reply: bool) -> Echo {
            let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
            sock.set_read_timeout(Some(Duration::from_millis(20)))
                .unwrap();
            let addr = sock.local_addr().unwrap();
            let stop = Arc::new(AtomicBool::new(false));
            let got = Arc::new(Mutex::new(Vec::new()));
            let (s2, g2) = (stop.clone(), got.clone());
            let thread = std::thread::spawn(move || {
                let mut buf = [0u8; 2048];
                while !s2.load(Ordering::Relaxed) {
                    if let Ok((n, from)) = sock.recv_from(&mut buf) {
                        g2.lock().unwrap().push(buf[..n].to_vec());
                        if reply {
                            let mut out = format!("{from}|").into_bytes();
                            out.extend_from_slice(&buf[..n]);
                            let _ = sock.send_to(&out, from);
                        }
                    }
                }
            });
            Echo {
                addr,
                stop,
                got,
                thread: Some(thread),
            }
        }
    }

    impl Drop for Echo {
        fn drop(&mut self) {
            self.stop.store(true, Ordering::Relaxed);
            if let Some(t) = self.thread.take() {
                let _ = t.join();
            }
        }
    }

    fn client(timeout: Duration) -> UdpSocket {
        let c = UdpSocket::bind("127.0.0.1:0").unwrap();
        c.set_read_timeout(Some(timeout)).unwrap();
        c
    }

    fn local() -> SocketAddr {
        "127.0.0.1:0".parse().unwrap()
    }

    /// Send `payload` through the relay and wait for the echo; `None` on timeout.
    fn ask(c: &UdpSocket, relay: &Relay, payload: &str) -> Option<String> {
        c.send_to(payload.as_bytes(), relay.addr()).unwrap();
        let mut buf = [0u8; 2048];
        match c.recv_from(&mut buf) {
            Ok((n, from)) => {
                assert_eq!(from, relay.addr(), "replies come from the relay address");
                Some(String::from_utf8_lossy(&buf[..n]).into_owned())
            }
            Err(_) => None,
        }
    }

    /// Stats once `forwarded + dropped` reaches `n` (or after 5 s).
    fn settle(relay: &Relay, n: u64) -> RelayStats {
        let start = Instant::now();
        while relay.forwarded() + relay.dropped() < n && start.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(5));
        }
        relay.stats()
    }

    fn payload_of(reply: &str) -> &str {
        reply.split_once('|').map(|(_, p)| p).unwrap_or("")
    }

    fn peer_of(reply: &str) -> &str {
        reply.split_once('|').map(|(a, _)| a).unwrap_or("")
    }

    #[test]
    fn pass_forwards_both_ways_with_one_upstream_peer_per_client() {
        let echo = Echo::start(true);
        let relay = Relay::start(local(), echo.addr).unwrap();
        let a = client(Duration::from_secs(5));
        let b = client(Duration::from_secs(5));
        let ra1 = ask(&a, &relay, "a1").unwrap();
        let rb1 = ask(&b, &relay, "b1").unwrap();
        let ra2 = ask(&a, &relay, "a2").unwrap();
        assert_eq!(payload_of(&ra1), "a1");
        assert_eq!(payload_of(&rb1), "b1");
        assert_eq!(payload_of(&ra2), "a2");
        // The upstream sees one stable peer per client, distinct between clients, and never
        // the clients' own addresses.
        assert_eq!(peer_of(&ra1), peer_of(&ra2));
        assert_ne!(peer_of(&ra1), peer_of(&rb1));
        assert_ne!(peer_of(&ra1), a.local_addr().unwrap().to_string());
        // Counters are bumped right after each send: let the last one land.
        let st = settle(&relay, 6);
        assert_eq!(st.forwarded, 6);
        // Bytes: three 2-byte requests up, the three echoes (as received) down.
        let down = ra1.len() + rb1.len() + ra2.len();
        assert_eq!(relay.forwarded_bytes(), (3 * 2 + down) as u64);
        assert_eq!(st.dropped, 0);
        assert_eq!(st.clients, 2);
    }

    #[test]
    fn drop_all_then_blackhole_then_pass_again() {
        let echo = Echo::start(true);
        let relay = Relay::start(local(), echo.addr).unwrap();
        let c = client(Duration::from_millis(300));
        assert!(ask(&c, &relay, "warm").is_some());

        relay.set_mode(Mode::Drop(1.0));
        assert_eq!(relay.mode(), Mode::Drop(1.0));
        assert_eq!(ask(&c, &relay, "lost1"), None);
        relay.set_mode(Mode::Blackhole);
        assert_eq!(ask(&c, &relay, "lost2"), None);
        assert_eq!(settle(&relay, 4).dropped, 2);

        relay.set_mode(Mode::Pass);
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let r = ask(&c, &relay, "back").unwrap();
        // The first reply after healing is for the new datagram: nothing was queued.
        assert_eq!(payload_of(&r), "back");
        let got = echo.got.lock().unwrap().clone();
        assert_eq!(got, vec![b"warm".to_vec(), b"back".to_vec()]);
    }

    #[test]
    fn drop_fraction_is_deterministic_from_the_seed() {
        // One direction only (a sink), so the generator's draws follow the send order.
        fn delivered(seed: u64) -> Vec<Vec<u8>> {
            let sink = Echo::start(false);
            let relay = Relay::start_with(
                local(),
                sink.addr,
                RelayOptions {
                    seed,
                    ..RelayOptions::default()
                },
            )
            .unwrap();
            relay.set_mode(Mode::Drop(0.5));
            let c = client(Duration::from_secs(1));
            for i in 0..200u32 {
                c.send_to(&i.to_be_bytes(), relay.addr()).unwrap();
                std::thread::sleep(Duration::from_micros(200));
            }
            let start = Instant::now();
            while relay.forwarded() + relay.dropped() < 200
                && start.elapsed() < Duration::from_secs(10)
            {
                std::thread::sleep(Duration::from_millis(10));
            }
            assert_eq!(relay.forwarded() + relay.dropped(), 200);
            let want = relay.forwarded() as usize;
            let start = Instant::now();
            while sink.got.lock().unwrap().len() < want && start.elapsed() < Duration::from_secs(10)
            {
                std::thread::sleep(Duration::from_millis(10));
            }
            sink.got.lock().unwrap().clone()
        }
        let a = delivered(7);
        let b = delivered(7);
        let c = delivered(8);
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert!((50..150).contains(&a.len()), "{} of 200 delivered", a.len());
    }

    #[test]
    fn delay_is_a_lower_bound_each_way() {
        let echo = Echo::start(true);
        let relay = Relay::start(local(), echo.addr).unwrap();
        let c = client(Duration::from_secs(5));
        assert!(ask(&c, &relay, "warm").is_some());
        let d = Duration::from_millis(150);
        relay.set_mode(Mode::Delay(d));
        let t0 = Instant::now();
        let r = ask(&c, &relay, "slow").unwrap();
        let rtt = t0.elapsed();
        assert_eq!(payload_of(&r), "slow");
        assert!(rtt >= 2 * d, "round trip {rtt:?} < {:?}", 2 * d);
        assert!(rtt < Duration::from_secs(3), "round trip {rtt:?}");
        relay.set_mode(Mode::Pass);
        let t0 = Instant::now();
        assert!(ask(&c, &relay, "fast").is_some());
        assert!(t0.elapsed() < d, "pass after delay took {:?}", t0.elapsed());
    }

    #[test]
    fn client_table_is_capped_and_relay_stops_on_drop() {
        let echo = Echo::start(true);
        let relay = Relay::start_with(
            local(),
            echo.addr,
            RelayOptions {
                max_clients: 1,
                ..RelayOptions::default()
            },
        )
        .unwrap();
        let a = client(Duration::from_secs(5));
        let b = client(Duration::from_millis(300));
        assert!(ask(&a, &relay, "a").is_some());
        assert_eq!(ask(&b, &relay, "b"), None);
        let st = settle(&relay, 3);
        assert_eq!(st.clients, 1);
        assert_eq!(st.dropped, 1);
        let addr = relay.addr();
        drop(relay);
        // The relay's port is released: it can be bound again.
        let rebound = UdpSocket::bind(addr);
        assert!(rebound.is_ok(), "{rebound:?}");
    }

    #[test]
    fn splitmix_is_uniformish() {
        let mut r = SplitMix64(1);
        let n = 10_000;
        let below = (0..n).filter(|_| r.next_f64() < 0.25).count();
        assert!((2_000..3_000).contains(&below), "{below}");
        let mut r2 = SplitMix64(1);
        let mut r3 = SplitMix64(1);
        assert_eq!(r2.next_u64(), r3.next_u64());
    }
}
