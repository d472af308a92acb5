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
use tokio_postgres::config::{Host, TargetSessionAttrs};
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

/// A stream that fails its reads once it has owed an answer for longer than `limit`.
///
/// "Owed" starts at the first write after the last read that returned bytes, and ends at the
/// next such read. Postgres answers every message a client sends that expects one, so a server
/// that is alive keeps the debt short; a quiet connection with nothing sent owes nothing.
pub struct Watched<S> {
    inner: S,
    limit: Option<Duration>,
    /// Armed while an answer is owed; fires at the deadline.
    deadline: Option<Pin<Box<Sleep>>>,
}

impl<S> Watched<S> {
    /// Wraps `inner`; `None` never times out (for sessions that wait on purpose, such as an
    /// advisory lock behind another replica's migration).
    pub fn new(inner: S, limit: Option<Duration>) -> Self {
        Self { inner, limit, deadline: None }
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
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                // Bytes settle the debt; so does the end of the stream, which ends the connection.
                this.deadline = None;
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
        if let (Poll::Ready(Ok(n)), Some(limit), None) = (&written, this.limit, &this.deadline)
            && *n > 0
        {
            let mut deadline = Box::pin(tokio::time::sleep_until(Instant::now() + limit));
            // Registers this task's waker, so the deadline wakes the connection even if nothing
            // else does; the read that follows then reports it.
            let _ = deadline.as_mut().poll(cx);
            this.deadline = Some(deadline);
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

/// The stream a Postgres connection runs on.
pub type PgStream = Watched<Socket>;

/// A Postgres connection (to drive on a task) on a [`PgStream`], TLS or not.
pub type PgConnection = tokio_postgres::Connection<
    PgStream,
    <MakeRustlsConnect as tokio_postgres::tls::MakeTlsConnect<PgStream>>::Stream,
>;

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
        let hostname = match hosts.get(i) {
            Some(Host::Tcp(name)) => Some(name.clone()),
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
                let stream = Watched::new(socket, limit);
                let connector = tokio_postgres::tls::MakeTlsConnect::<PgStream>::make_tls_connect(
                    &mut tls,
                    hostname.as_deref().unwrap_or(""),
                );
                let Ok(connector) = connector;
                config.connect_raw(stream, connector).await
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
                if config.get_keepalives() {
                    let keepalive = socket2::TcpKeepalive::new()
                        .with_time(config.get_keepalives_idle())
                        .with_interval(
                            config.get_keepalives_interval().unwrap_or(Duration::from_secs(15)),
                        );
                    socket2::SockRef::from(&stream).set_tcp_keepalive(&keepalive)?;
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
    let config = tokio_postgres::Config::new();
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
