//! Logging: `tracing` to stderr (journald picks it up under systemd); `RUST_LOG` filters.
//! Text by default; JSON lines (`--log-format json`: `timestamp`, `level`, `target`, `fields`)
//! for a log shipper.

pub fn init(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    use std::io::IsTerminal as _;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if json {
        builder.json().try_init()
    } else {
        builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init()
    };
}
