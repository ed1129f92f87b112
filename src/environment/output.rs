//! Capture of an environment's stdout and stderr (one pipe) into its log stream.
//!
//! A task per environment reads the pipe, splits it into lines and sends each line to
//! the [`LogSink`]. While an invocation is running its lines are also kept (bounded) for
//! the `X-Amz-Log-Result` tail. [`OutputCapture::sync`] drains whatever the function has
//! already written before the invocation is closed: a runtime writes its output before it
//! posts the result, so after a sync every line of the invocation has been seen.

use std::collections::VecDeque;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::sync::{mpsc, oneshot};

use crate::logs::LogSink;
use crate::store::NewLogEvent;
use crate::timefmt::now_ms;

/// A line longer than this is cut into pieces.
const LINE_MAX: usize = 256 * 1024;
/// How much of an invocation's log the tail keeps (Lambda returns the last 4 KB).
pub const TAIL_BYTES: usize = 4096;

/// The lines of the running invocation, newest last, bounded to a little over [`TAIL_BYTES`].
#[derive(Default)]
pub struct Tail {
    lines: VecDeque<String>,
    bytes: usize,
}

impl Tail {
    pub fn push(&mut self, line: &str) {
        self.bytes += line.len() + 1;
        self.lines.push_back(line.to_string());
        while self.bytes > TAIL_BYTES * 2 && self.lines.len() > 1 {
            if let Some(old) = self.lines.pop_front() {
                self.bytes -= old.len() + 1;
            }
        }
    }

    /// The last [`TAIL_BYTES`] bytes of the log text (cut at a character boundary).
    pub fn text(&self) -> String {
        let mut text = String::with_capacity(self.bytes);
        for line in &self.lines {
            text.push_str(line);
            text.push('\n');
        }
        if text.len() > TAIL_BYTES {
            let mut cut = text.len() - TAIL_BYTES;
            while !text.is_char_boundary(cut) {
                cut += 1;
            }
            text.drain(..cut);
        }
        text
    }
}

/// Where an environment's lines go: the sink, and the running invocation's tail.
#[derive(Clone)]
pub struct LogTarget {
    pub sink: LogSink,
    pub function: Arc<str>,
    pub stream: Arc<str>,
    pub tail: Arc<Mutex<Option<Tail>>>,
    /// `ApplicationLogLevel`'s rank (JSON logs only): the function's JSON records below
    /// it are left out.
    pub min_level: Option<u8>,
}

impl LogTarget {
    /// A line of the function's own output, unless its level is filtered out.
    async fn output_line(&self, message: String) {
        if let Some(min) = self.min_level
            && !crate::logs::lines::passes_level(&message, min)
        {
            return;
        }
        self.line(message).await;
    }

    pub async fn line(&self, message: String) {
        if let Some(tail) = self.tail.lock().unwrap_or_else(|p| p.into_inner()).as_mut() {
            tail.push(&message);
        }
        self.sink
            .write(NewLogEvent {
                function: self.function.to_string(),
                stream: self.stream.to_string(),
                timestamp_ms: now_ms(),
                message,
            })
            .await;
    }

    pub fn begin_tail(&self) {
        *self.tail.lock().unwrap_or_else(|p| p.into_inner()) = Some(Tail::default());
    }

    pub fn take_tail(&self) -> Option<Tail> {
        self.tail.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

pub struct OutputCapture {
    sync_tx: mpsc::Sender<oneshot::Sender<()>>,
}

impl OutputCapture {
    /// Starts reading `read_end` into `target`; the task ends at end of file.
    pub fn start(read_end: OwnedFd, target: LogTarget) -> std::io::Result<Self> {
        let pipe = tokio::net::unix::pipe::Receiver::from_owned_fd(read_end)?;
        let (sync_tx, sync_rx) = mpsc::channel(4);
        tokio::spawn(read_loop(pipe, target, sync_rx));
        Ok(Self { sync_tx })
    }

    /// Waits until everything written to the pipe so far has been turned into lines.
    pub async fn sync(&self) {
        let (ack_tx, ack_rx) = oneshot::channel();
        if self.sync_tx.send(ack_tx).await.is_ok() {
            let _ = tokio::time::timeout(Duration::from_millis(500), ack_rx).await;
        }
    }
}

struct LineSplitter {
    partial: Vec<u8>,
}

impl LineSplitter {
    fn feed(&mut self, bytes: &[u8], out: &mut Vec<String>) {
        for &b in bytes {
            if b == b'\n' {
                out.push(self.take());
            } else {
                self.partial.push(b);
                if self.partial.len() >= LINE_MAX {
                    out.push(self.take());
                }
            }
        }
    }

    fn take(&mut self) -> String {
        let line = String::from_utf8_lossy(&self.partial)
            .trim_end_matches('\r')
            .to_string();
        self.partial.clear();
        line
    }

    fn finish(&mut self, out: &mut Vec<String>) {
        if !self.partial.is_empty() {
            out.push(self.take());
        }
    }
}

async fn read_loop(
    mut pipe: tokio::net::unix::pipe::Receiver,
    target: LogTarget,
    mut sync_rx: mpsc::Receiver<oneshot::Sender<()>>,
) {
    let mut splitter = LineSplitter {
        partial: Vec::new(),
    };
    let mut buf = vec![0u8; 64 * 1024];
    let mut lines = Vec::new();
    loop {
        tokio::select! {
            biased;
            Some(ack) = sync_rx.recv() => {
                // Read straight from the descriptor until it would block: the reactor's
                // readiness flag may lag behind data the runtime has just written.
                let fd = pipe.as_raw_fd();
                let mut eof = false;
                loop {
                    match nix::unistd::read(fd, &mut buf) {
                        Ok(0) => { eof = true; break; }
                        Ok(n) => splitter.feed(&buf[..n], &mut lines),
                        Err(nix::errno::Errno::EINTR) => continue,
                        Err(_) => break,
                    }
                }
                // Output without a final newline still belongs to the invocation
                // that wrote it: the sync marks the end of that invocation.
                splitter.finish(&mut lines);
                for line in lines.drain(..) {
                    target.output_line(line).await;
                }
                let _ = ack.send(());
                if eof {
                    break;
                }
            }
            read = pipe.read(&mut buf) => {
                match read {
                    Ok(0) | Err(_) => {
                        splitter.finish(&mut lines);
                        for line in lines.drain(..) {
                            target.output_line(line).await;
                        }
                        break;
                    }
                    Ok(n) => {
                        splitter.feed(&buf[..n], &mut lines);
                        for line in lines.drain(..) {
                            target.output_line(line).await;
                        }
                    }
                }
            }
        }
    }
    // Answer syncs that arrive after the end, so no caller waits for the timeout.
    sync_rx.close();
    while let Some(ack) = sync_rx.recv().await {
        let _ = ack.send(());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_lines_and_keeps_partials() {
        let mut splitter = LineSplitter {
            partial: Vec::new(),
        };
        let mut out = Vec::new();
        splitter.feed(b"one\ntw", &mut out);
        splitter.feed(b"o\r\nthree", &mut out);
        assert_eq!(out, ["one", "two"]);
        splitter.finish(&mut out);
        assert_eq!(out, ["one", "two", "three"]);
    }

    #[test]
    fn tail_keeps_the_last_4k() {
        let mut tail = Tail::default();
        for i in 0..1000 {
            tail.push(&format!("line {i:04} {}", "x".repeat(20)));
        }
        let text = tail.text();
        assert!(text.len() <= TAIL_BYTES);
        assert!(text.ends_with(&format!("line 0999 {}\n", "x".repeat(20))));
    }
}
