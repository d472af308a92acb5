//! A TCP proxy a test controls, to put network faults on one link (api → vault, a service →
//! its Postgres) while traffic flows.
//!
//! It forwards bytes unchanged, so TLS passes through it end to end. The faults are the ones a
//! real network serves up:
//! - [`Fault::Delay`]: every chunk waits before it is forwarded (a slow or far link);
//! - [`Fault::Refuse`]: new connections are reset at once (a dead port, a load balancer with no
//!   backend);
//! - [`Fault::BlackHole`]: new connections are accepted and never answered, and open ones stop
//!   moving (a partition or a paused node). Nothing is lost: when the fault ends, held bytes flow
//!   on, as TCP resumes after a partition heals;
//! - [`FaultProxy::cut`]: every open connection is reset, wherever it is in a request or a
//!   response.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// What the proxy does to traffic now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Forward everything at once.
    Pass,
    /// Hold every chunk, in both directions, this long before forwarding it.
    Delay(Duration),
    /// Reset new connections; open ones carry on.
    Refuse,
    /// Accept new connections and never answer; open ones stall until the fault ends.
    BlackHole,
}

struct Shared {
    fault: watch::Sender<Fault>,
    /// Cancelled by [`FaultProxy::cut`]; each connection holds a child of the one current when
    /// it was accepted.
    generation: Mutex<CancellationToken>,
    accepted: AtomicU64,
}

/// A proxy from a loopback port to `upstream`. Dropping it stops it and resets its connections.
pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl FaultProxy {
    /// Starts a proxy on a random loopback port in front of `upstream`, passing traffic.
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            fault: watch::Sender::new(Fault::Pass),
            generation: Mutex::new(CancellationToken::new()),
            accepted: AtomicU64::new(0),
        });
        let stop = CancellationToken::new();
        let task = tokio::spawn(accept_loop(listener, upstream, shared.clone(), stop.clone()));
        Self { addr, shared, stop, task }
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The port clients connect to.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Switches to `fault`; it applies to open connections at their next chunk.
    pub fn set(&self, fault: Fault) {
        self.shared.fault.send_replace(fault);
    }

    /// The fault in force.
    pub fn fault(&self) -> Fault {
        *self.shared.fault.borrow()
    }

    /// Resets every open connection, mid-request or mid-response; later ones are unaffected.
    pub fn cut(&self) {
        let mut generation = self.shared.generation.lock().unwrap();
        generation.cancel();
        *generation = CancellationToken::new();
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> u64 {
        self.shared.accepted.load(Ordering::Relaxed)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.cancel();
        self.cut();
        self.task.abort();
    }
}

async fn accept_loop(
    listener: TcpListener,
    upstream: SocketAddr,
    shared: Arc<Shared>,
    stop: CancellationToken,
) {
    loop {
        let (client, _) = tokio::select! {
            () = stop.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(_) => continue,
            },
        };
        shared.accepted.fetch_add(1, Ordering::Relaxed);
        let cut = shared.generation.lock().unwrap().child_token();
        let fault = shared.fault.subscribe();
        tokio::spawn(async move {
            let now = *fault.borrow();
            match now {
                Fault::Refuse => reset(&client),
                Fault::BlackHole => cut.cancelled().await,
                Fault::Pass | Fault::Delay(_) => {
                    let Ok(server) = TcpStream::connect(upstream).await else {
                        reset(&client);
                        return;
                    };
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    relay(client, server, fault, cut).await;
                }
            }
        });
    }
}

/// Closes with RST rather than FIN, as a load balancer or a crashed peer does.
fn reset(stream: &TcpStream) {
    let _ = stream.set_zero_linger();
}

async fn relay(
    client: TcpStream,
    server: TcpStream,
    fault: watch::Receiver<Fault>,
    cut: CancellationToken,
) {
    let _ = client.set_zero_linger();
    let _ = server.set_zero_linger();
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    let up = pump(client_read, server_write, fault.clone());
    let down = pump(server_read, client_write, fault);
    // Either side closing, or a cut, ends both directions; dropping the halves resets them.
    tokio::select! {
        () = cut.cancelled() => {}
        () = async { tokio::join!(up, down); } => {}
    }
}

/// Copies `from` to `to` chunk by chunk, applying the fault in force to each chunk.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut fault: watch::Receiver<Fault>,
) {
    let mut buffer = vec![0_u8; 16 * 1024];
    loop {
        if pass_allowed(&mut fault).await.is_err() {
            return;
        }
        let n = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => {
                let _ = to.shutdown().await;
                return;
            }
            Ok(n) => n,
        };
        // A chunk read just before a black hole began is held, not lost.
        let Ok(now) = pass_allowed(&mut fault).await else { return };
        if let Fault::Delay(delay) = now {
            tokio::time::sleep(delay).await;
        }
        if to.write_all(&buffer[..n]).await.is_err() {
            return;
        }
    }
}

/// Waits while the fault is a black hole; returns the fault in force once it is not.
async fn pass_allowed(fault: &mut watch::Receiver<Fault>) -> Result<Fault, ()> {
    let now = fault.wait_for(|f| *f != Fault::BlackHole).await.map_err(|_| ())?;
    Ok(*now)
}

/// The `host:port` a `postgres://user@host:port/db` URL points at, resolved.
pub fn upstream_of(url: &str) -> SocketAddr {
    let authority = authority(url);
    let host_port = authority.rsplit('@').next().unwrap();
    std::net::ToSocketAddrs::to_socket_addrs(host_port).unwrap().next().unwrap()
}

/// `url` with its host and port replaced by `proxy`'s.
pub fn through(url: &str, proxy: &FaultProxy) -> String {
    let authority = authority(url);
    let user = authority.rsplit_once('@').map(|(user, _)| format!("{user}@")).unwrap_or_default();
    url.replacen(authority, &format!("{user}{}", proxy.addr()), 1)
}

fn authority(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    rest.split(['/', '?']).next().unwrap()
}
