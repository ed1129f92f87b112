//! AWS's event-stream encoding (`application/vnd.amazon.eventstream`), which
//! InvokeWithResponseStream answers in, and a response body fed from a channel.
//!
//! A message is a prelude (total length, headers length, both big-endian u32, and the
//! prelude's CRC32), string headers (name length u8, name, type 7, value length u16,
//! value), the payload, and the whole message's CRC32.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{BufMut, Bytes, BytesMut};
use hyper::body::Frame;
use tokio::sync::mpsc;

/// The type tag of a string header value.
const STRING: u8 = 7;

/// One event-stream message with string `headers` and `payload`.
pub fn message(headers: &[(&str, &str)], payload: &[u8]) -> Bytes {
    let headers_len: usize = headers
        .iter()
        .map(|(name, value)| 1 + name.len() + 1 + 2 + value.len())
        .sum();
    let total = 12 + headers_len + payload.len() + 4;
    let mut out = BytesMut::with_capacity(total);
    out.put_u32(total as u32);
    out.put_u32(headers_len as u32);
    out.put_u32(crc32fast::hash(&out[..8]));
    for (name, value) in headers {
        out.put_u8(name.len() as u8);
        out.put_slice(name.as_bytes());
        out.put_u8(STRING);
        out.put_u16(value.len() as u16);
        out.put_slice(value.as_bytes());
    }
    out.put_slice(payload);
    let crc = crc32fast::hash(&out);
    out.put_u32(crc);
    out.freeze()
}

/// An event of the stream (`:message-type: event`).
pub fn event(event_type: &str, content_type: &str, payload: &[u8]) -> Bytes {
    message(
        &[
            (":event-type", event_type),
            (":content-type", content_type),
            (":message-type", "event"),
        ],
        payload,
    )
}

/// A response body whose frames come from a channel; it ends when every sender is gone.
pub struct ChannelBody(pub mpsc::Receiver<Bytes>);

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        self.0.poll_recv(cx).map(|b| b.map(|b| Ok(Frame::data(b))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes one message the way a client does, checking both CRCs.
    fn decode(bytes: &[u8]) -> (Vec<(String, String)>, Vec<u8>) {
        let total = u32::from_be_bytes(bytes[0..4].try_into().unwrap()) as usize;
        let headers_len = u32::from_be_bytes(bytes[4..8].try_into().unwrap()) as usize;
        assert_eq!(total, bytes.len());
        assert_eq!(
            u32::from_be_bytes(bytes[8..12].try_into().unwrap()),
            crc32fast::hash(&bytes[..8])
        );
        assert_eq!(
            u32::from_be_bytes(bytes[total - 4..].try_into().unwrap()),
            crc32fast::hash(&bytes[..total - 4])
        );
        let mut headers = Vec::new();
        let mut at = 12;
        while at < 12 + headers_len {
            let n = bytes[at] as usize;
            let name = String::from_utf8(bytes[at + 1..at + 1 + n].to_vec()).unwrap();
            at += 1 + n;
            assert_eq!(bytes[at], STRING);
            let len = u16::from_be_bytes(bytes[at + 1..at + 3].try_into().unwrap()) as usize;
            let value = String::from_utf8(bytes[at + 3..at + 3 + len].to_vec()).unwrap();
            at += 3 + len;
            headers.push((name, value));
        }
        (headers, bytes[12 + headers_len..total - 4].to_vec())
    }

    #[test]
    fn messages_are_framed_with_both_checksums() {
        let bytes = event("PayloadChunk", "application/octet-stream", b"hello");
        let (headers, payload) = decode(&bytes);
        assert_eq!(payload, b"hello");
        assert!(headers.contains(&(":event-type".into(), "PayloadChunk".into())));
        assert!(headers.contains(&(":message-type".into(), "event".into())));
        let empty = event("InvokeComplete", "application/json", b"{}");
        assert_eq!(decode(&empty).1, b"{}");
    }
}
