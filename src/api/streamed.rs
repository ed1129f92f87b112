//! A synchronous invocation whose response is read as the function streams it: started
//! through the invoke door with a stream sink, then read piece by piece until its
//! outcome. Shared by InvokeWithResponseStream and function URLs in `RESPONSE_STREAM` mode.
//!
//! [`begin`] waits for whichever comes first: the stream's start (the runtime began a
//! streamed response) or the invocation's end (an error before anything was streamed,
//! a throttle, or a runtime that answered without streaming). [`Tail::next`] then gives
//! the pieces in order and finally the outcome. The outcome is watched all along, so a
//! function that times out or dies mid-stream ends the stream too.

use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::environment::response_stream::{self, StreamPart};
use crate::invoke::{Invocation, InvokeDoor, InvokeError, InvokeOutcome};

pub type Outcome = Result<InvokeOutcome, InvokeError>;

/// How a streamed invocation began.
pub enum Began {
    /// The function streams: its content type, and the rest of the stream.
    Streaming {
        content_type: Option<String>,
        tail: Tail,
    },
    /// It ended without streaming anything.
    Finished(Outcome),
}

/// The rest of a stream.
pub struct Tail {
    parts: mpsc::Receiver<StreamPart>,
    /// The invocation, until it ended.
    task: Option<JoinHandle<Outcome>>,
    outcome: Option<Outcome>,
}

/// The next thing a stream gives.
pub enum Next {
    Chunk(Bytes),
    End(Outcome),
}

fn joined(result: Result<Outcome, tokio::task::JoinError>) -> Outcome {
    result.unwrap_or_else(|e| Err(InvokeError::Task(e)))
}

/// Starts `invocation` with a stream sink and waits for its stream to start or for it to
/// end.
pub async fn begin(door: Arc<dyn InvokeDoor>, invocation: Invocation) -> Began {
    let (sink, mut parts) = response_stream::channel();
    let invocation = invocation.stream(sink);
    let mut task = tokio::spawn(async move { door.invoke(invocation).await });
    tokio::select! {
        biased;
        part = parts.recv() => match part {
            Some(StreamPart::Start { content_type }) => Began::Streaming {
                content_type,
                tail: Tail { parts, task: Some(task), outcome: None },
            },
            // A chunk before the start cannot happen; no part at all: it answered without
            // streaming.
            Some(StreamPart::Chunk(_)) | None => Began::Finished(joined(task.await)),
        },
        result = &mut task => Began::Finished(joined(result)),
    }
}

impl Tail {
    /// The next piece, or the outcome once the stream is over (given once; the stream
    /// is then over).
    pub async fn next(&mut self) -> Next {
        loop {
            if let Some(outcome) = self.outcome.take() {
                // The invocation ended: what was already streamed still comes first.
                match self.parts.try_recv() {
                    Ok(StreamPart::Chunk(chunk)) => {
                        self.outcome = Some(outcome);
                        return Next::Chunk(chunk);
                    }
                    Ok(StreamPart::Start { .. }) => {
                        self.outcome = Some(outcome);
                        continue;
                    }
                    Err(_) => return Next::End(outcome),
                }
            }
            let Some(task) = self.task.as_mut() else {
                return Next::End(Err(InvokeError::ShuttingDown));
            };
            let ended = tokio::select! {
                biased;
                part = self.parts.recv() => match part {
                    Some(StreamPart::Chunk(chunk)) => return Next::Chunk(chunk),
                    Some(StreamPart::Start { .. }) => None,
                    // The stream is over: the invocation's end follows.
                    None => Some((&mut *task).await),
                },
                result = &mut *task => Some(result),
            };
            if let Some(result) = ended {
                self.task = None;
                self.outcome = Some(joined(result));
            }
        }
    }
}

impl Drop for Tail {
    fn drop(&mut self) {
        // A client that left stops reading; the invocation runs to its end regardless
        // (its pieces are then dropped by the Runtime API).
        self.parts.close();
    }
}
