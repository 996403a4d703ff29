//! git's own protocol (`git://`, port 9418) as a libgit2 subtransport: one TCP connection to a
//! checked address, the request `git-upload-pack <path>\0host=<host>\0` as a pkt-line, then the
//! same connection for the ref advertisement and the negotiation that follows (libgit2 treats this
//! transport as stateful: it asks for a stream once, for the ref listing, and reuses it).

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use git2::transport::{Service, SmartSubtransport, SmartSubtransportStream};
use percent_encoding::percent_decode_str;

use crate::error::{Error, redact};
use crate::git::{Inner, parse_remote};

/// The longest pkt-line payload git accepts.
const MAX_PKT_PAYLOAD: usize = 65516;

pub(crate) struct GitProtocol {
    scope: Arc<Inner>,
}

impl GitProtocol {
    pub(crate) fn new(scope: Arc<Inner>) -> GitProtocol {
        GitProtocol { scope }
    }

    fn open(&self, url: &str, action: Service) -> Result<GitStream, Error> {
        let scope = &self.scope;
        scope.check_time()?;
        scope.check_budget()?;
        let remote = parse_remote(url)?;
        match action {
            Service::UploadPackLs => {}
            Service::UploadPack => {
                // git2 reuses the listing's stream for a stateful transport; a second request for
                // a stream would be a change in libgit2 that this transport does not handle.
                return Err(Error::Io {
                    url: redact(&remote),
                    source: io::Error::other("libgit2 asked for a second git:// connection"),
                });
            }
            Service::ReceivePackLs | Service::ReceivePack => {
                return Err(Error::PushNotSupported {
                    url: redact(&remote),
                });
            }
        }
        let target = scope.policy.check_url(&remote, &["git"])?;
        let addrs = scope
            .policy
            .resolve(&target.host.connect_name(), target.port)?;
        let stream = connect(scope, &target.host.to_string(), target.port, &addrs)?;

        let path = percent_decode_str(remote.path())
            .decode_utf8()
            .map_err(|_| Error::InvalidUrl {
                url: redact(&remote),
                reason: "the path is not UTF-8".to_string(),
            })?;
        if path.contains('\0') {
            return Err(Error::InvalidUrl {
                url: redact(&remote),
                reason: "the path contains a NUL byte".to_string(),
            });
        }
        let host = remote.host_str().unwrap_or_default();
        let host = match remote.port() {
            Some(port) if port != 9418 => format!("{host}:{port}"),
            _ => host.to_string(),
        };
        let payload = format!("git-upload-pack {path}\0host={host}\0");
        if payload.len() > MAX_PKT_PAYLOAD {
            return Err(Error::InvalidUrl {
                url: redact(&remote),
                reason: "the URL is too long for git's protocol".to_string(),
            });
        }
        let mut stream = GitStream {
            scope: scope.clone(),
            url: redact(&remote),
            stream,
        };
        let request = format!("{:04x}{payload}", payload.len() + 4);
        stream.send(request.as_bytes())?;
        Ok(stream)
    }
}

impl SmartSubtransport for GitProtocol {
    fn action(
        &self,
        url: &str,
        action: Service,
    ) -> Result<Box<dyn SmartSubtransportStream>, git2::Error> {
        match self.open(url, action) {
            Ok(stream) => Ok(Box::new(stream)),
            Err(e) => Err(self.scope.git_error(e)),
        }
    }

    fn close(&self) -> Result<(), git2::Error> {
        Ok(())
    }
}

/// Connect to the first of `addrs` that answers, within the connect timeout and the deadline.
fn connect(scope: &Inner, host: &str, port: u16, addrs: &[SocketAddr]) -> Result<TcpStream, Error> {
    let mut last = None;
    for addr in addrs {
        scope.check_time()?;
        let limit = match scope.remaining() {
            Some(left) => left.min(scope.connect_timeout),
            None => scope.connect_timeout,
        }
        .max(Duration::from_millis(1));
        scope.count_request();
        tracing::debug!(%addr, "git:// connect");
        match TcpStream::connect_timeout(addr, limit) {
            Ok(stream) => {
                let _ = stream.set_nodelay(true);
                return Ok(stream);
            }
            Err(e) => last = Some(e),
        }
    }
    scope.check_time()?;
    Err(Error::Connect {
        host: host.to_string(),
        port,
        addrs: addrs
            .iter()
            .map(SocketAddr::to_string)
            .collect::<Vec<_>>()
            .join(", "),
        source: last.unwrap_or_else(|| io::Error::other("no address to connect to")),
    })
}

struct GitStream {
    scope: Arc<Inner>,
    url: String,
    stream: TcpStream,
}

impl GitStream {
    /// The socket's timeout for the next operation: the idle limit, cut short by the deadline.
    fn arm(&self) -> Result<(), Error> {
        self.scope.check_time()?;
        let limit = match self.scope.remaining() {
            Some(left) => left.min(self.scope.io_timeout),
            None => self.scope.io_timeout,
        }
        .max(Duration::from_millis(1));
        self.stream
            .set_read_timeout(Some(limit))
            .and_then(|()| self.stream.set_write_timeout(Some(limit)))
            .map_err(|source| self.io(source))
    }

    fn io(&self, source: io::Error) -> Error {
        if let Err(timed_out) = self.scope.check_time() {
            return timed_out;
        }
        if matches!(
            source.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
        ) {
            return Error::Stalled {
                url: self.url.clone(),
                idle: self.scope.io_timeout,
            };
        }
        Error::Io {
            url: self.url.clone(),
            source,
        }
    }

    fn send(&mut self, data: &[u8]) -> Result<(), Error> {
        self.arm()?;
        self.stream.write_all(data).map_err(|e| self.io(e))
    }

    fn receive(&mut self, buf: &mut [u8]) -> Result<usize, Error> {
        let n = loop {
            self.arm()?;
            // A socket with a timeout is not restarted after a signal (SIGCHLD, say): try again.
            match self.stream.read(buf) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                result => break result.map_err(|e| self.io(e))?,
            }
        };
        self.scope.account(n)?;
        Ok(n)
    }
}

impl Read for GitStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.receive(buf).map_err(|e| self.scope.io_error(e))
    }
}

impl Write for GitStream {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        loop {
            if let Err(e) = self.arm() {
                return Err(self.scope.io_error(e));
            }
            match self.stream.write(data) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    let e = self.io(e);
                    return Err(self.scope.io_error(e));
                }
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        self.stream.flush()
    }
}
