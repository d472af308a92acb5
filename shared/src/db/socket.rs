//! Opening Postgres connections on a socket that notices a dead server.
//!
//! A connection whose server stops answering (a partition, a paused node, a failover that left
//! no RST behind) would otherwise hold its request until the kernel gives up, minutes later.
//! [`Watched`] closes the connection when it has owed an answer for longer than
//! `database.query_timeout_ms`: bytes were written and nothing came back since. Every request on
//! it then fails as closed, which callers already report as 503 `DATABASE_UNAVAILABLE`, and the
//! pool drops it. An idle connection owes nothing, so it is never closed for being quiet.

use std::future::Future as _;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};
use tokio_postgres::config::{Host, SslMode, TargetSessionAttrs};
use tokio_postgres_rustls::MakeRustlsConnect;

/// A TCP or Unix-domain socket to Postgres.
pub enum Socket {
    /// TCP, with `TCP_NODELAY` and keepalives set.
    Tcp(TcpStream),
    /// A Unix-domain socket (`host=/run/postgresql`).
    Unix(tokio::net::UnixStream),
}

impl AsyncRead for Socket {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Self::Unix(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Socket {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Self::Unix(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(s) => Pin::new(s).poll_flush(cx),
            Self::Unix(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Self::Unix(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

/// A stream that fails its reads once an answer it is owed has been silent for `limit`.
///
/// It reads the Postgres protocol as it passes (above TLS, so it sees messages, not records).
/// Every message after which the server must answer with `ReadyForQuery` (the startup message,
/// a simple `Query`, a `Sync` closing an extended query) makes one answer owed; every
/// `ReadyForQuery` read settles one. While an answer is owed, each read that brings bytes
/// restarts the clock, so a long result that keeps coming is never cut; `limit` of silence with
/// an answer owed closes the stream. Nothing owed (an idle or a listening connection between
/// its queries), nothing fires.
pub struct Watched<S> {
    inner: S,
    limit: Option<Duration>,
    /// Answers owed.
    owed: u32,
    sent: Frames,
    received: Frames,
    /// Armed while an answer is owed.
    deadline: Option<Pin<Box<Sleep>>>,
}

impl<S> Watched<S> {
    /// Watches `inner`. `None` never times out: a session that waits on purpose (an advisory
    /// lock behind another replica's migration), or the raw socket under TLS, where the TLS
    /// stream above it is watched instead.
    pub fn new(inner: S, limit: Option<Duration>) -> Self {
        Self {
            inner,
            limit,
            owed: 0,
            sent: Frames::frontend(),
            received: Frames::backend(),
            deadline: None,
        }
    }

    fn arm(&mut self, cx: &mut Context<'_>) {
        let Some(limit) = self.limit else { return };
        let at = Instant::now() + limit;
        let deadline = self.deadline.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(at)));
        deadline.as_mut().reset(at);
        // Registers this task's waker, so the deadline wakes the connection even if nothing else
        // does; the read that follows then reports it.
        let _ = deadline.as_mut().poll(cx);
    }
}

/// Message boundaries of one direction of the protocol: a type byte (none for the startup
/// message) and a four-byte length that counts itself.
struct Frames {
    /// The next message has no type byte (the frontend's first: the startup message).
    untyped: bool,
    header: [u8; 5],
    have: usize,
    /// Body bytes of the current message still to pass.
    skip: usize,
}

impl Frames {
    fn frontend() -> Self {
        Self { untyped: true, header: [0; 5], have: 0, skip: 0 }
    }

    fn backend() -> Self {
        Self { untyped: false, header: [0; 5], have: 0, skip: 0 }
    }

    /// Feeds `bytes`; returns how many complete messages of the kinds `wanted` accepts began
    /// in them (`None` as the type of the untyped startup message).
    fn feed(&mut self, mut bytes: &[u8], wanted: impl Fn(Option<u8>) -> bool) -> u32 {
        let mut count = 0;
        while !bytes.is_empty() {
            if self.skip > 0 {
                let n = self.skip.min(bytes.len());
                self.skip -= n;
                bytes = &bytes[n..];
                continue;
            }
            let size = if self.untyped { 4 } else { 5 };
            let n = (size - self.have).min(bytes.len());
            self.header[self.have..self.have + n].copy_from_slice(&bytes[..n]);
            self.have += n;
            bytes = &bytes[n..];
            if self.have < size {
                break;
            }
            let (kind, length) = if self.untyped {
                (None, &self.header[..4])
            } else {
                (Some(self.header[0]), &self.header[1..5])
            };
            let length = u32::from_be_bytes([length[0], length[1], length[2], length[3]]);
            self.skip = usize::try_from(length).unwrap_or(usize::MAX).saturating_sub(4);
            if wanted(kind) {
                count += 1;
            }
            self.untyped = false;
            self.have = 0;
        }
        count
    }
}

fn owed_too_long(limit: Duration) -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        format!(
            "the database owed an answer for more than {} ms (database.query_timeout_ms); closing the connection",
            limit.as_millis()
        ),
    )
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if this.limit.is_some() {
                    let fresh = &buf.filled()[before..];
                    let settled = this.received.feed(fresh, |kind| kind == Some(b'Z'));
                    this.owed = this.owed.saturating_sub(settled);
                    if this.owed == 0 {
                        this.deadline = None;
                    } else if !fresh.is_empty() {
                        // The server is alive and sending: the clock starts again.
                        this.arm(cx);
                    }
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                let expired =
                    this.deadline.as_mut().is_some_and(|d| d.as_mut().poll(cx).is_ready());
                match this.limit {
                    Some(limit) if expired => Poll::Ready(Err(owed_too_long(limit))),
                    _ => Poll::Pending,
                }
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = Pin::new(&mut this.inner).poll_write(cx, buf);
        if let (Poll::Ready(Ok(n)), Some(_)) = (&written, this.limit) {
            // The startup message, a simple query and a Sync each end in ReadyForQuery.
            let asks = this.sent.feed(&buf[..*n], |kind| matches!(kind, None | Some(b'Q' | b'S')));
            if asks > 0 {
                if this.owed == 0 {
                    this.arm(cx);
                }
                this.owed = this.owed.saturating_add(asks);
            }
        }
        written
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

impl<S: tokio_postgres::tls::TlsStream + Unpin> tokio_postgres::tls::TlsStream for Watched<S> {
    fn channel_binding(&self) -> tokio_postgres::tls::ChannelBinding {
        self.inner.channel_binding()
    }
}

/// The raw socket under a connection: watched itself when the connection is plain, unwatched
/// under TLS (the TLS stream above it is watched).
pub type PgStream = Watched<Socket>;

type RustlsConnect =
    <MakeRustlsConnect as tokio_postgres::tls::MakeTlsConnect<PgStream>>::TlsConnect;
type RustlsStream = <MakeRustlsConnect as tokio_postgres::tls::MakeTlsConnect<PgStream>>::Stream;

/// A Postgres connection (to drive on a task), TLS or not, watched either way.
pub type PgConnection = tokio_postgres::Connection<PgStream, Watched<RustlsStream>>;

/// The TLS connector that watches the stream it makes.
struct WatchedTls {
    inner: RustlsConnect,
    limit: Option<Duration>,
}

impl tokio_postgres::tls::TlsConnect<PgStream> for WatchedTls {
    type Stream = Watched<RustlsStream>;
    type Error = io::Error;
    type Future = futures_util::future::BoxFuture<'static, io::Result<Self::Stream>>;

    fn connect(self, stream: PgStream) -> Self::Future {
        let Self { inner, limit } = self;
        Box::pin(async move {
            let tls = tokio_postgres::tls::TlsConnect::connect(inner, stream).await?;
            Ok(Watched::new(tls, limit))
        })
    }
}

/// Opens a connection as `config` says: each host in turn (each address of a name in turn),
/// `connect_timeout` per attempt, keepalives as configured, TLS as `tls` and the SSL mode say,
/// and a read-write check when `target_session_attrs=read-write`.
pub async fn open(
    config: &tokio_postgres::Config,
    mut tls: MakeRustlsConnect,
    limit: Option<Duration>,
) -> Result<(tokio_postgres::Client, PgConnection), tokio_postgres::Error> {
    let hosts = config.get_hosts();
    let hostaddrs = config.get_hostaddrs();
    let count = hosts.len().max(hostaddrs.len());
    let ports = config.get_ports();
    let mut last: Option<tokio_postgres::Error> = None;
    for i in 0..count {
        let port = ports.get(i).or_else(|| ports.first()).copied().unwrap_or(5432);
        // The name TLS checks: the host's, else the literal address (`hostaddr` alone).
        let hostname = match (hosts.get(i), hostaddrs.get(i)) {
            (Some(Host::Tcp(name)), _) => Some(name.clone()),
            (_, Some(ip)) => Some(ip.to_string()),
            _ => None,
        };
        let sockets: Vec<Target> = match (hostaddrs.get(i), hosts.get(i)) {
            (Some(ip), _) => vec![Target::Tcp(SocketAddr::new(*ip, port))],
            (None, Some(Host::Tcp(name))) => {
                match tokio::net::lookup_host((name.as_str(), port)).await {
                    Ok(addrs) => addrs.map(Target::Tcp).collect(),
                    Err(e) => {
                        last = Some(connect_error(e));
                        continue;
                    }
                }
            }
            (None, Some(Host::Unix(dir))) => {
                vec![Target::Unix(dir.join(format!(".s.PGSQL.{port}")))]
            }
            (None, None) => continue,
        };
        for target in sockets {
            let attempt = async {
                let socket = target.connect(config).await.map_err(connect_error)?;
                // Under TLS the TLS stream is watched, where messages can be read.
                let plain = config.get_ssl_mode() == SslMode::Disable;
                let stream = Watched::new(socket, if plain { limit } else { None });
                let inner = tokio_postgres::tls::MakeTlsConnect::<PgStream>::make_tls_connect(
                    &mut tls,
                    hostname.as_deref().unwrap_or(""),
                );
                let Ok(inner) = inner;
                config.connect_raw(stream, WatchedTls { inner, limit }).await
            };
            let opened = match config.get_connect_timeout() {
                Some(timeout) => match tokio::time::timeout(*timeout, attempt).await {
                    Ok(result) => result,
                    Err(_) => Err(connect_error(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "connecting took longer than connect_timeout",
                    ))),
                },
                None => attempt.await,
            };
            match opened {
                Ok((client, connection)) => {
                    if config.get_target_session_attrs() == TargetSessionAttrs::Any {
                        return Ok((client, connection));
                    }
                    match session_fits(config, client, connection).await {
                        Ok(pair) => return Ok(pair),
                        Err(e) => last = Some(e),
                    }
                }
                Err(e) => last = Some(e),
            }
        }
    }
    Err(last.unwrap_or_else(|| {
        connect_error(io::Error::new(io::ErrorKind::InvalidInput, "no host to connect to"))
    }))
}

/// Keeps the session when it is read-write (or read-only) as `target_session_attrs` asks.
async fn session_fits(
    config: &tokio_postgres::Config,
    client: tokio_postgres::Client,
    mut connection: PgConnection,
) -> Result<(tokio_postgres::Client, PgConnection), tokio_postgres::Error> {
    // Drive the connection by hand until the answer is in, then hand both back.
    let read_only = {
        let query = client.simple_query("SHOW transaction_read_only");
        let mut query = std::pin::pin!(query);
        std::future::poll_fn(|cx| {
            if let Poll::Ready(done) = Pin::new(&mut connection).poll(cx) {
                return Poll::Ready(Err(done.err().unwrap_or_else(closed)));
            }
            query.as_mut().poll(cx)
        })
        .await?
        .into_iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0).map(|v| v == "on"),
            _ => None,
        })
        .unwrap_or(false)
    };
    let wanted_read_only = config.get_target_session_attrs() == TargetSessionAttrs::ReadOnly;
    if read_only == wanted_read_only {
        Ok((client, connection))
    } else {
        Err(connect_error(io::Error::other(
            "the server's session is not of the kind target_session_attrs asks for",
        )))
    }
}

fn closed() -> tokio_postgres::Error {
    connect_error(io::Error::new(io::ErrorKind::ConnectionAborted, "the connection closed"))
}

enum Target {
    Tcp(SocketAddr),
    Unix(std::path::PathBuf),
}

impl Target {
    async fn connect(&self, config: &tokio_postgres::Config) -> io::Result<Socket> {
        match self {
            Self::Tcp(addr) => {
                let stream = TcpStream::connect(addr).await?;
                stream.set_nodelay(true)?;
                let socket = socket2::SockRef::from(&stream);
                if config.get_keepalives() {
                    let mut keepalive =
                        socket2::TcpKeepalive::new().with_time(config.get_keepalives_idle());
                    if let Some(interval) = config.get_keepalives_interval() {
                        keepalive = keepalive.with_interval(interval);
                    }
                    if let Some(retries) = config.get_keepalives_retries() {
                        keepalive = keepalive.with_retries(retries);
                    }
                    socket.set_tcp_keepalive(&keepalive)?;
                }
                if let Some(timeout) = config.get_tcp_user_timeout() {
                    socket.set_tcp_user_timeout(Some(*timeout))?;
                }
                Ok(Socket::Tcp(stream))
            }
            Self::Unix(path) => Ok(Socket::Unix(tokio::net::UnixStream::connect(path).await?)),
        }
    }
}

/// tokio-postgres makes its errors privately. To report a failure of ours (a refused socket, a
/// timed-out attempt) the way it reports its own, with the I/O error as the source, hand it a
/// stream whose first write fails with that error.
fn connect_error(e: io::Error) -> tokio_postgres::Error {
    // A user, or tokio-postgres would look one up (and fail where the uid has no name).
    let mut config = tokio_postgres::Config::new();
    config.user("strongbox");
    let opened = std::pin::pin!(config.connect_raw(Failing(Some(e)), tokio_postgres::NoTls));
    let waker = std::task::Waker::noop();
    match opened.poll(&mut Context::from_waker(waker)) {
        Poll::Ready(Err(error)) => error,
        // The first write fails, so the attempt ends at once, and never with a connection.
        _ => tokio_postgres::Error::__private_api_timeout(),
    }
}

struct Failing(Option<io::Error>);

impl AsyncRead for Failing {
    fn poll_read(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        _: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Poll::Ready(Err(self.get_mut().0.take().unwrap_or_else(|| io::Error::other("failed"))))
    }
}

impl AsyncWrite for Failing {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, _: &[u8]) -> Poll<io::Result<usize>> {
        Poll::Ready(Err(self.get_mut().0.take().unwrap_or_else(|| io::Error::other("failed"))))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    /// A frontend message of `kind` with a body of `body` bytes.
    fn message(kind: u8, body: usize) -> Vec<u8> {
        let mut m = vec![kind];
        m.extend_from_slice(&u32::try_from(body + 4).unwrap().to_be_bytes());
        m.extend(std::iter::repeat_n(b'x', body));
        m
    }

    #[test]
    fn frames_count_the_messages_that_ask_for_an_answer_across_any_split() {
        let mut stream = Vec::new();
        stream.extend_from_slice(&12_u32.to_be_bytes());
        stream.extend_from_slice(&[0; 8]); // the startup message: no type byte
        for (kind, body) in [(b'P', 20), (b'B', 9), (b'E', 5), (b'S', 0), (b'Q', 14), (b'p', 3)] {
            stream.extend(message(kind, body));
        }
        let asks = |kind: Option<u8>| matches!(kind, None | Some(b'Q' | b'S'));
        for chunk in [1, 2, 3, 7, 64] {
            let mut frames = Frames::frontend();
            let counted: u32 = stream.chunks(chunk).map(|c| frames.feed(c, asks)).sum();
            assert_eq!(counted, 3, "chunks of {chunk}");
        }
    }

    #[tokio::test]
    async fn an_owed_answer_that_never_comes_fails_the_read_and_an_idle_stream_never_does() {
        let limit = Duration::from_millis(50);
        let (ours, mut server) = tokio::io::duplex(1024);
        let mut watched = Watched::new(ours, Some(limit));
        let mut buf = [0_u8; 64];

        // Nothing asked: a quiet stream is fine however long it is quiet.
        watched.sent.untyped = false;
        let idle = tokio::time::timeout(limit * 4, watched.read(&mut buf)).await;
        assert!(idle.is_err(), "an idle stream must not fail: {idle:?}");

        // A query answered with ReadyForQuery settles the debt, even sent in pieces.
        watched.write_all(&message(b'Q', 8)).await.unwrap();
        let mut answer = message(b'C', 6);
        answer.extend(message(b'Z', 1));
        let (head, tail) = answer.split_at(5);
        server.write_all(head).await.unwrap();
        assert!(watched.read(&mut buf).await.is_ok());
        server.write_all(tail).await.unwrap();
        while watched.owed > 0 {
            let _read = watched.read(&mut buf).await.unwrap();
        }
        let idle = tokio::time::timeout(limit * 4, watched.read(&mut buf)).await;
        assert!(idle.is_err(), "answered, the stream owes nothing: {idle:?}");

        // Two asks; one answer arrives; the second never does.
        watched.write_all(&message(b'S', 0)).await.unwrap();
        watched.write_all(&message(b'Q', 3)).await.unwrap();
        server.write_all(&message(b'Z', 1)).await.unwrap();
        let mut failed = None;
        for _ in 0..4 {
            if let Err(e) = watched.read(&mut buf).await {
                failed = Some(e);
                break;
            }
        }
        let error = failed.expect("the second answer is still owed");
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        let _ = server.read(&mut buf).await;
    }
}
