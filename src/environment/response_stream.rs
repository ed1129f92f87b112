//! A response the function streams (`Lambda-Runtime-Function-Response-Mode: streaming`),
//! on its way from the Runtime API to whoever asked for it as a stream.
//!
//! The caller that wants a stream puts a [`StreamSink`] in its invocation; the Runtime API
//! forwards each piece of a streamed response body to it as it arrives, after one
//! [`StreamPart::Start`] with the response's content type. The invocation's outcome comes
//! the usual way once the stream has ended (a mid-stream error, from the body's trailers,
//! as a function error). A runtime that answers without streaming sends nothing to the
//! sink: its whole payload is the outcome.

use bytes::Bytes;
use tokio::sync::mpsc;

/// Lambda's default limit on a streamed response (20 MB).
pub const STREAM_MAX_BYTES: usize = 20 * 1024 * 1024;

/// How many pieces may wait for a slow reader before the runtime's upload waits too.
pub const STREAM_BUFFER: usize = 64;

/// One part of a streamed response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamPart {
    /// The stream begins; the response's `Content-Type`, if the runtime sent one.
    Start {
        content_type: Option<String>,
    },
    Chunk(Bytes),
}

/// Where the pieces of a streamed response go.
pub type StreamSink = mpsc::Sender<StreamPart>;

/// A sink and the receiver its pieces come out of.
pub fn channel() -> (StreamSink, mpsc::Receiver<StreamPart>) {
    mpsc::channel(STREAM_BUFFER)
}
