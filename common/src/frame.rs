//! Sans-IO framing of protocol messages: a 4-byte big-endian length followed by that many bytes
//! of CBOR (see `docs/protocol.md`).
//!
//! [`encode`] makes one frame; [`FrameDecoder`] cuts frames out of a byte stream fed to it in
//! arbitrary pieces. The `decode_*` helpers turn a frame's payload into a message and tell an
//! *unknown message variant* (a newer peer; `Ok(None)`: skip it with a warning) from *malformed
//! input* (`Err`: close the connection).

use minicbor::{Decode, Encode};

use crate::proto::{AgentMsg, EnrollRequest, EnrollResponse, HubMsg, MAX_FRAME};

/// Length of the frame header.
pub const HEADER_LEN: usize = 4;

/// A framing error. Any of them closes the connection it happened on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// A frame (announced or to be sent) larger than [`MAX_FRAME`].
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge { len: usize, max: usize },
    /// The message could not be encoded.
    #[error("cannot encode message: {0}")]
    Encode(String),
}

/// A payload that is not a valid message of the expected type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtoError {
    /// Undecodable CBOR, a missing required field, trailing bytes, ...
    #[error("malformed {what}: {detail}")]
    Malformed { what: &'static str, detail: String },
}

/// Encode `msg` as one frame (length header + CBOR). Refuses messages above [`MAX_FRAME`].
pub fn encode<T: Encode<()>>(msg: &T) -> Result<Vec<u8>, FrameError> {
    let body = minicbor::to_vec(msg).map_err(|e| FrameError::Encode(e.to_string()))?;
    if body.len() > MAX_FRAME {
        return Err(FrameError::TooLarge {
            len: body.len(),
            max: MAX_FRAME,
        });
    }
    let len = u32::try_from(body.len()).map_err(|_| FrameError::TooLarge {
        len: body.len(),
        max: MAX_FRAME,
    })?;
    let mut out = Vec::with_capacity(HEADER_LEN + body.len());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&body);
    Ok(out)
}

/// Largest buffer capacity a decoder keeps once it holds no bytes (so an idle connection does
/// not keep the memory of its largest frame). Small: the hub holds one decoder per connected
/// agent, and after a burst of status batches each kept up to its largest batch (64 KiB each
/// would be 640 MiB at 10,000 agents); a frame larger than this costs one allocation.
const KEEP_IDLE: usize = 4 * 1024;

/// Cuts frames out of a byte stream. This is the one frame reader: the QUIC streams
/// (`outpost_net::stream::FramedRecv`) feed it what they read, and the `wire_decode` fuzz
/// target feeds it arbitrary bytes.
///
/// Call order: [`push`](Self::push) whatever bytes arrived, then call
/// [`next_frame`](Self::next_frame) until it returns `Ok(None)`. After an `Err` the stream is
/// unusable: close the connection.
#[derive(Debug)]
pub struct FrameDecoder {
    buf: Vec<u8>,
    /// Start of unconsumed bytes in `buf`.
    start: usize,
    failed: bool,
    max: usize,
}

impl Default for FrameDecoder {
    fn default() -> Self {
        Self::with_limit(MAX_FRAME)
    }
}

impl FrameDecoder {
    /// An empty decoder with the protocol limit [`MAX_FRAME`].
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty decoder refusing frames above `max` bytes (at most `u32::MAX`).
    pub fn with_limit(max: usize) -> Self {
        FrameDecoder {
            buf: Vec::new(),
            start: 0,
            failed: false,
            max: max.min(u32::MAX as usize),
        }
    }

    /// The length announced by the next frame's header, once the header is complete.
    pub fn announced(&self) -> Option<usize> {
        self.buf[self.start..]
            .first_chunk::<HEADER_LEN>()
            .map(|h| u32::from_be_bytes(*h) as usize)
    }

    /// Append bytes received from the stream.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.start > 0 && self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes buffered and not yet returned as frames.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }

    /// The next complete frame's payload, `Ok(None)` if more bytes are needed, or an error when
    /// the announced length exceeds the limit ([`MAX_FRAME`] unless set with
    /// [`with_limit`](Self::with_limit); checked before any allocation for it).
    pub fn next_frame(&mut self) -> Result<Option<Vec<u8>>, FrameError> {
        let avail = &self.buf[self.start..];
        let Some(header) = avail.first_chunk::<HEADER_LEN>() else {
            return Ok(None);
        };
        let len = u32::from_be_bytes(*header) as usize;
        if len > self.max || self.failed {
            self.failed = true;
            return Err(FrameError::TooLarge { len, max: self.max });
        }
        if avail.len() < HEADER_LEN + len {
            return Ok(None);
        }
        let frame = avail[HEADER_LEN..HEADER_LEN + len].to_vec();
        self.start += HEADER_LEN + len;
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
            if self.buf.capacity() > KEEP_IDLE {
                self.buf = Vec::new();
            }
        } else if self.start > self.max.max(KEEP_IDLE) {
            // Compact now and then so the buffer does not grow without bound.
            self.buf.drain(..self.start);
            self.start = 0;
        }
        Ok(Some(frame))
    }
}

/// Decode an enum message, mapping a top-level variant index outside `known` to `Ok(None)`.
///
/// minicbor encodes an enum variant as `[index, fields]`; we peek at that header first, so an
/// unknown *nested* variant (e.g. a new `StatusEvent` inside `Status`) is still an error: the
/// message cannot be handled without misreading it.
fn decode_enum<'b, T: Decode<'b, ()>>(
    bytes: &'b [u8],
    what: &'static str,
    known: &[i64],
) -> Result<Option<T>, ProtoError> {
    let malformed = |detail: String| ProtoError::Malformed { what, detail };
    let mut peek = minicbor::Decoder::new(bytes);
    match peek.array() {
        Ok(Some(2)) => {}
        Ok(other) => {
            return Err(malformed(format!(
                "expected a 2-element array, got {other:?}"
            )));
        }
        Err(e) => return Err(malformed(e.to_string())),
    }
    let idx = peek.i64().map_err(|e| malformed(e.to_string()))?;
    if !known.contains(&idx) {
        return Ok(None);
    }
    decode_exact(bytes, what).map(Some)
}

fn decode_exact<'b, T: Decode<'b, ()>>(
    bytes: &'b [u8],
    what: &'static str,
) -> Result<T, ProtoError> {
    let mut d = minicbor::Decoder::new(bytes);
    let v = d.decode::<T>().map_err(|e| ProtoError::Malformed {
        what,
        detail: e.to_string(),
    })?;
    if d.position() != bytes.len() {
        return Err(ProtoError::Malformed {
            what,
            detail: format!("{} trailing bytes", bytes.len() - d.position()),
        });
    }
    Ok(v)
}

/// Decode an agent-to-hub message. `Ok(None)`: a variant this release does not know.
pub fn decode_agent_msg(bytes: &[u8]) -> Result<Option<AgentMsg>, ProtoError> {
    decode_enum(bytes, "agent message", AGENT_MSG_VARIANTS)
}

/// The [`AgentMsg`] variant indices this release knows.
const AGENT_MSG_VARIANTS: &[i64] = &[0, 1, 2, 3, 4, 5, 6, 7, 10, 11];
/// The [`HubMsg`] variant indices this release knows.
const HUB_MSG_VARIANTS: &[i64] = &[0, 1, 2, 3, 4, 5, 6, 10, 11, 12];

/// Decode a hub-to-agent message. `Ok(None)`: a variant this release does not know.
pub fn decode_hub_msg(bytes: &[u8]) -> Result<Option<HubMsg>, ProtoError> {
    decode_enum(bytes, "hub message", HUB_MSG_VARIANTS)
}

/// Decode an enrollment request. A struct has no variants, so it is `Some` or an error.
pub fn decode_enroll_request(bytes: &[u8]) -> Result<Option<EnrollRequest>, ProtoError> {
    decode_exact(bytes, "enroll request").map(Some)
}

/// Decode an enrollment response. `Ok(None)`: a variant this release does not know.
pub fn decode_enroll_response(bytes: &[u8]) -> Result<Option<EnrollResponse>, ProtoError> {
    decode_enum(bytes, "enroll response", &[0, 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_in_pieces() {
        let a = HubMsg::Goodbye {
            reason: "seven".into(),
        };
        let b = HubMsg::Goodbye {
            reason: "bye".into(),
        };
        let mut bytes = encode(&a).unwrap();
        bytes.extend(encode(&b).unwrap());
        let mut d = FrameDecoder::new();
        let mut got = Vec::new();
        for byte in &bytes {
            d.push(std::slice::from_ref(byte));
            while let Some(f) = d.next_frame().unwrap() {
                got.push(decode_hub_msg(&f).unwrap().unwrap());
            }
        }
        assert_eq!(got, vec![a, b]);
        assert_eq!(d.buffered(), 0);
    }

    #[test]
    fn oversized_announcement_is_refused_before_the_body_arrives() {
        let mut d = FrameDecoder::new();
        d.push(&((MAX_FRAME as u32) + 1).to_be_bytes());
        assert!(matches!(d.next_frame(), Err(FrameError::TooLarge { .. })));
        // Stays failed.
        d.push(&[0; 8]);
        assert!(d.next_frame().is_err());
    }

    #[test]
    fn exactly_max_frame_is_accepted() {
        let mut d = FrameDecoder::new();
        d.push(&(MAX_FRAME as u32).to_be_bytes());
        assert_eq!(d.next_frame(), Ok(None));
        d.push(&vec![0u8; MAX_FRAME]);
        assert_eq!(d.next_frame().unwrap().map(|f| f.len()), Some(MAX_FRAME));
    }

    #[test]
    fn a_custom_limit_is_kept_and_announced_lengths_are_visible() {
        let mut d = FrameDecoder::with_limit(3);
        d.push(&[0, 0]);
        assert_eq!(d.announced(), None);
        d.push(&[0, 3, 1, 2]);
        assert_eq!(d.announced(), Some(3));
        assert_eq!(d.next_frame(), Ok(None));
        d.push(&[3, 0, 0, 0, 4]);
        assert_eq!(d.next_frame(), Ok(Some(vec![1, 2, 3])));
        assert_eq!(d.next_frame(), Err(FrameError::TooLarge { len: 4, max: 3 }));
    }

    #[test]
    fn encode_refuses_oversized_messages() {
        let msg = crate::proto::AgentMsg::LogChunk {
            id: 1,
            data: vec![0; MAX_FRAME],
            eof: false,
        };
        assert!(matches!(encode(&msg), Err(FrameError::TooLarge { .. })));
    }

    #[test]
    fn certificate_renewal_messages_decode() {
        let renew = crate::proto::AgentMsg::RenewCert {
            csr_der: vec![1, 2],
        };
        let bytes = minicbor::to_vec(&renew).unwrap();
        assert_eq!(decode_agent_msg(&bytes), Ok(Some(renew)));
        for m in [
            HubMsg::Certificate { cert_der: vec![3] },
            HubMsg::RenewRequired {
                reason: "expired".into(),
            },
        ] {
            let bytes = minicbor::to_vec(&m).unwrap();
            assert_eq!(decode_hub_msg(&bytes), Ok(Some(m)));
        }
        // Indices reserved for other messages stay unknown until they exist.
        assert_eq!(decode_agent_msg(&[0x82, 0x08, 0x80]), Ok(None));
        assert_eq!(decode_hub_msg(&[0x82, 0x0d, 0x80]), Ok(None));
    }

    #[test]
    fn unknown_variant_is_none_and_garbage_is_err() {
        // [99, []]: variant 99 of a newer release.
        let unknown = [0x82, 0x18, 99, 0x80];
        assert_eq!(decode_hub_msg(&unknown), Ok(None));
        assert_eq!(decode_agent_msg(&unknown), Ok(None));
        assert_eq!(decode_enroll_response(&unknown), Ok(None));
        assert!(decode_hub_msg(&[0xff, 0x00]).is_err());
        assert!(decode_hub_msg(&[]).is_err());
        // Known variant, wrong shape.
        assert!(decode_hub_msg(&[0x82, 0x02, 0x80]).is_err());
        // Trailing bytes.
        let mut ok = minicbor::to_vec(HubMsg::Goodbye {
            reason: "one".into(),
        })
        .unwrap();
        assert!(decode_hub_msg(&ok).unwrap().is_some());
        ok.push(0);
        assert!(decode_hub_msg(&ok).is_err());
    }
}
