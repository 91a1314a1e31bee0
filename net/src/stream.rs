//! Length-prefixed CBOR frames over quinn streams: a 4-byte big-endian length, then that many
//! bytes holding exactly one minicbor-encoded message. Frames larger than the limit
//! ([`MAX_FRAME`] by default) are refused on send (nothing is written) and on receive (before
//! anything of the announced size is allocated); the caller then closes the connection.

use outpost_common::proto::MAX_FRAME;

use crate::NetError;

/// Sending half: writes one frame per message.
#[derive(Debug)]
pub struct FramedSend {
    /// The underlying stream.
    pub send: quinn::SendStream,
    max: usize,
}

impl FramedSend {
    /// Frames on `send` with the protocol limit [`MAX_FRAME`].
    pub fn new(send: quinn::SendStream) -> Self {
        Self::with_limit(send, MAX_FRAME)
    }

    /// Frames on `send` with a custom limit (at most `u32::MAX`).
    pub fn with_limit(send: quinn::SendStream, max: usize) -> Self {
        FramedSend {
            send,
            max: max.min(u32::MAX as usize),
        }
    }

    /// Encode `msg` and write it as one frame.
    pub async fn send<T: minicbor::Encode<()>>(&mut self, msg: &T) -> Result<(), NetError> {
        let frame = encode_frame(msg, self.max)?;
        self.send.write_all(&frame).await?;
        Ok(())
    }

    /// Write an already-encoded message (its CBOR bytes) as one frame.
    pub async fn send_raw(&mut self, payload: &[u8]) -> Result<(), NetError> {
        if payload.len() > self.max {
            return Err(NetError::FrameTooLarge {
                len: payload.len(),
                max: self.max,
            });
        }
        let len = u32::try_from(payload.len()).map_err(|_| NetError::FrameTooLarge {
            len: payload.len(),
            max: self.max,
        })?;
        self.send.write_all(&len.to_be_bytes()).await?;
        self.send.write_all(payload).await?;
        Ok(())
    }

    /// Finish the stream (the peer's [`FramedRecv::recv_frame`] then returns `None`).
    pub fn finish(&mut self) -> Result<(), NetError> {
        self.send.finish()?;
        Ok(())
    }
}

/// Encode `msg` as a complete frame (length prefix + CBOR), refusing more than `max` bytes of
/// payload.
pub fn encode_frame<T: minicbor::Encode<()>>(msg: &T, max: usize) -> Result<Vec<u8>, NetError> {
    let mut buf = vec![0u8; 4];
    minicbor::encode(msg, &mut buf).map_err(|e| NetError::Encode(e.to_string()))?;
    let len = buf.len() - 4;
    if len > max {
        return Err(NetError::FrameTooLarge { len, max });
    }
    let prefix = u32::try_from(len)
        .map_err(|_| NetError::FrameTooLarge { len, max })?
        .to_be_bytes();
    buf[..4].copy_from_slice(&prefix);
    Ok(buf)
}

/// Decode one message that must fill `bytes` exactly.
pub fn decode_frame<T: for<'b> minicbor::Decode<'b, ()>>(bytes: &[u8]) -> Result<T, NetError> {
    let mut d = minicbor::Decoder::new(bytes);
    let v = d.decode::<T>()?;
    let rest = bytes.len() - d.position();
    if rest != 0 {
        return Err(NetError::TrailingBytes(rest));
    }
    Ok(v)
}

/// Largest receive buffer kept between frames.
const KEEP_BUF: usize = 64 * 1024;

/// Receiving half: reads one frame at a time.
///
/// [`recv_frame`](Self::recv_frame) and [`recv`](Self::recv) are **cancel-safe**: the progress
/// of a partly received frame (length prefix and body) is kept in `self`, so dropping the future
/// (e.g. another branch of a `tokio::select!` won) loses nothing, and the next call continues
/// the same frame. (quinn's `read_exact` is not cancel-safe; only its `read` is, and that is
/// all this uses.)
#[derive(Debug)]
pub struct FramedRecv {
    /// The underlying stream.
    pub recv: quinn::RecvStream,
    buf: Vec<u8>,
    max: usize,
    /// Length prefix of the current frame, `len_got` bytes of it read so far.
    len: [u8; 4],
    len_got: usize,
    /// Body bytes of the current frame read so far into `buf` (sized once the length is known).
    body_got: usize,
    sized: bool,
}

impl FramedRecv {
    /// Frames from `recv` with the protocol limit [`MAX_FRAME`].
    pub fn new(recv: quinn::RecvStream) -> Self {
        Self::with_limit(recv, MAX_FRAME)
    }

    /// Frames from `recv` with a custom limit.
    pub fn with_limit(recv: quinn::RecvStream, max: usize) -> Self {
        FramedRecv {
            recv,
            buf: Vec::new(),
            max,
            len: [0; 4],
            len_got: 0,
            body_got: 0,
            sized: false,
        }
    }

    /// Read the next frame into the internal buffer. `Ok(false)` on a clean end of stream.
    /// Cancel-safe: every await is quinn's cancel-safe `read`, and progress lives in `self`.
    async fn fill(&mut self) -> Result<bool, NetError> {
        while self.len_got < 4 {
            match self.recv.read(&mut self.len[self.len_got..]).await? {
                Some(n) => self.len_got += n,
                None if self.len_got == 0 => return Ok(false),
                None => {
                    return Err(NetError::Truncated {
                        got: self.len_got,
                        want: 4,
                    });
                }
            }
        }
        let want = u32::from_be_bytes(self.len) as usize;
        if want > self.max {
            return Err(NetError::FrameTooLarge {
                len: want,
                max: self.max,
            });
        }
        if !self.sized {
            self.buf.clear();
            self.buf.resize(want, 0);
            self.body_got = 0;
            self.sized = true;
        }
        while self.body_got < want {
            match self.recv.read(&mut self.buf[self.body_got..]).await? {
                Some(n) => self.body_got += n,
                None => {
                    return Err(NetError::Truncated {
                        got: self.body_got,
                        want,
                    });
                }
            }
        }
        // The frame is complete: the next call starts a new one.
        self.len_got = 0;
        self.body_got = 0;
        self.sized = false;
        Ok(true)
    }

    /// The next frame's payload; `None` when the peer finished the stream between frames.
    /// Errors on an oversized length prefix, a stream ending inside a frame, or a read error.
    pub async fn recv_frame(&mut self) -> Result<Option<Vec<u8>>, NetError> {
        if self.fill().await? {
            Ok(Some(std::mem::take(&mut self.buf)))
        } else {
            Ok(None)
        }
    }

    /// The next message; `None` at a clean end of stream. A frame that does not decode as `T`
    /// (or has bytes after it) is an error.
    pub async fn recv<T: for<'b> minicbor::Decode<'b, ()>>(
        &mut self,
    ) -> Result<Option<T>, NetError> {
        if !self.fill().await? {
            return Ok(None);
        }
        let r = decode_frame(&self.buf).map(Some);
        if self.buf.capacity() > KEEP_BUF {
            // Do not keep a large buffer per idle connection.
            self.buf = Vec::new();
        }
        r
    }
}

/// Open a bidirectional stream on `conn` as a framed pair.
pub async fn open_bi(conn: &quinn::Connection) -> Result<(FramedSend, FramedRecv), NetError> {
    let (s, r) = conn.open_bi().await?;
    Ok((FramedSend::new(s), FramedRecv::new(r)))
}

/// Accept the peer's next bidirectional stream on `conn` as a framed pair.
pub async fn accept_bi(conn: &quinn::Connection) -> Result<(FramedSend, FramedRecv), NetError> {
    let (s, r) = conn.accept_bi().await?;
    Ok((FramedSend::new(s), FramedRecv::new(r)))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, minicbor::Encode, minicbor::Decode)]
    struct M {
        #[n(0)]
        a: u32,
        #[n(1)]
        b: String,
    }

    #[test]
    fn frame_is_be_length_then_cbor() {
        let m = M {
            a: 5,
            b: "hi".into(),
        };
        let f = encode_frame(&m, MAX_FRAME).unwrap();
        let body = minicbor::to_vec(&m).unwrap();
        assert_eq!(&f[..4], &u32::try_from(body.len()).unwrap().to_be_bytes());
        assert_eq!(&f[4..], &body[..]);
        assert_eq!(decode_frame::<M>(&f[4..]).unwrap(), m);
    }

    #[test]
    fn limits_and_malformed_bytes() {
        let m = M {
            a: 1,
            b: "x".repeat(100),
        };
        assert!(matches!(
            encode_frame(&m, 50),
            Err(NetError::FrameTooLarge { max: 50, .. })
        ));
        let mut body = minicbor::to_vec(&m).unwrap();
        body.extend_from_slice(&[1, 2]);
        assert!(matches!(
            decode_frame::<M>(&body),
            Err(NetError::TrailingBytes(2))
        ));
        assert!(matches!(
            decode_frame::<M>(b"\xff\x00"),
            Err(NetError::Decode(_))
        ));
        assert!(matches!(decode_frame::<M>(b""), Err(NetError::Decode(_))));
    }
}
