//! Readiness probes that ask the process: a TCP connect, or an HTTP
//! request. (A log-line check needs no probe: the log sink sees the line.)

use std::net::SocketAddr;
use std::time::Duration;

use std::os::fd::{AsRawFd as _, OwnedFd};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use super::spec::Ready;

/// How long one probe may take: a server that has not answered by then is
/// not ready yet.
pub(super) const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// Whether `check` passes now.
pub(super) async fn passes(check: &Ready) -> bool {
    let probe = async {
        match check {
            Ready::Port(port) => TcpStream::connect(("127.0.0.1", *port)).await.is_ok(),
            Ready::Http(addr, path) => http_ok(*addr, path).await,
            Ready::Log(_) => false,
        }
    };
    tokio::time::timeout(PROBE_TIMEOUT, probe)
        .await
        .unwrap_or(false)
}

/// Whether `GET path` on `addr` answers with a 2xx or 3xx status.
async fn http_ok(addr: SocketAddr, path: &str) -> bool {
    match TcpStream::connect(addr).await {
        Ok(stream) => http_answer(stream, addr, path).await,
        Err(_) => false,
    }
}

/// Whether `GET path`, asked on `stream` (connected to `addr`), answers
/// with a 2xx or 3xx status.
pub(super) async fn http_answer(mut stream: TcpStream, addr: SocketAddr, path: &str) -> bool {
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: bosun-ready\r\nConnection: close\r\n\r\n"
    );
    if stream.write_all(request.as_bytes()).await.is_err() {
        return false;
    }
    // "HTTP/1.1 200": the status is the 3 digits after the first space.
    let mut head = Vec::with_capacity(32);
    let mut buf = [0u8; 32];
    while head.len() < 12 {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    head.starts_with(b"HTTP/")
        && head
            .iter()
            .position(|b| *b == b' ')
            .and_then(|at| head.get(at + 1..at + 4))
            .and_then(|code| std::str::from_utf8(code).ok()?.parse::<u16>().ok())
            .is_some_and(|code| (200..400).contains(&code))
}

/// How many connections wait in the accept queue of `listener`, a
/// listening TCP socket (`tcpi_unacked` of a listener is its accept
/// backlog).
pub(super) fn queued(listener: &OwnedFd) -> Option<u32> {
    // SAFETY: getsockopt writes at most `len` bytes into `info`, a plain
    // C struct that lives on this stack frame.
    #[allow(unsafe_code)]
    unsafe {
        let mut info: libc::tcp_info = std::mem::zeroed();
        let mut len = size_of::<libc::tcp_info>() as libc::socklen_t;
        let got = libc::getsockopt(
            listener.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&raw mut info).cast(),
            &mut len,
        );
        (got == 0).then_some(info.tcpi_unacked)
    }
}
