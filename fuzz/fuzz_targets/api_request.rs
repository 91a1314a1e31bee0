//! The hub's HTTP API request bodies, decoded exactly as the API does: axum's `Json` extractor
//! (`Json::<T>::from_bytes`) for every request type the handlers take
//! (`hub/src/views.rs` and `hub/src/views/`).
//!
//! Properties besides "never panics": a body that decodes re-encodes (serde_json) to JSON that
//! decodes again to the same encoding.
//!
//! Run with `cargo +nightly fuzz run api_request` from the repository root.
#![no_main]

use axum::Json;
use libfuzzer_sys::fuzz_target;
use outpost_hub::views::{
    ApplyRequest, DeleteRequest, LabelRequest, PoolCreate, PoolVersionRequest, RollbackRequest,
    RolloutStart, TokenRequest, TriggerRequest,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

fn check<T: DeserializeOwned + Serialize>(data: &[u8]) {
    if let Ok(Json(v)) = Json::<T>::from_bytes(data) {
        let again = serde_json::to_vec(&v).expect("a decoded request encodes");
        let Json(back) = Json::<T>::from_bytes(&again).expect("a re-encoded request decodes");
        let third = serde_json::to_vec(&back).expect("encodes");
        assert_eq!(again, third, "encoding is not stable across a round trip");
    }
}

fuzz_target!(|data: &[u8]| {
    check::<ApplyRequest>(data);
    check::<RollbackRequest>(data);
    check::<TriggerRequest>(data);
    check::<TokenRequest>(data);
    check::<PoolCreate>(data);
    check::<LabelRequest>(data);
    check::<PoolVersionRequest>(data);
    check::<RolloutStart>(data);
    check::<DeleteRequest>(data);
});
