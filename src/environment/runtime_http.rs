//! HTTP/1.1 as the Runtime API speaks it: one connection's request heads, bodies and
//! answers, written for the path every invocation takes twice.
//!
//! Owns the wire, not the meaning (that is `runtime_api`'s): a head is parsed once it is
//! whole (at most `max_buf` bytes, else 431 and the connection closes), and must be whole
//! within `header_timeout` of the connection opening or of a later head's first byte
//! (an idle keep-alive connection, a runtime waiting on its handler, is kept); bodies are
//! read only when asked for, under the caller's limit, whole or piece by piece as it
//! arrives (a streamed response), with `Content-Length` or chunked framing (trailers kept
//! for the request that read them) and `Expect: 100-continue`; a body left unread is
//! discarded before the next head, or the connection is closed when that would be
//! costly. An answer is written with one `write` when it is small, so that a warm
//! invocation costs the server one system call per message each way.

use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use hyper::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// Headers a request may carry (runtime clients send a handful).
const MAX_HEADERS: usize = 64;
/// The most read at once.
const READ_CHUNK: usize = 16 * 1024;
/// Answers up to this size are copied behind their head and written at once.
const COALESCE_MAX: usize = 64 * 1024;
/// A body left unread is read and dropped up to this size; a larger one closes the
/// connection instead.
const DISCARD_MAX: u64 = 8 * 1024 * 1024;

/// The limits of one connection.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// A head must be whole within this long of the connection opening, or of its first
    /// byte for later heads.
    pub header_timeout: Duration,
    /// The largest head (request line and headers).
    pub max_buf: usize,
}

/// How a request's body is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// `Content-Length` bytes still to come (0: no body).
    Length(u64),
    Chunked,
}

/// A request head, with what the Runtime API reads of it.
#[derive(Debug)]
pub struct Head {
    pub method: hyper::Method,
    /// The path, without the query.
    pub path: String,
    /// `Lambda-Runtime-Function-Error-Type`.
    pub function_error_type: Option<String>,
    /// `Lambda-Runtime-Function-Response-Mode: streaming`.
    pub streaming: bool,
    /// `Content-Type`.
    pub content_type: Option<String>,
    framing: Framing,
    expect_continue: bool,
    /// The client asked to close after this request (or spoke HTTP/1.0).
    close: bool,
}

/// An answer: a status, a JSON body and extra headers (names lower case, values checked
/// by [`Answer::header`]).
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub body: Bytes,
    headers: Vec<(&'static str, String)>,
}

impl Answer {
    pub fn json(status: StatusCode, body: impl Into<Bytes>) -> Self {
        Self {
            status,
            body: body.into(),
            headers: Vec::new(),
        }
    }

    /// Adds a header; `None` when `value` is not a valid header value (a line break, a
    /// control character).
    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Option<Self> {
        let value = value.into();
        if !value
            .bytes()
            .all(|b| b == b'\t' || (b' '..=b'~').contains(&b) || b >= 0x80)
        {
            return None;
        }
        self.headers.push((name, value));
        Some(self)
    }
}

/// Why a body could not be read.
#[derive(Debug, PartialEq, Eq)]
pub enum BodyError {
    /// Larger than the limit the caller gave.
    TooLarge,
    /// The connection broke or the framing was invalid.
    Broken,
}

/// Why a connection ends.
#[derive(Debug)]
enum End {
    /// The peer closed, between requests or mid-way.
    Closed,
    /// A head too large, malformed or too slow: answered (when possible), then closed.
    Refused,
}

/// One Runtime API connection.
pub struct Connection {
    stream: TcpStream,
    limits: Limits,
    /// Bytes read and not consumed yet.
    buf: BytesMut,
    /// The answer being written.
    out: Vec<u8>,
    /// The current request's body still unread.
    body: Option<BodyState>,
    /// Whether `100 Continue` was sent for the current request.
    continued: bool,
    expect_continue: bool,
    /// Close once the current answer is written.
    close: bool,
    /// No head was read on this connection yet.
    first: bool,
    /// The trailers of the current request's chunked body, once it was read to its end
    /// (names lower case).
    trailers: Vec<(String, String)>,
}

#[derive(Debug, Clone, Copy)]
enum BodyState {
    Length(u64),
    /// Chunked: within a chunk of this many bytes still to come, or (0) before a size line.
    Chunk(u64),
}

impl Connection {
    pub fn new(stream: TcpStream, limits: Limits) -> Self {
        Self {
            stream,
            limits,
            buf: BytesMut::with_capacity(READ_CHUNK),
            out: Vec::with_capacity(1024),
            body: None,
            continued: false,
            expect_continue: false,
            close: false,
            first: true,
            trailers: Vec::new(),
        }
    }

    /// The next request's head; `None` when the connection is over (closed by the peer,
    /// or refused: a head too large, malformed or too slow, answered when possible).
    pub async fn next_head(&mut self) -> Option<Head> {
        if self.close {
            return None;
        }
        match self.read_head().await {
            Ok(head) => {
                self.body = match head.framing {
                    Framing::Length(0) => None,
                    Framing::Length(n) => Some(BodyState::Length(n)),
                    Framing::Chunked => Some(BodyState::Chunk(0)),
                };
                self.continued = false;
                self.trailers.clear();
                self.expect_continue = head.expect_continue;
                self.close = head.close;
                Some(head)
            }
            Err(End::Closed | End::Refused) => None,
        }
    }

    async fn read_head(&mut self) -> Result<Head, End> {
        let mut deadline = self
            .first
            .then(|| Instant::now() + self.limits.header_timeout);
        self.first = false;
        // Where the search for the end of the head goes on from.
        let mut searched = 0;
        loop {
            if !self.buf.is_empty() {
                if let Some(end) = find_head_end(&self.buf, searched) {
                    let head = parse_head(&self.buf[..end]);
                    self.buf.advance(end);
                    return match head {
                        Ok(head) => Ok(head),
                        Err(status) => {
                            self.refuse(status).await;
                            Err(End::Refused)
                        }
                    };
                }
                searched = self.buf.len().saturating_sub(3);
                if self.buf.len() >= self.limits.max_buf {
                    self.refuse(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE)
                        .await;
                    return Err(End::Refused);
                }
                deadline.get_or_insert_with(|| Instant::now() + self.limits.header_timeout);
            }
            let room = (self.limits.max_buf - self.buf.len()).min(READ_CHUNK);
            self.buf.reserve(room);
            let read = read_some(&mut self.stream, &mut self.buf, room);
            let n = match deadline {
                Some(deadline) => match tokio::time::timeout_at(deadline, read).await {
                    Ok(n) => n,
                    Err(_) => return Err(End::Refused),
                },
                None => read.await,
            };
            match n {
                Ok(0) | Err(_) => return Err(End::Closed),
                Ok(_) => {}
            }
        }
    }

    /// Answers a head that cannot be served, and closes.
    async fn refuse(&mut self, status: StatusCode) {
        self.close = true;
        let answer = Answer::json(
            status,
            format!(
                r#"{{"errorType":"InvalidRequest","errorMessage":"{}"}}"#,
                status.canonical_reason().unwrap_or("invalid request")
            ),
        );
        let _ = self.answer(answer).await;
    }

    /// Reads the current request's whole body, if it is at most `limit` bytes.
    pub async fn read_body(&mut self, limit: usize) -> Result<Bytes, BodyError> {
        let Some(state) = self.body else {
            return Ok(Bytes::new());
        };
        if let BodyState::Length(n) = state
            && n > limit as u64
        {
            return Err(BodyError::TooLarge);
        }
        self.send_continue().await?;
        match state {
            BodyState::Length(n) => {
                let n = n as usize;
                while self.buf.len() < n {
                    self.buf.reserve(n - self.buf.len());
                    let want = n - self.buf.len();
                    match read_some(&mut self.stream, &mut self.buf, want).await {
                        Ok(0) | Err(_) => {
                            self.close = true;
                            return Err(BodyError::Broken);
                        }
                        Ok(_) => {}
                    }
                }
                self.body = None;
                Ok(self.buf.split_to(n).freeze())
            }
            BodyState::Chunk(_) => {
                let mut body = BytesMut::new();
                loop {
                    match self.next_chunk(limit.saturating_sub(body.len())).await {
                        Ok(Some(chunk)) => body.extend_from_slice(&chunk),
                        Ok(None) => return Ok(body.freeze()),
                        Err(e) => {
                            // A chunked body cut short cannot be skipped cheaply.
                            self.close = true;
                            return Err(e);
                        }
                    }
                }
            }
        }
    }

    /// The next piece of the current request's body as it arrives (at most `room` more
    /// bytes in all), or `None` at its end; for a streamed body.
    pub async fn read_piece(&mut self, room: usize) -> Result<Option<Bytes>, BodyError> {
        let Some(state) = self.body else {
            return Ok(None);
        };
        self.send_continue().await?;
        match state {
            BodyState::Length(0) => {
                self.body = None;
                Ok(None)
            }
            BodyState::Length(n) => {
                if n > room as u64 {
                    self.close = true;
                    return Err(BodyError::TooLarge);
                }
                if self.buf.is_empty() {
                    self.buf.reserve(READ_CHUNK);
                    match read_some(&mut self.stream, &mut self.buf, READ_CHUNK).await {
                        Ok(0) | Err(_) => {
                            self.close = true;
                            return Err(BodyError::Broken);
                        }
                        Ok(_) => {}
                    }
                }
                let take = (self.buf.len() as u64).min(n) as usize;
                let left = n - take as u64;
                self.body = (left > 0).then_some(BodyState::Length(left));
                Ok(Some(self.buf.split_to(take).freeze()))
            }
            BodyState::Chunk(_) => match self.next_chunk(room).await {
                Ok(piece) => Ok(piece),
                Err(e) => {
                    self.close = true;
                    Err(e)
                }
            },
        }
    }

    /// The trailer `name` (lower case) of the body just read to its end.
    pub fn trailer(&self, name: &str) -> Option<&str> {
        self.trailers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    async fn send_continue(&mut self) -> Result<(), BodyError> {
        if self.expect_continue && !self.continued {
            self.continued = true;
            self.stream
                .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
                .await
                .map_err(|_| BodyError::Broken)?;
        }
        Ok(())
    }

    /// The next piece of a chunked body (at most `room` bytes of it so far), or `None`
    /// after the last chunk and the trailers.
    async fn next_chunk(&mut self, room: usize) -> Result<Option<Bytes>, BodyError> {
        let Some(BodyState::Chunk(left)) = self.body else {
            return Ok(None);
        };
        if left == 0 {
            let line = self.read_line().await?;
            let size = line[..].split(|&b| b == b';').next().unwrap_or_default();
            let size = std::str::from_utf8(size)
                .ok()
                .map(str::trim)
                .and_then(|s| u64::from_str_radix(s, 16).ok())
                .ok_or(BodyError::Broken)?;
            if size == 0 {
                // Trailers, up to the empty line.
                loop {
                    let line = self.read_line().await?;
                    if line.is_empty() {
                        break;
                    }
                    if let Some((name, value)) = std::str::from_utf8(&line)
                        .ok()
                        .and_then(|l| l.split_once(':'))
                        && self.trailers.len() < MAX_HEADERS
                    {
                        self.trailers
                            .push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
                    }
                }
                self.body = None;
                return Ok(None);
            }
            if size > room as u64 {
                return Err(BodyError::TooLarge);
            }
            self.body = Some(BodyState::Chunk(size));
            return Ok(Some(Bytes::new()));
        }
        if self.buf.is_empty() {
            self.buf.reserve(READ_CHUNK);
            match read_some(&mut self.stream, &mut self.buf, READ_CHUNK).await {
                Ok(0) | Err(_) => return Err(BodyError::Broken),
                Ok(_) => {}
            }
        }
        let take = (self.buf.len() as u64).min(left) as usize;
        let data = self.buf.split_to(take).freeze();
        let left = left - take as u64;
        if left == 0 {
            // The CRLF after the chunk's data.
            if !self.read_line().await?.is_empty() {
                return Err(BodyError::Broken);
            }
        }
        self.body = Some(BodyState::Chunk(left));
        Ok(Some(data))
    }

    /// One CRLF-ended line of a chunked body (without its CRLF), at most 4 KiB.
    async fn read_line(&mut self) -> Result<BytesMut, BodyError> {
        loop {
            if let Some(at) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line = self.buf.split_to(at);
                self.buf.advance(2);
                return Ok(line);
            }
            if self.buf.len() > 4096 {
                return Err(BodyError::Broken);
            }
            self.buf.reserve(READ_CHUNK);
            match read_some(&mut self.stream, &mut self.buf, READ_CHUNK).await {
                Ok(0) | Err(_) => return Err(BodyError::Broken),
                Ok(_) => {}
            }
        }
    }

    /// Drops what is left of the current body, so that the next head can be read; closes
    /// the connection when that would cost too much (a large body, one the client has not
    /// sent yet because it waits for `100 Continue`, a chunked one).
    async fn skip_body(&mut self) {
        let Some(state) = self.body.take() else {
            return;
        };
        match state {
            BodyState::Length(n)
                if n <= DISCARD_MAX && (self.continued || !self.expect_continue) =>
            {
                let mut left = n;
                loop {
                    let take = (self.buf.len() as u64).min(left) as usize;
                    self.buf.advance(take);
                    left -= take as u64;
                    if left == 0 {
                        return;
                    }
                    self.buf.reserve(READ_CHUNK);
                    match read_some(&mut self.stream, &mut self.buf, READ_CHUNK).await {
                        Ok(0) | Err(_) => {
                            self.close = true;
                            return;
                        }
                        Ok(_) => {}
                    }
                }
            }
            _ => self.close = true,
        }
    }

    /// Writes `answer` (after dropping what is left of the request's body); false when
    /// the connection is over.
    pub async fn answer(&mut self, answer: Answer) -> bool {
        self.skip_body().await;
        let out = &mut self.out;
        out.clear();
        out.extend_from_slice(b"HTTP/1.1 ");
        out.extend_from_slice(answer.status.as_str().as_bytes());
        out.push(b' ');
        out.extend_from_slice(
            answer
                .status
                .canonical_reason()
                .unwrap_or("Unknown")
                .as_bytes(),
        );
        out.extend_from_slice(b"\r\ncontent-type: application/json\r\ncontent-length: ");
        out.extend_from_slice(answer.body.len().to_string().as_bytes());
        out.extend_from_slice(b"\r\n");
        for (name, value) in &answer.headers {
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        if self.close {
            out.extend_from_slice(b"connection: close\r\n");
        }
        out.extend_from_slice(b"\r\n");
        let written = if answer.body.len() <= COALESCE_MAX {
            out.extend_from_slice(&answer.body);
            self.stream.write_all(out).await
        } else {
            match self.stream.write_all(out).await {
                Ok(()) => self.stream.write_all(&answer.body).await,
                Err(e) => Err(e),
            }
        };
        if self.out.capacity() > COALESCE_MAX * 2 {
            self.out = Vec::with_capacity(1024);
        }
        written.is_ok() && !self.close
    }
}

/// Reads at most `max` bytes into `buf` (which has room for them).
async fn read_some(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
    max: usize,
) -> std::io::Result<usize> {
    let mut limited = (&mut *stream).take(max as u64);
    limited.read_buf(buf).await
}

/// The length of the head at the start of `buf` (through its blank line), searching from
/// `from` on.
fn find_head_end(buf: &[u8], from: usize) -> Option<usize> {
    buf[from..]
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|at| from + at + 4)
}

/// Parses a whole head; the status to refuse it with when it is not valid.
fn parse_head(bytes: &[u8]) -> Result<Head, StatusCode> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    match request.parse(bytes) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Err(StatusCode::BAD_REQUEST),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
        }
        Err(_) => return Err(StatusCode::BAD_REQUEST),
    }
    let method = request
        .method
        .and_then(|m| hyper::Method::from_bytes(m.as_bytes()).ok())
        .ok_or(StatusCode::BAD_REQUEST)?;
    let target = request.path.ok_or(StatusCode::BAD_REQUEST)?;
    let path = target.split('?').next().unwrap_or_default().to_string();
    let mut close = request.version != Some(1);
    let mut length: Option<u64> = None;
    let mut chunked = false;
    let mut expect_continue = false;
    let mut function_error_type = None;
    let mut streaming = false;
    let mut content_type = None;
    for header in request.headers.iter() {
        let name = header.name;
        let value = header.value;
        if name.eq_ignore_ascii_case("content-length") {
            let n = std::str::from_utf8(value)
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
                .ok_or(StatusCode::BAD_REQUEST)?;
            if length.is_some_and(|l| l != n) {
                return Err(StatusCode::BAD_REQUEST);
            }
            length = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            let last = value
                .rsplit(|&b| b == b',')
                .next()
                .map(|v| v.trim_ascii())
                .unwrap_or_default();
            if !last.eq_ignore_ascii_case(b"chunked") {
                return Err(StatusCode::NOT_IMPLEMENTED);
            }
            chunked = true;
        } else if name.eq_ignore_ascii_case("connection") {
            for token in value.split(|&b| b == b',') {
                let token = token.trim_ascii();
                if token.eq_ignore_ascii_case(b"close") {
                    close = true;
                } else if token.eq_ignore_ascii_case(b"keep-alive") {
                    close = false;
                }
            }
        } else if name.eq_ignore_ascii_case("expect") {
            expect_continue = value.trim_ascii().eq_ignore_ascii_case(b"100-continue");
        } else if name.eq_ignore_ascii_case("lambda-runtime-function-error-type") {
            function_error_type = std::str::from_utf8(value).ok().map(str::to_string);
        } else if name.eq_ignore_ascii_case("lambda-runtime-function-response-mode") {
            streaming = value.trim_ascii().eq_ignore_ascii_case(b"streaming");
        } else if name.eq_ignore_ascii_case("content-type") {
            content_type = std::str::from_utf8(value)
                .ok()
                .map(|v| v.trim().to_string());
        }
    }
    // A message with both is a smuggling attempt or a broken client.
    if chunked && length.is_some() {
        return Err(StatusCode::BAD_REQUEST);
    }
    Ok(Head {
        method,
        path,
        function_error_type,
        streaming,
        content_type,
        framing: if chunked {
            Framing::Chunked
        } else {
            Framing::Length(length.unwrap_or(0))
        },
        expect_continue,
        close,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    const LIMITS: Limits = Limits {
        header_timeout: Duration::from_millis(300),
        max_buf: 4096,
    };

    /// A connection served by `serve` (each head answered with its body echoed), and the
    /// client's end.
    async fn pair() -> (TcpStream, tokio::task::JoinHandle<()>) {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let mut conn = Connection::new(stream, LIMITS);
            while let Some(head) = conn.next_head().await {
                let answer = if head.path.ends_with("/skip") {
                    Answer::json(StatusCode::ACCEPTED, "skipped")
                } else {
                    match conn.read_body(100).await {
                        Ok(body) => Answer::json(StatusCode::OK, body)
                            .header("x-path", head.path.clone())
                            .unwrap(),
                        Err(BodyError::TooLarge) => {
                            Answer::json(StatusCode::PAYLOAD_TOO_LARGE, "big")
                        }
                        Err(BodyError::Broken) => Answer::json(StatusCode::BAD_REQUEST, "broken"),
                    }
                };
                if !conn.answer(answer).await {
                    break;
                }
            }
        });
        (TcpStream::connect(addr).await.unwrap(), server)
    }

    /// Reads answers until `count` have arrived (or the connection closed).
    async fn read_answers(client: &mut TcpStream, count: usize) -> String {
        let mut all = Vec::new();
        let mut buf = [0u8; 4096];
        while String::from_utf8_lossy(&all).matches("HTTP/1.1 ").count() < count {
            let n = tokio::time::timeout(Duration::from_secs(5), client.read(&mut buf))
                .await
                .expect("an answer within 5 s")
                .unwrap_or(0);
            if n == 0 {
                break;
            }
            all.extend_from_slice(&buf[..n]);
        }
        String::from_utf8_lossy(&all).into_owned()
    }

    #[tokio::test]
    async fn pipelined_requests_with_length_and_chunked_bodies() {
        let (mut client, _server) = pair().await;
        client
            .write_all(
                b"POST /a?x=1 HTTP/1.1\r\ncontent-length: 5\r\n\r\nhelloPOST /b HTTP/1.1\r\n\
                  transfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2;ext=1\r\nde\r\n0\r\nx-trailer: 1\r\n\r\n\
                  GET /c HTTP/1.1\r\n\r\n",
            )
            .await
            .unwrap();
        let text = read_answers(&mut client, 3).await;
        let answers: Vec<&str> = text.split("HTTP/1.1 ").skip(1).collect();
        assert_eq!(answers.len(), 3, "{text}");
        assert!(answers[0].starts_with("200 OK") && answers[0].contains("x-path: /a\r\n"));
        assert!(answers[0].ends_with("\r\n\r\nhello"), "{}", answers[0]);
        assert!(answers[1].ends_with("\r\n\r\nabcde"), "{}", answers[1]);
        assert!(
            answers[2].contains("content-length: 0\r\n"),
            "{}",
            answers[2]
        );
    }

    #[tokio::test]
    async fn an_unread_body_is_skipped_and_a_large_one_refused() {
        let (mut client, _server) = pair().await;
        client
            .write_all(b"POST /skip HTTP/1.1\r\ncontent-length: 3\r\n\r\nabcPOST /big HTTP/1.1\r\ncontent-length: 101\r\n\r\n")
            .await
            .unwrap();
        client.write_all(&[b'x'; 101]).await.unwrap();
        client
            .write_all(b"POST /d HTTP/1.1\r\ncontent-length: 2\r\n\r\nok")
            .await
            .unwrap();
        let text = read_answers(&mut client, 3).await;
        let answers: Vec<&str> = text.split("HTTP/1.1 ").skip(1).collect();
        assert!(answers[0].starts_with("202 Accepted"), "{text}");
        assert!(answers[1].starts_with("413 Payload Too Large"), "{text}");
        assert!(
            answers[2].starts_with("200 OK") && answers[2].ends_with("ok"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn expect_continue_is_answered_before_the_body() {
        let (mut client, _server) = pair().await;
        client
            .write_all(b"POST /e HTTP/1.1\r\nexpect: 100-continue\r\ncontent-length: 3\r\n\r\n")
            .await
            .unwrap();
        let interim = read_answers(&mut client, 1).await;
        assert!(
            interim.starts_with("HTTP/1.1 100 Continue\r\n\r\n"),
            "{interim}"
        );
        client.write_all(b"xyz").await.unwrap();
        let text = read_answers(&mut client, 1).await;
        assert!(
            text.starts_with("HTTP/1.1 200 OK") && text.ends_with("xyz"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn a_head_too_large_is_refused_and_closed() {
        let (mut client, _server) = pair().await;
        let mut head = b"GET / HTTP/1.1\r\nx-big: ".to_vec();
        head.resize(LIMITS.max_buf + 10, b'a');
        let _ = client.write_all(&head).await;
        let text = read_answers(&mut client, 1).await;
        assert!(text.starts_with("HTTP/1.1 431"), "{text}");
        assert!(text.contains("connection: close"), "{text}");
    }

    #[tokio::test]
    async fn a_slow_head_is_dropped_but_an_idle_connection_kept() {
        let (mut client, _server) = pair().await;
        client.write_all(b"GET /f HTTP/1.1\r\n\r\n").await.unwrap();
        assert!(
            read_answers(&mut client, 1)
                .await
                .starts_with("HTTP/1.1 200")
        );
        // Idle for longer than the header timeout: still served.
        tokio::time::sleep(LIMITS.header_timeout * 2).await;
        client.write_all(b"GET /g HTTP/1.1\r\n").await.unwrap();
        // A head begun and not finished: closed after the timeout.
        let started = std::time::Instant::now();
        let mut buf = [0u8; 64];
        let n = tokio::time::timeout(Duration::from_secs(5), client.read(&mut buf))
            .await
            .expect("closed within 5 s")
            .unwrap_or(0);
        assert_eq!(n, 0);
        assert!(started.elapsed() >= LIMITS.header_timeout / 2);
    }

    #[test]
    fn heads_are_parsed_with_their_framing() {
        let head = parse_head(b"POST /x?q HTTP/1.1\r\nContent-Length: 7\r\nConnection: close\r\nLambda-Runtime-Function-Error-Type: Bad\r\n\r\n").unwrap();
        assert_eq!(head.path, "/x");
        assert_eq!(head.framing, Framing::Length(7));
        assert!(head.close);
        assert_eq!(head.function_error_type.as_deref(), Some("Bad"));
        let head = parse_head(b"GET / HTTP/1.0\r\n\r\n").unwrap();
        assert!(head.close);
        assert_eq!(
            parse_head(
                b"POST / HTTP/1.1\r\ncontent-length: 1\r\ntransfer-encoding: chunked\r\n\r\n"
            )
            .unwrap_err(),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            parse_head(b"POST / HTTP/1.1\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\n")
                .unwrap_err(),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            parse_head(b"POST / HTTP/1.1\r\ntransfer-encoding: gzip\r\n\r\n").unwrap_err(),
            StatusCode::NOT_IMPLEMENTED
        );
        assert!(
            Answer::json(StatusCode::OK, "")
                .header("x", "a\r\nb")
                .is_none()
        );
    }
}
