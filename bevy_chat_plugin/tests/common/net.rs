//! Network troublemakers: a TCP proxy that can cut, refuse or swallow traffic, and a "black
//! hole" server that accepts connections and never answers.

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;
use tokio::task::{AbortHandle, JoinHandle};

/// A TCP proxy in front of `upstream`, running on a test runtime.
pub struct Proxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: JoinHandle<()>,
}

struct Shared {
    upstream: SocketAddr,
    /// New connections are accepted and dropped at once.
    paused: AtomicBool,
    /// Bytes are read from both sides and thrown away.
    black_hole: AtomicBool,
    /// Relay tasks of the connections accepted so far.
    connections: Mutex<Vec<AbortHandle>>,
}

impl Proxy {
    /// Starts a proxy on an ephemeral port, forwarding to `upstream`.
    pub fn start(runtime: &Runtime, upstream: SocketAddr) -> Self {
        let listener = runtime
            .block_on(TcpListener::bind("127.0.0.1:0"))
            .expect("proxy binds");
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            upstream,
            paused: AtomicBool::new(false),
            black_hole: AtomicBool::new(false),
            connections: Mutex::new(Vec::new()),
        });
        let accept = runtime.spawn(accept_loop(listener, shared.clone()));
        Self {
            addr,
            shared,
            accept,
        }
    }

    /// `http://proxy-addr`, for the plugin.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Closes every connection relayed so far (both sides see the TCP connection end).
    pub fn cut(&self) {
        for connection in self.shared.connections.lock().unwrap().drain(..) {
            connection.abort();
        }
    }

    /// From now on, accepts new connections and drops them at once.
    pub fn pause(&self) {
        let _guard = self.shared.connections.lock().unwrap();
        self.shared.paused.store(true, Ordering::SeqCst);
    }

    /// Relays new connections again.
    pub fn resume(&self) {
        let _guard = self.shared.connections.lock().unwrap();
        self.shared.paused.store(false, Ordering::SeqCst);
    }

    /// Swallows (reads and drops) everything in both directions, keeping connections open.
    pub fn set_black_hole(&self, on: bool) {
        self.shared.black_hole.store(on, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        // Decide and register under the lock, so that `pause` + `cut` leave nothing behind.
        let mut connections = shared.connections.lock().unwrap();
        if shared.paused.load(Ordering::SeqCst) {
            drop(client);
            continue;
        }
        connections.retain(|c| !c.is_finished());
        let task = tokio::spawn(relay(client, shared.clone()));
        connections.push(task.abort_handle());
    }
}

async fn relay(client: TcpStream, shared: Arc<Shared>) {
    let Ok(upstream) = TcpStream::connect(shared.upstream).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    let (client_read, client_write) = client.into_split();
    let (upstream_read, upstream_write) = upstream.into_split();
    tokio::join!(
        pump(client_read, upstream_write, &shared.black_hole),
        pump(upstream_read, client_write, &shared.black_hole),
    );
}

/// Copies one direction until EOF or an error; dropping `to` then forwards the EOF.
async fn pump(from: OwnedReadHalf, to: OwnedWriteHalf, black_hole: &AtomicBool) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        if from.readable().await.is_err() {
            return;
        }
        let n = match from.try_read(&mut buf) {
            Ok(0) => return,
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => continue,
            Err(_) => return,
        };
        if black_hole.load(Ordering::SeqCst) {
            continue;
        }
        let mut data = &buf[..n];
        while !data.is_empty() {
            if to.writable().await.is_err() {
                return;
            }
            match to.try_write(data) {
                Ok(written) => data = &data[written..],
                Err(e) if e.kind() == ErrorKind::WouldBlock => continue,
                Err(_) => return,
            }
        }
    }
}

/// A server that accepts TCP connections and never says a word (the sockets stay open).
pub struct BlackHole {
    addr: SocketAddr,
    accepted: Arc<Mutex<Vec<std::net::TcpStream>>>,
}

impl BlackHole {
    /// Listens on an ephemeral port (the accepting thread lives as long as the test process).
    pub fn start() -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("black hole binds");
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(Mutex::new(Vec::new()));
        let keep = accepted.clone();
        std::thread::Builder::new()
            .name("black-hole".into())
            .spawn(move || {
                for stream in listener.incoming().flatten() {
                    keep.lock().unwrap().push(stream);
                }
            })
            .expect("black hole thread");
        Self { addr, accepted }
    }

    /// `http://addr`, for the plugin.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.lock().unwrap().len()
    }
}
