//! git's smart HTTP protocol as a libgit2 subtransport (stateless RPC): `GET
//! <repo>/info/refs?service=git-upload-pack` lists the refs, each negotiation round is one `POST
//! <repo>/git-upload-pack` whose body is what libgit2 wrote before it reads.
//!
//! Every request goes through the scope's reqwest client (its resolver is the policy's), polled on
//! the libgit2 thread (see `git::HttpRuntime`), and its body is streamed to libgit2 chunk by chunk,
//! counted against the scope's budget as it arrives. Redirects are followed here, hop by hop, on the first request only (git's "initial" behaviour),
//! to the same host only, never from https down to http, each hop through `Policy::check_url`;
//! the POSTs then go to the redirected repository URL. Credentials are asked for on a 401, bound to
//! the origin of the URL they were asked for, and sent to that origin only.

use std::io::{self, Read, Write};
use std::sync::{Arc, Mutex};

use git2::transport::{Service, SmartSubtransport, SmartSubtransportStream};
use reqwest::StatusCode;
use reqwest::header::{ACCEPT, CONTENT_TYPE, LOCATION};
use url::Url;

use crate::error::{Error, redact};
use crate::git::{Inner, parse_remote};
use crate::http::{HopError, judge_hop};
use crate::policy::HTTP_SCHEMES;

const ADVERTISEMENT: &str = "application/x-git-upload-pack-advertisement";
const REQUEST: &str = "application/x-git-upload-pack-request";
const RESULT: &str = "application/x-git-upload-pack-result";

pub(crate) struct SmartHttp {
    scope: Arc<Inner>,
    /// The repository URL after the first request's redirects, for the POSTs that follow.
    base: Arc<Mutex<Option<Url>>>,
}

impl SmartHttp {
    pub(crate) fn new(scope: Arc<Inner>) -> SmartHttp {
        SmartHttp {
            scope,
            base: Arc::new(Mutex::new(None)),
        }
    }

    fn open(&self, url: &str, action: Service) -> Result<HttpStream, Error> {
        self.scope.check_time()?;
        self.scope.check_budget()?;
        let remote = parse_remote(url)?;
        let (post, base) = match action {
            Service::UploadPackLs => (false, remote),
            Service::UploadPack => {
                let base = self.base.lock().unwrap_or_else(|p| p.into_inner()).clone();
                (true, base.unwrap_or(remote))
            }
            Service::ReceivePackLs | Service::ReceivePack => {
                return Err(Error::PushNotSupported {
                    url: redact(&remote),
                });
            }
        };
        let mut request = base.clone();
        let path = format!(
            "{}/{}",
            base.path().trim_end_matches('/'),
            if post { "git-upload-pack" } else { "info/refs" }
        );
        request.set_path(&path);
        request.set_query((!post).then_some("service=git-upload-pack"));
        Ok(HttpStream {
            scope: self.scope.clone(),
            base: self.base.clone(),
            post,
            url: request,
            body: Vec::new(),
            response: None,
            pending: bytes::Bytes::new(),
        })
    }
}

impl SmartSubtransport for SmartHttp {
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

struct HttpStream {
    scope: Arc<Inner>,
    base: Arc<Mutex<Option<Url>>>,
    post: bool,
    url: Url,
    body: Vec<u8>,
    response: Option<reqwest::Response>,
    /// What the last chunk held beyond what libgit2 read.
    pending: bytes::Bytes,
}

impl HttpStream {
    /// Send the request (following the first request's redirects, answering a 401 once) and
    /// return the response to stream.
    fn send(&mut self) -> Result<reqwest::Response, Error> {
        let scope = self.scope.clone();
        let http = scope.http()?;
        let client = &http.client;
        let first = self.url.clone();
        let mut url = first.clone();
        let mut hops = 0;
        loop {
            scope.check_time()?;
            // Every hop, IP literals included (hyper connects to those without a resolver).
            scope.policy.check_url(&url, HTTP_SCHEMES)?;
            let origin = url.origin().ascii_serialization();
            let credentials = scope.credentials_for(&origin);
            let mut request = if self.post {
                client
                    .post(url.clone())
                    .header(CONTENT_TYPE, REQUEST)
                    .header(ACCEPT, RESULT)
                    .body(self.body.clone())
            } else {
                client.get(url.clone()).header(ACCEPT, ADVERTISEMENT)
            };
            if let Some(c) = &credentials {
                request = request.basic_auth(c.username(), Some(c.password()));
            }
            if let Some(left) = scope.remaining() {
                request = request.timeout(left);
            }
            scope.count_request();
            tracing::debug!(url = %redact(&url), post = self.post, "git smart HTTP request");
            let response = http
                .block_on(|| request.send())
                .map_err(|e| self.map_reqwest(&url, e))?;
            let status = response.status();

            if status.is_redirection()
                && let Some(location) = response.headers().get(LOCATION)
            {
                let location = location.to_str().unwrap_or("");
                let hop = url.join(location).map_err(|e| Error::Redirect {
                    from: redact(&url),
                    hop: location.to_string(),
                    reason: format!("the Location is not a valid URL ({e})"),
                })?;
                if self.post {
                    return Err(Error::Redirect {
                        from: redact(&url),
                        hop: redact(&hop),
                        reason: "git's POST requests are not redirected; kiln follows redirects on the first request (info/refs) only"
                            .to_string(),
                    });
                }
                hops += 1;
                judge_hop(
                    &scope.policy,
                    Some(&first),
                    hops,
                    &hop,
                    scope.max_redirects,
                    true,
                )
                .map_err(|e| match e {
                    HopError::Limit => Error::TooManyRedirects {
                        url: redact(&first),
                        limit: scope.max_redirects,
                    },
                    HopError::Reason(reason) => Error::Redirect {
                        from: redact(&url),
                        hop: redact(&hop),
                        reason,
                    },
                    HopError::Check(source) => Error::RedirectRefused {
                        from: redact(&url),
                        hop: redact(&hop),
                        source: Box::new(source),
                    },
                })?;
                url = hop;
                continue;
            }

            if status == StatusCode::UNAUTHORIZED {
                if credentials.is_some() {
                    return Err(Error::Authentication {
                        url: redact(&url),
                        reason: format!(
                            "the server refused the credentials given for {origin}; check the user name and the token"
                        ),
                    });
                }
                let given = scope.provider.as_ref().and_then(|provider| provider(&url));
                match given {
                    Some(c) => {
                        scope.bind_credentials(&origin, c);
                        continue;
                    }
                    None => {
                        return Err(Error::Authentication {
                            url: redact(&url),
                            reason: format!(
                                "the server asks for credentials and none are given for {origin}; give credentials for this host"
                            ),
                        });
                    }
                }
            }

            if !status.is_success() {
                let hint = match status.as_u16() {
                    403 => {
                        "the server refused access; check the repository URL and its permissions"
                    }
                    404 => "check the repository URL",
                    500..=599 => "the server failed; try again later",
                    _ => "check the repository URL",
                };
                return Err(Error::HttpStatus {
                    url: redact(&url),
                    status: status.as_u16(),
                    hint: hint.to_string(),
                });
            }

            let expected = if self.post { RESULT } else { ADVERTISEMENT };
            let content_type = response
                .headers()
                .get(CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            if !content_type
                .split(';')
                .next()
                .is_some_and(|t| t.trim().eq_ignore_ascii_case(expected))
            {
                return Err(Error::NotSmartHttp {
                    url: redact(&url),
                    content_type,
                });
            }

            if !self.post && url != first {
                let mut base = url.clone();
                let path = base.path().to_string();
                let Some(repo) = path.strip_suffix("/info/refs") else {
                    return Err(Error::Redirect {
                        from: redact(&first),
                        hop: redact(&url),
                        reason: "the redirect does not end at a repository's /info/refs"
                            .to_string(),
                    });
                };
                base.set_path(repo);
                base.set_query(None);
                *self.base.lock().unwrap_or_else(|p| p.into_inner()) = Some(base);
            }
            return Ok(response);
        }
    }

    fn map_reqwest(&self, url: &Url, e: reqwest::Error) -> Error {
        if let Some(found) = crate::http::guard_error(&e).and_then(Error::try_clone) {
            return found;
        }
        if e.is_timeout() {
            if let Err(timed_out) = self.scope.check_time() {
                return timed_out;
            }
            return Error::Stalled {
                url: redact(url),
                idle: self.scope.io_timeout,
            };
        }
        Error::Http {
            url: redact(url),
            source: e,
        }
    }

    fn read_body(&mut self, buf: &mut [u8]) -> Result<usize, Error> {
        if self.response.is_none() {
            self.response = Some(self.send()?);
        }
        self.scope.check_time()?;
        if self.pending.is_empty() {
            let scope = self.scope.clone();
            let http = scope.http()?;
            let response = self.response.as_mut().expect("sent above");
            // The request's own timeout is the deadline (response body included); reqwest's read
            // timeout is the idle limit.
            let chunk = http.block_on(|| response.chunk());
            match chunk {
                Ok(Some(chunk)) => self.pending = chunk,
                Ok(None) => return Ok(0),
                Err(e) => return Err(self.map_reqwest(&self.url.clone(), e)),
            }
        }
        let n = buf.len().min(self.pending.len());
        buf[..n].copy_from_slice(&self.pending.split_to(n));
        self.scope.account(n)?;
        Ok(n)
    }
}

impl Read for HttpStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.read_body(buf).map_err(|e| self.scope.io_error(e))
    }
}

impl Write for HttpStream {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.response.is_some() {
            return Err(io::Error::other(
                "libgit2 wrote to a smart HTTP stream after reading its response",
            ));
        }
        self.body.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
