//! Certificate signing requests as the hub's CA checks them at enrollment
//! (`outpost_net::pki::Ca::sign_csr`: DER parsing, the self-signature, the extensions asked
//! for), with arbitrary bytes as the CSR.
//!
//! Properties besides "never panics": an accepted CSR yields a certificate whose subject is the
//! agent id chosen by the hub (never what the CSR asked for), issued by the CA; an invalid
//! agent id is refused whatever the CSR.
//!
//! Run with `cargo +nightly fuzz run csr` from the repository root.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use outpost_net::pki::{Ca, PkiError, agent_id_from_cert, cert_facts, days};

const AGENT: &str = "agent-0011223344556677";

fn ca() -> &'static Ca {
    static CA: OnceLock<Ca> = OnceLock::new();
    // The hub issues from an intermediate CA signed by its root.
    CA.get_or_init(|| {
        Ca::generate("fuzz root CA")
            .and_then(|root| root.issue_intermediate("fuzz CA", days(30)))
            .expect("a CA")
    })
}

fuzz_target!(|data: &[u8]| {
    match ca().sign_csr(data, AGENT, days(1)) {
        Ok(cert) => {
            assert_eq!(agent_id_from_cert(&cert).as_deref(), Some(AGENT));
            let facts = cert_facts(&cert).expect("an issued certificate parses");
            assert_eq!(facts.common_name, AGENT);
            assert!(matches!(
                ca().sign_csr(data, "Not An Id", days(1)),
                Err(PkiError::AgentId(_))
            ));
        }
        Err(PkiError::Csr(_)) => {}
        Err(e) => panic!("a CSR refused for a reason other than the CSR: {e}"),
    }
});
