//! Upload progress: a request body that hands its bytes to the connection in chunks and
//! says on stderr how many have gone, for requests large enough to take a while.

use std::convert::Infallible;
use std::io::{IsTerminal, Write};
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};

/// Bodies from this size up show their progress.
pub const PROGRESS_MIN_BYTES: usize = 4 * 1024 * 1024;

/// The size of the chunks handed to the connection.
const CHUNK_BYTES: usize = 256 * 1024;

/// A body sent in chunks, each counted on stderr: on a terminal one line rewritten in
/// place, elsewhere (a log, a pipe) a line at each quarter.
pub struct ProgressBody {
    data: Bytes,
    total: usize,
    sent: usize,
    quarters_said: usize,
    terminal: bool,
}

impl ProgressBody {
    pub fn new(data: Bytes) -> Self {
        Self {
            total: data.len(),
            data,
            sent: 0,
            quarters_said: 0,
            terminal: std::io::stderr().is_terminal(),
        }
    }

    fn report(&mut self) {
        let line = progress_line(self.sent, self.total);
        let mut stderr = std::io::stderr().lock();
        if self.terminal {
            let end = if self.sent == self.total { "\n" } else { "" };
            let _ = write!(stderr, "\r{line}{end}");
        } else {
            let quarters = self.sent * 4 / self.total.max(1);
            if quarters > self.quarters_said {
                self.quarters_said = quarters;
                let _ = writeln!(stderr, "{line}");
            }
        }
        let _ = stderr.flush();
    }
}

/// `uploading 12.0 of 80.1 MB (15%)`.
fn progress_line(sent: usize, total: usize) -> String {
    let mb = |n: usize| n as f64 / (1024.0 * 1024.0);
    format!(
        "uploading {:.1} of {:.1} MB ({}%)",
        mb(sent),
        mb(total),
        sent * 100 / total.max(1)
    )
}

impl Body for ProgressBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.data.is_empty() {
            return Poll::Ready(None);
        }
        let n = self.data.len().min(CHUNK_BYTES);
        let chunk = self.data.split_to(n);
        // Counted as the connection takes the chunk: the bytes before it have gone out.
        self.sent += n;
        self.report();
        Poll::Ready(Some(Ok(Frame::data(chunk))))
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.data.len() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn a_body_goes_in_chunks_that_add_up_to_it() {
        let data: Vec<u8> = (0..(CHUNK_BYTES * 3 + 17)).map(|i| i as u8).collect();
        let mut body = ProgressBody::new(Bytes::from(data.clone()));
        assert_eq!(body.size_hint().exact(), Some(data.len() as u64));
        let mut frames = 0;
        let mut got = Vec::new();
        while let Some(frame) = body.frame().await {
            got.extend_from_slice(&frame.unwrap().into_data().unwrap());
            frames += 1;
        }
        assert_eq!((frames, got), (4, data));
        assert!(body.is_end_stream());
    }

    #[test]
    fn the_line_says_megabytes_and_percent() {
        assert_eq!(
            progress_line(12 * 1024 * 1024, 80 * 1024 * 1024),
            "uploading 12.0 of 80.0 MB (15%)"
        );
    }
}
