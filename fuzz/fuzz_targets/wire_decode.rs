//! Feed arbitrary bytes to the wire protocol's public decode entry points, as a hub or agent
//! does with bytes from the network:
//! - the whole input as one frame payload, through `decode_agent_msg`, `decode_hub_msg`,
//!   `decode_enroll_request` and `decode_enroll_response`;
//! - the input (after its first byte) as a byte stream pushed into a `FrameDecoder` in pieces
//!   whose size comes from the first byte, every frame cut out of it decoded as each type.
//!
//! None of them may panic. Beyond that: the decoder never hands out a frame above `MAX_FRAME`,
//! stays failed after an error, and accounts for every byte (frames + headers + buffered ==
//! pushed). A message that decodes re-encodes to bytes that decode to the same encoding (so the
//! encoder accepts everything the decoder does).
//!
//! Run with `cargo +nightly fuzz run wire_decode` from `fuzz/`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use minicbor::{Decode, Encode};
use outpost_common::frame::{
    FrameDecoder, HEADER_LEN, ProtoError, decode_agent_msg, decode_enroll_request,
    decode_enroll_response, decode_hub_msg,
};
use outpost_common::proto::MAX_FRAME;

/// Decode with `f`; if it yields a message, its encoding must decode again to the same encoding.
fn check<T>(bytes: &[u8], f: fn(&[u8]) -> Result<Option<T>, ProtoError>)
where
    T: Encode<()> + for<'b> Decode<'b, ()>,
{
    if let Ok(Some(msg)) = f(bytes) {
        let again = minicbor::to_vec(&msg).expect("a decoded message encodes");
        let back = f(&again)
            .expect("a re-encoded message decodes")
            .expect("a re-encoded message is a known variant");
        let third = minicbor::to_vec(&back).expect("encodes");
        assert_eq!(again, third, "encoding is not stable across a round trip");
    }
}

fn all(bytes: &[u8]) {
    check(bytes, decode_agent_msg);
    check(bytes, decode_hub_msg);
    check(bytes, decode_enroll_request);
    check(bytes, decode_enroll_response);
}

fuzz_target!(|data: &[u8]| {
    all(data);

    let Some((&piece, stream)) = data.split_first() else {
        return;
    };
    let piece = usize::from(piece).max(1);
    let mut dec = FrameDecoder::new();
    let mut consumed = 0usize;
    let mut pushed = 0usize;
    let mut failed = false;
    for chunk in stream.chunks(piece) {
        dec.push(chunk);
        pushed += chunk.len();
        loop {
            match dec.next_frame() {
                Ok(Some(frame)) => {
                    assert!(!failed, "a frame after an error");
                    assert!(frame.len() <= MAX_FRAME);
                    consumed += HEADER_LEN + frame.len();
                    all(&frame);
                }
                Ok(None) => {
                    assert!(!failed, "Ok(None) after an error");
                    break;
                }
                Err(_) => {
                    failed = true;
                    break;
                }
            }
        }
        if !failed {
            assert_eq!(
                consumed + dec.buffered(),
                pushed,
                "bytes lost or duplicated"
            );
        }
    }
});
